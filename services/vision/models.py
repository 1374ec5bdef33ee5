"""Which detector the service runs, and where its weights come from."""

from __future__ import annotations

from pathlib import Path

from percept.models import model_store
from percept.runtime.model_store import ModelNotFoundError
from percept.runtime.settings import Settings
from percept.vision.detection import Detector

NANODET = "nanodet"


def yolo_weights(settings: Settings) -> Path:
    """A catalog name (yolo11n), a file in the model dir (my-store.pt), or a path."""
    store, name = model_store(settings), settings.vision_yolo_model
    if name in {spec.name for spec in store.specs}:
        return store.resolve(name).file(f"{name}.pt")
    for candidate in (Path(name), store.model_dir / name):
        if candidate.suffix in (".pt", ".onnx") and candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"no YOLO model {name!r}: give a .pt or .onnx file in {store.model_dir} or a path "
        f"to one (PERCEPT_VISION_YOLO_MODEL), or a catalog name such as yolo11n"
    )


def load_detector(settings: Settings) -> Detector:
    if settings.vision_detector == "yolo":
        from percept.vision.yolo import Yolo

        return Yolo(
            yolo_weights(settings),
            settings.data_dir / "ultralytics",
            device=settings.vision_device,
            image_size=settings.vision_yolo_image_size,
        )
    from percept.vision.nanodet import NanoDet

    path = model_store(settings).resolve(NANODET).file("nanodet.onnx")
    return NanoDet(path, settings.vision_device, settings.vision_cpu_threads)
