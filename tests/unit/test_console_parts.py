"""The console's parts without servers: chat rate limits, head pixelation, camera views."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from percept.console.api import ApiError, call_backend
from percept.runtime.ratelimit import RateLimiter
from percept.v1 import common_pb2, vision_pb2
from percept.vision.cameras import Camera, Zone
from percept.vision.images import decode_image
from percept.vision.views import CameraViews, blur_heads


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_request_per_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=3, clock=clock)  # a token every 10 s
    assert [limiter.allow("s1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("s1") == pytest.approx(10.0)
    assert limiter.allow("s2") == 0.0  # keys are independent
    clock.now += 4.0
    assert limiter.allow("s1") == pytest.approx(6.0)  # refused calls cost nothing
    clock.now += 6.0
    assert limiter.allow("s1") == 0.0
    assert limiter.allow("s1") > 0
    clock.now += 3600
    assert [limiter.allow("s1") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # capped at the burst


def test_only_recent_keys_are_kept() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=1, burst=1, max_keys=2, clock=clock)
    limiter.allow("a")
    limiter.allow("b")
    limiter.allow("c")  # "a" is forgotten: it gets a fresh bucket
    assert limiter.allow("c") > 0
    assert limiter.allow("a") == 0.0


def _person(box: tuple[float, float, float, float]) -> vision_pb2.Detection:
    return vision_pb2.Detection(
        label="person",
        confidence=0.9,
        box=common_pb2.BoundingBox(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
    )


def test_heads_are_pixelated_and_nothing_else_changes() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    before = image.copy()
    result = vision_pb2.FrameResult(objects=[_person((100, 20, 160, 180))])
    result.objects.append(
        vision_pb2.Detection(label="laptop", box=common_pb2.BoundingBox(x_max=50, y_max=50))
    )
    out = blur_heads(image, result, "person")
    assert np.array_equal(image, before)  # the analysed frame is not touched
    head = out[20:68, 100:160]  # the top 30 % of the person box
    assert len(np.unique(head.reshape(-1, 3), axis=0)) <= 6 * 5  # blocks, not a face
    assert not np.array_equal(head, before[20:68, 100:160])
    changed = np.any(out != before, axis=2)
    changed[20:68, 100:160] = False
    assert not changed.any()  # the body, the laptop and the background are as they were


def test_a_view_holds_the_latest_frame_downscaled_with_its_size() -> None:
    zone = Zone(name="phones", kind="product", polygon=((0, 0), (1, 0), (1, 1)))
    views = CameraViews({"cam": Camera(zones=(zone,))}, "person")
    empty = views.view("cam")
    assert not empty.jpeg and empty.camera.zones[0].name == "phones"
    views.opened("cam")
    frame = np.full((1080, 1920, 3), 90, dtype=np.uint8)
    result = vision_pb2.FrameResult(camera_id="cam", sequence=7, people_count=1)
    result.objects.append(_person((800, 100, 1000, 900)))
    views.record("cam", frame, result)
    view = views.view("cam")
    assert view.camera.streaming and view.result.sequence == 7
    assert (view.frame_width, view.frame_height) == (1920, 1080)  # the boxes' pixels
    shown = decode_image(vision_pb2.Image(encoded=view.jpeg), 10_000_000)
    assert shown.shape == (540, 960, 3)  # downscaled for the board
    views.closed("cam")
    assert not views.view("cam").camera.streaming
    views.forget()
    assert not views.view("cam").jpeg


class HangingWatch:
    """A watch whose headers never come (a pod that is slow to answer)."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def initial_metadata(self) -> None:
        await asyncio.sleep(3600)

    def cancel(self) -> None:
        self.cancelled += 1


async def test_a_browser_gone_while_the_watch_opens_cancels_the_watch() -> None:
    from percept.console.gateway import _event_stream

    watch = HangingWatch()
    opening = asyncio.create_task(_event_stream(watch, "call", dict, "watching calls"))
    await asyncio.sleep(0.05)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert watch.cancelled == 1


async def test_a_response_never_read_still_cancels_its_watch() -> None:
    from starlette.responses import StreamingResponse

    from percept.console.gateway import _event_stream

    class Opened(HangingWatch):
        async def initial_metadata(self) -> None:
            return None

    watch = Opened()
    response = await _event_stream(watch, "call", dict, "watching calls")
    assert isinstance(response, StreamingResponse) and response.background is not None
    await response.background()  # what Starlette runs once the response has ended
    assert watch.cancelled == 1


async def test_a_turn_that_lost_every_try_is_a_conflict_the_widget_sends_again() -> None:
    """ABORTED (nlp's turn lost to concurrent writes each time) is 409, which the widget
    sends again; it was 502, shown to the visitor as an error, the message dropped."""

    async def aborted(request: object, **_: object) -> None:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.ABORTED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="the chat changed under this message each time; send it again",
        )

    backends = SimpleNamespace(metadata=())
    with pytest.raises(ApiError) as refused:
        await call_backend(aborted, object(), backends)  # type: ignore[arg-type]
    assert refused.value.status == 409
    assert "send it again" in str(refused.value)
