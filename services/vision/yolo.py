"""Ultralytics YOLO (PyTorch `.pt` or exported `.onnx`): the production detector on GPU nodes.

No registry package ships official YOLO weights, so the model is read from the
model dir (`percept models pull yolo11n` where the cluster reaches GitHub).
Ultralytics is told never to touch the network: no settings sync, no
auto-install of requirements, no online checks (YOLO_OFFLINE).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from percept.runtime.devices import resolve_device
from percept.vision.detection import Objects
from percept.vision.images import RGB

SUFFIXES = (".pt", ".onnx")


def import_yolo(config_dir: Path) -> Any:
    """Ultralytics' YOLO class, imported offline and quiet, its settings under our data dir
    (the root filesystem is read-only), and without its global patch of PIL.Image.open.

    That patch makes the first image Pillow cannot identify, anywhere in the process,
    try to install pi-heif (the network at run time) or fail with ModuleNotFoundError:
    a camera's garbage frame would then be an INTERNAL error, not INVALID_ARGUMENT.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    from PIL import Image
    from ultralytics.models import YOLO
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original
    return YOLO


class Yolo:
    def __init__(
        self, path: Path, config_dir: Path, device: str = "auto", image_size: int = 640
    ) -> None:
        if path.suffix not in SUFFIXES:
            raise ValueError(f"{path}: a YOLO model is a .pt or .onnx file")
        YOLO = import_yolo(config_dir)
        self.device = "cuda:0" if resolve_device(device) == "cuda" else "cpu"
        self.model: Any = YOLO(str(path), task="detect")
        self.image_size = image_size
        names: dict[int, str] = self.model.names
        self.labels: Sequence[str] = [names[i] for i in range(len(names))]
        runtime = "onnxruntime" if path.suffix == ".onnx" else "pytorch"
        self.name = f"{path.stem} (ultralytics {runtime}, {self.device.split(':')[0]})"

    def detect(self, images: Sequence[RGB], min_confidence: float) -> list[Objects]:
        if not images:
            return []
        # Ultralytics reads arrays as OpenCV does: BGR.
        results = self.model.predict(
            [np.ascontiguousarray(image[..., ::-1]) for image in images],
            conf=min_confidence,
            imgsz=self.image_size,
            device=self.device,
            half=self.device != "cpu",
            verbose=False,
        )
        found = []
        for result in results:
            boxes = result.boxes
            found.append(
                Objects(
                    boxes.xyxy.cpu().numpy().astype(np.float32),
                    boxes.conf.cpu().numpy().astype(np.float32),
                    boxes.cls.cpu().numpy().astype(np.int64),
                )
            )
        return found
