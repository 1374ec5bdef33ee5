"""The ultralytics YOLO backend on a tiny model trained here (tests/yolo_tiny.py):
inference, ONNX export, tracking through the service, offline by construction, and
a clear error when no YOLO weights are in the model dir."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from vision_harness import frames_of, lockstep, start_vision, vision_settings
from yolo_tiny import SIZE, SQUARE, iou, square_image, tiny_yolo

from percept.runtime.model_store import ModelNotFoundError
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.images import encode_jpeg
from percept.vision.models import yolo_weights
from percept.vision.yolo import Yolo, import_yolo

pytestmark = pytest.mark.slow
CAMERAS = """\
cameras:
  test-bench:
    frame_rate: 5
    faces: false
    zones:
      - name: right-half
        polygon: [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
"""


@pytest.fixture(scope="module")
def weights() -> Iterator[Path]:
    yield tiny_yolo()


def test_the_trained_model_finds_squares(weights: Path, tmp_path: Path) -> None:
    model = Yolo(weights, tmp_path / "config", device="cpu", image_size=SIZE)
    assert list(model.labels) == ["square"]
    assert model.name == "tiny-squares (ultralytics pytorch, cpu)"
    rng = np.random.default_rng(123)  # images the model never saw
    samples = [square_image(rng) for _ in range(12)]
    found = model.detect([image for image, _ in samples], 0.3)
    hits = misses = extra = 0
    for (_, truth), objects in zip(samples, found, strict=True):
        boxes = [tuple(float(v) for v in b) for b in objects.boxes]
        matched = {i for t in truth for i, b in enumerate(boxes) if iou(t, b) >= 0.5}
        hits += sum(1 for t in truth if any(iou(t, b) >= 0.5 for b in boxes))
        misses += sum(1 for t in truth if not any(iou(t, b) >= 0.5 for b in boxes))
        extra += len(boxes) - len(matched)
    assert hits / (hits + misses) >= 0.9, (hits, misses)
    assert extra <= 2


def test_the_onnx_export_gives_the_same_boxes(weights: Path, tmp_path: Path) -> None:
    YOLO = import_yolo(tmp_path / "config")
    source = tmp_path / weights.name
    source.write_bytes(weights.read_bytes())
    exported = Path(YOLO(str(source)).export(format="onnx", imgsz=SIZE, simplify=False))
    assert exported.suffix == ".onnx" and exported.is_file()
    torch_model = Yolo(source, tmp_path / "config", device="cpu", image_size=SIZE)
    onnx_model = Yolo(exported, tmp_path / "config", device="cpu", image_size=SIZE)
    assert onnx_model.name == "tiny-squares (ultralytics onnxruntime, cpu)"
    image, _ = square_image(np.random.default_rng(7), count=2)
    a, b = torch_model.detect([image], 0.3)[0], onnx_model.detect([image], 0.3)[0]
    assert len(a) == len(b) >= 1
    for box in a.boxes:
        assert max(iou(tuple(box), tuple(other)) for other in b.boxes) > 0.95


def test_ultralytics_never_reaches_for_the_network(weights: Path, tmp_path: Path) -> None:
    """Import, load and predict in a fresh process whose sockets all fail loudly."""
    script = f"""
import socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[:1])
    raise OSError("network disabled by the test")
socket.getaddrinfo = refuse
socket.create_connection = refuse
socket.socket.connect = lambda self, *a: refuse(*a)
import numpy as np
from pathlib import Path
from percept.vision.yolo import Yolo
weights, config = Path({str(weights)!r}), Path({str(tmp_path / "cfg")!r})
model = Yolo(weights, config, device="cpu", image_size={SIZE})
model.detect([np.zeros(({SIZE}, {SIZE}, 3), np.uint8)], 0.3)
print("attempts", len(attempts), attempts)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True
    )
    assert "attempts 0 []" in done.stdout, done.stdout + done.stderr


async def test_the_service_tracks_with_yolo(weights: Path, tmp_path: Path) -> None:
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(CAMERAS)
    settings = vision_settings(
        tmp_path / "data",
        vision_detector="yolo",
        vision_yolo_model=str(weights),
        vision_yolo_image_size=SIZE,
        vision_track_label="square",
        vision_faces="off",
        vision_cameras_file=cameras,
    )
    _, host = await start_vision(settings)
    try:
        frames = []
        for i in range(15):  # a 60 px square sliding right across a 256 px frame
            image = np.full((256, 256, 3), 30, np.uint8)
            x = 10 + 12 * i
            image[100:160, x : x + 60] = SQUARE
            frames.append(image)
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = vision_pb2_grpc.VisionStub(channel)
            detected = await stub.Detect(
                vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=encode_jpeg(frames[0])))
            )
            assert detected.model == "tiny-squares (ultralytics pytorch, cpu)"
            assert [d.label for d in detected.detections] == ["square"]
            # Ultralytics patches PIL.Image.open globally (its HEIF plugin install); with it
            # loaded, a file that is no image must still be a precise INVALID_ARGUMENT.
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Detect(
                    vision_pb2.DetectRequest(image=vision_pb2.Image(encoded=b"not an image"))
                )
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "image.encoded: not a JPEG or PNG image" in (error.value.details() or "")
            results = await lockstep(stub, frames_of(frames, 0.2, camera="test-bench"))
        ids = {o.track_id for r in results for o in r.objects if o.track_id}
        assert ids == {1}
        events = [(e.type, e.zone) for r in results for e in r.zone_events]
        assert events == [(vision_pb2.ZoneEvent.EVENT_TYPE_ENTER, "right-half")]
    finally:
        await host.stop(grace=1)


def test_missing_yolo_weights_say_how_to_get_them(tmp_path: Path) -> None:
    settings = vision_settings(tmp_path / "data", model_dir=tmp_path / "empty-models")
    with pytest.raises(ModelNotFoundError) as error:
        yolo_weights(settings)
    message = str(error.value)
    assert "yolo11n" in message and "put yolo11n.pt in" in message
    assert "percept models pull yolo11n" in message
    other = settings.model_copy(update={"vision_yolo_model": "my-store.pt"})
    with pytest.raises(ModelNotFoundError, match=r"no YOLO model 'my-store.pt': give a \.pt"):
        yolo_weights(other)
