"""StreamFrames over gRPC with the real models: a real person walking through the demo
store's zones, an occlusion, two people, latest-wins dropping, and bad streams."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import pytest
from conftest import VisionHost
from vision_harness import T0, frame, frames_of, lockstep
from vision_media import astronaut_person, background, group_photo, paste, walk

from percept.v1 import vision_pb2, vision_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
ENTER = vision_pb2.ZoneEvent.EVENT_TYPE_ENTER
WIDTH = 854  # the test camera's frames; the astronaut is 211 px wide at 300 px tall
HALF_WIDTH = 105


def person_tracks(result: vision_pb2.FrameResult) -> list[int]:
    return [o.track_id for o in result.objects if o.label == "person" and o.track_id]


def zone_events(results: Sequence[vision_pb2.FrameResult]) -> list[tuple[str, str, float]]:
    return [
        (
            "enter" if e.type == ENTER else "exit",
            e.zone,
            round(e.dwell.ToTimedelta().total_seconds(), 2),
        )
        for r in results
        for e in r.zone_events
    ]


async def test_a_visitor_walking_through_the_store_keeps_one_id(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    # Feet from x=65 to x=685 of 854 (entrance 0-0.2, phones 0.2-0.6, laptops 0.6-0.85),
    # 20 px a frame, a frame every 0.5 s of capture time.
    xs = list(range(-40, 600, 20))
    results = await lockstep(vision_stub, frames_of(walk(astronaut_person(), xs), step_s=0.5))
    assert [r.sequence for r in results] == list(range(len(xs)))
    assert sum(r.frames_dropped for r in results) == 0
    tracked = [person_tracks(r) for r in results]
    assert {t for ids in tracked for t in ids} == {1}  # one id, never switched
    # Half out of view she scores under the 0.5 a new track needs; then two frames confirm.
    assert all(tracked[3:]), tracked
    events = zone_events(results)
    assert [(kind, zone) for kind, zone, _ in events] == [
        ("enter", "entrance"),
        ("enter", "phones"),
        ("exit", "entrance"),
        ("enter", "laptops"),
        ("exit", "phones"),
    ]
    # Feet inside phones (0.2 < x < 0.6 of the width) for this long, give or take a frame.
    inside = [i for i, x in enumerate(xs) if 0.2 * WIDTH < x + HALF_WIDTH < 0.6 * WIDTH]
    expected = (inside[-1] - inside[0]) * 0.5
    phones_dwell = next(d for kind, zone, d in events if (kind, zone) == ("exit", "phones"))
    assert phones_dwell == pytest.approx(expected, abs=1.0)
    last = results[-1]
    assert last.people_count == 1
    assert {z.zone: z.people for z in last.zones}["laptops"] == 1
    assert (last.density.rows, last.density.cols) == (3, 4)
    assert len(last.density.cells) == 12 and 0.5 < sum(last.density.cells) <= 1.01
    assert last.captured_at.ToNanoseconds() == round((T0 + (len(xs) - 1) * 0.5) * 1e9)


async def test_an_occlusion_keeps_the_id(vision_stub: vision_pb2_grpc.VisionAsyncStub) -> None:
    xs = list(range(100, 400, 12))
    hidden = range(10, 13)  # 3 frames of 0.4 s: 1.2 s behind a pillar (the tracker keeps 2 s)
    results = await lockstep(
        vision_stub, frames_of(walk(astronaut_person(), xs, hidden=hidden), step_s=0.4)
    )
    assert all(not person_tracks(results[i]) for i in hidden)
    assert {t for r in results for t in person_tracks(r)} == {1}
    assert person_tracks(results[-1]) == [1]


async def test_two_visitors_get_two_ids(vision_stub: vision_pb2_grpc.VisionAsyncStub) -> None:
    second = group_photo(3)[150:1350, 0:960]  # the first woman of photo 3, seated
    images = []
    for i in range(16):
        image = paste(background(), astronaut_person(), 20 + 10 * i, 470, 300)
        images.append(paste(image, second, 600 - 8 * i, 470, 300))
    results = await lockstep(vision_stub, frames_of(images, step_s=0.5))
    ids = {t for r in results for t in person_tracks(r)}
    assert len(ids) == 2
    assert sum(1 for r in results if len(person_tracks(r)) == 2) >= 12
    assert results[-1].people_count == 2


async def test_a_camera_faster_than_the_model_loses_frames_not_memory(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    images = walk(astronaut_person(), list(range(0, 300, 10)))
    sent = frames_of(images, step_s=0.1)
    results = [r async for r in vision_stub.StreamFrames(iter(sent))]  # no waiting: a flood
    assert len(results) < len(sent)
    assert len(results) + sum(r.frames_dropped for r in results) == len(sent)
    assert results[-1].sequence == len(sent) - 1  # the newest frame is always analysed
    assert [r.sequence for r in results] == sorted(r.sequence for r in results)


async def test_frames_older_than_the_last_one_are_skipped(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    image = walk(astronaut_person(), [300])[0]
    sent = [frame(image, 0, T0 + 10), frame(image, 1, T0 + 5), frame(image, 2, T0 + 11)]
    results = await lockstep_skipping(vision_stub, sent)
    assert [r.sequence for r in results] == [0, 2]
    assert results[1].frames_dropped == 1


async def lockstep_skipping(
    vision_stub: vision_pb2_grpc.VisionAsyncStub, frames: list[vision_pb2.Frame]
) -> list[vision_pb2.FrameResult]:
    """Sends each frame after the previous result, or after a moment when none comes."""
    import asyncio

    results: list[vision_pb2.FrameResult] = []

    async def send() -> AsyncIterator[vision_pb2.Frame]:
        for f in frames:
            before = len(results)
            yield f
            for _ in range(100):
                if len(results) > before:
                    break
                await asyncio.sleep(0.05)

    async for result in vision_stub.StreamFrames(send()):
        results.append(result)
    return results


def bad(frame_: vision_pb2.Frame, **changes: object) -> vision_pb2.Frame:
    copy = vision_pb2.Frame()
    copy.CopyFrom(frame_)
    for name, value in changes.items():
        if name == "image":
            copy.image.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(copy, name, value)
    return copy


GOOD = frame(walk(astronaut_person(), [300])[0], 0, T0)


def captured(frame_: vision_pb2.Frame, seconds: int, nanos: int = 0) -> vision_pb2.Frame:
    """The frame with a capture time as a client may send it, valid or not."""
    copy = bad(frame_)
    copy.captured_at.seconds, copy.captured_at.nanos = seconds, nanos
    return copy


NOW = int(time.time())


@pytest.mark.parametrize(
    ("frames", "code", "message"),
    [
        (
            [bad(GOOD, camera_id="parking-lot")],
            grpc.StatusCode.NOT_FOUND,
            "camera_id: 'parking-lot' has no configuration in the cameras file "
            "(PERCEPT_VISION_CAMERAS_FILE); configured: store-front",
        ),
        (
            [bad(GOOD, camera_id="")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "frame 1: camera_id: required",
        ),
        (
            [GOOD, bad(GOOD, camera_id="back-door", sequence=1)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "frame 2: camera_id 'back-door' differs from the stream's camera 'store-front'",
        ),
        (
            [vision_pb2.Frame(camera_id="store-front", sequence=0)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "frame 1: image: required",
        ),
        (
            [bad(GOOD, image=vision_pb2.Image(encoded=b"not a jpeg at all"))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "sequence 0: image.encoded: not a JPEG or PNG image",
        ),
        (
            [bad(GOOD, image=vision_pb2.Image(encoded=GOOD.image.encoded[:200]))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "sequence 0: image.encoded: damaged or truncated JPEG",
        ),
        *(
            (
                [captured(GOOD, seconds, nanos)],
                grpc.StatusCode.INVALID_ARGUMENT,
                "frame 1: captured_at: not a valid time (Timestamp is not valid",
            )
            for seconds, nanos in [(-(10**12), 0), (10**13, 0), (NOW, -1), (NOW, 2 * 10**9)]
        ),
        (
            # a camera whose clock says year 9999: every later frame would look stale
            [captured(GOOD, 253402300000), *(captured(GOOD, NOW + i) for i in range(1, 4))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "frame 1: captured_at: 9999-12-31T23:46:40+00:00 is more than 24 hours ahead of "
            "the server's clock",
        ),
        (
            [
                bad(
                    GOOD,
                    image=vision_pb2.Image(
                        raw=vision_pb2.RawImage(width=20_000, height=20_000, rgb=b"")
                    ),
                )
            ],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "sequence 0: image.raw: 20000x20000 is 400,000,000 pixels",
        ),
    ],
)
async def test_bad_streams_end_with_a_precise_status(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
    frames: list[vision_pb2.Frame],
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in vision_stub.StreamFrames(iter(frames)):
            pass
    assert error.value.code() == code
    assert message in (error.value.details() or "")


async def test_a_flooding_camera_that_is_refused_still_gets_the_reason(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    """Frames in flight when the call ends made grpcio report its own INTERNAL."""
    images = walk(astronaut_person(), list(range(0, 300, 10)))
    unknown = frames_of(images, 0.1, camera="loading-dock")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in vision_stub.StreamFrames(iter(unknown)):
            pass
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    broken = frames_of(images, 0.1)
    broken[-1] = bad(broken[-1], image=vision_pb2.Image(encoded=b"GIF89a" + bytes(64)))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in vision_stub.StreamFrames(iter(broken)):
            pass
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequence 29: image.encoded: not a JPEG or PNG image (it looks like a GIF)" in (
        error.value.details() or ""
    )


async def test_an_empty_stream_ends_quietly(vision_stub: vision_pb2_grpc.VisionAsyncStub) -> None:
    assert [r async for r in vision_stub.StreamFrames(iter([]))] == []


async def test_metrics_count_frames_and_drops(vision: VisionHost) -> None:
    registry = vision[1].metrics.registry
    frames = registry.get_sample_value("percept_vision_frames_total", {"camera": "store-front"})
    dropped = registry.get_sample_value(
        "percept_vision_frames_dropped_total", {"camera": "store-front"}
    )
    assert frames is not None and frames > 50
    assert dropped is not None and dropped >= 1
    batches = registry.get_sample_value("percept_vision_detector_batch_size_count")
    assert batches is not None and batches > 0
    assert np.isfinite(frames)


async def test_a_camera_flooding_past_the_frame_rate_limit_is_refused(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    tiny = np.full((48, 64, 3), 120, dtype=np.uint8)
    sent = frames_of([tiny] * 100, step_s=0.01)  # 100 frames at once: over 60 a second
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in vision_stub.StreamFrames(iter(sent)):
            pass
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The bucket holds 60 and refills while the frames arrive: the refusal comes soon after.
    refused = re.search(
        r"frame (\d+): more than 60 frames a second on one stream \(PERCEPT_VISION_MAX_FPS\)",
        error.value.details() or "",
    )
    assert refused is not None and 61 <= int(refused.group(1)) <= 80, error.value.details()
