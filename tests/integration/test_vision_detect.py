"""Detect over gRPC with the real NanoDet (COCO) and MTCNN weights, on real photos,
and every kind of bad image answered with a precise status."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from vision_media import FACES, PEOPLE, astronaut, group_photo, group_photo_bytes

from percept.v1 import common_pb2, vision_pb2, vision_pb2_grpc
from percept.vision.images import encode_jpeg

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


def jpeg(image: np.ndarray) -> vision_pb2.Image:
    return vision_pb2.Image(encoded=encode_jpeg(image))


def people(result: vision_pb2.Detections) -> list[vision_pb2.Detection]:
    return [d for d in result.detections if d.label == "person"]


def inside(x: float, y: float, box: common_pb2.BoundingBox) -> bool:
    return box.x_min <= x <= box.x_max and box.y_min <= y <= box.y_max


async def test_people_are_found_in_real_group_photos(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    found = {}
    for n in PEOPLE:
        result = await vision_stub.Detect(
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=group_photo_bytes(n)))
        )
        assert result.model.startswith("nanodet-m-416 (onnxruntime")
        assert (result.image_width, result.image_height) == group_photo(n).shape[1::-1]
        found[n] = len(people(result))
        # At most one box too many (a duplicate of a half-hidden person), at least two.
        assert 2 <= found[n] <= PEOPLE[n] + 1, f"photo {n}: {found[n]} people for {PEOPLE[n]}"
    # NanoDet-m merges some people who overlap in these close group shots; it finds most.
    assert sum(found.values()) >= 0.7 * sum(PEOPLE.values()), found


async def test_faces_are_counted_and_sit_inside_person_boxes(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    for n, faces in FACES.items():
        result = await vision_stub.Detect(
            vision_pb2.DetectRequest(
                image=vision_pb2.Image(encoded=group_photo_bytes(n)), detect_faces=True
            )
        )
        assert len(result.faces) == faces, f"photo {n}"
        boxes = [p.box for p in people(result)]
        for face in result.faces:
            cx, cy = (face.box.x_min + face.box.x_max) / 2, (face.box.y_min + face.box.y_max) / 2
            if n == 3:  # NanoDet boxes all three there (elsewhere it merges some people)
                assert any(inside(cx, cy, b) for b in boxes), f"photo {n}: a face outside people"
            assert face.confidence >= 0.9 and not face.enrolled
            assert face.visitor_id.startswith("visit-")
        assert len({f.visitor_id for f in result.faces}) == faces  # ephemeral, one each


async def test_the_astronaut_portrait(vision_stub: vision_pb2_grpc.VisionAsyncStub) -> None:
    image = astronaut()
    result = await vision_stub.Detect(
        vision_pb2.DetectRequest(image=jpeg(image), detect_faces=True)
    )
    person = max(people(result), key=lambda d: d.confidence)
    assert person.confidence > 0.6
    area = (person.box.x_max - person.box.x_min) * (person.box.y_max - person.box.y_min)
    assert area > 0.4 * image.shape[0] * image.shape[1]
    assert len(result.faces) == 1
    face = result.faces[0].box
    assert 150 < (face.x_min + face.x_max) / 2 < 300 and 50 < (face.y_min + face.y_max) / 2 < 200


async def test_raw_frames_give_what_the_jpeg_gives(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    image = group_photo(3)[::2, ::2].copy()
    raw = vision_pb2.RawImage(width=image.shape[1], height=image.shape[0], rgb=image.tobytes())
    from_raw = await vision_stub.Detect(vision_pb2.DetectRequest(image=vision_pb2.Image(raw=raw)))
    from_png_quality = await vision_stub.Detect(vision_pb2.DetectRequest(image=jpeg(image)))
    assert len(people(from_raw)) == len(people(from_png_quality)) >= 2


async def test_classes_and_min_confidence_filter(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    image = vision_pb2.Image(encoded=group_photo_bytes(3))
    everything = await vision_stub.Detect(vision_pb2.DetectRequest(image=image, min_confidence=0.3))
    assert {"person", "cup"} <= {d.label for d in everything.detections}
    cups = await vision_stub.Detect(
        vision_pb2.DetectRequest(image=image, min_confidence=0.3, classes=["cup"])
    )
    assert {d.label for d in cups.detections} == {"cup"}
    sure = await vision_stub.Detect(vision_pb2.DetectRequest(image=image, min_confidence=0.65))
    assert 0 < len(sure.detections) < len(everything.detections)
    assert all(d.confidence >= 0.65 for d in sure.detections)


def png_claiming(width: int, height: int) -> bytes:
    import io
    import struct
    import zlib

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    at = data.index(b"IHDR")
    data[at + 4 : at + 12] = struct.pack(">II", width, height)
    data[at + 17 : at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at : at + 17])))
    return bytes(data)


def png_inflating_text() -> bytes:
    """A 1x1 PNG with a 2 KB zTXt chunk that inflates to 2 MB."""
    import struct
    import zlib

    data = png_claiming(1, 1)
    body = b"comment\0\0" + zlib.compress(b"a" * (2 * 1024 * 1024))
    crc = struct.pack(">I", zlib.crc32(b"zTXt" + body) & 0xFFFFFFFF)
    at = data.index(b"IDAT") - 4
    return data[:at] + struct.pack(">I", len(body)) + b"zTXt" + body + crc + data[at:]


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (vision_pb2.DetectRequest(), grpc.StatusCode.INVALID_ARGUMENT, "image: empty"),
        (
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=b"%PDF-1.7 not an image")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.encoded: not a JPEG or PNG image",
        ),
        (
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=group_photo_bytes(1)[:60_000])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.encoded: damaged or truncated JPEG",
        ),
        (
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=group_photo_bytes(1)[:150])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.encoded: damaged or truncated JPEG",
        ),
        (
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=png_inflating_text())),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.encoded: a compressed PNG metadata chunk (text or colour profile) inflates",
        ),
        (
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=png_claiming(0, 0))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.encoded: zero-size image (0x0): it has no pixels",
        ),
        (
            vision_pb2.DetectRequest(
                image=vision_pb2.Image(raw=vision_pb2.RawImage(width=0, height=0))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.raw: zero-size image (0x0)",
        ),
        (
            vision_pb2.DetectRequest(
                image=vision_pb2.Image(raw=vision_pb2.RawImage(width=10, height=10, rgb=b"x"))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.raw.rgb: 1 bytes, but 10x10 RGB needs exactly 300",
        ),
        (
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=png_claiming(50_000, 50_000))),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "image.encoded",
        ),
        (
            vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=png_claiming(8000, 8000))),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "8000x8000 is 64,000,000 pixels, over the limit of 36,000,000",
        ),
        (
            vision_pb2.DetectRequest(min_confidence=1.5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "min_confidence: 1.5 is outside [0, 1)",
        ),
        (
            vision_pb2.DetectRequest(min_confidence=math.nan),
            grpc.StatusCode.INVALID_ARGUMENT,
            "min_confidence: nan",
        ),
        (
            vision_pb2.DetectRequest(classes=["person", "unicorn"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "classes: 'unicorn' is not a class of nanodet",
        ),
    ],
)
async def test_bad_requests_get_precise_statuses(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
    request_: vision_pb2.DetectRequest,
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await vision_stub.Detect(request_)
    assert error.value.code() == code
    assert message in (error.value.details() or "")


async def test_messages_over_the_size_limit_are_refused(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    huge = vision_pb2.Image(encoded=b"\xff\xd8" + bytes(9 * 1024 * 1024))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await vision_stub.Detect(vision_pb2.DetectRequest(image=huge))
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_the_service_still_answers_after_bad_input(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    result = await vision_stub.Detect(vision_pb2.DetectRequest(image=jpeg(astronaut())))
    assert people(result)
