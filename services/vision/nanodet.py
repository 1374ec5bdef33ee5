"""NanoDet-m (COCO, 80 classes) on ONNX Runtime: the offline default detector.

The model (see `percept.vision.nanodet_pull`) takes RGB in 0..1, NCHW, 416x416
(frames are letterboxed into it),
and gives, for each of three grids (strides 8, 16, 32), sigmoid class scores
[cells, 80] and box-side distributions [cells, 44]: 4 sides x 11 bins (GFL).
A side's distance is the softmax expectation over its bins, in strides, from
the cell centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from percept.vision.detection import COCO_LABELS, Floats, Objects, non_maximum_suppression
from percept.vision.images import RGB

INPUT_SIZE = 416
BINS = 11
STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class _Level:
    scores: str  # output names
    sides: str
    stride: int
    centres: Floats  # (cells, 2) in input pixels


def onnx_providers(device: str) -> list[str]:
    """CUDA when asked for (or 'auto' and present), else the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError(
            "PERCEPT_VISION_DEVICE=cuda, but this onnxruntime has no CUDA provider "
            f"(it has {', '.join(available)}); install onnxruntime-gpu"
        )
    return ["CPUExecutionProvider"]


class NanoDet:
    labels: Sequence[str] = COCO_LABELS

    def __init__(self, path: Path, device: str = "auto", threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=onnx_providers(device))
        self.input = self.session.get_inputs()[0].name
        provider = self.session.get_providers()[0].removesuffix("ExecutionProvider").lower()
        self.name = f"nanodet-m-{INPUT_SIZE} (onnxruntime, {provider})"
        self.levels = self._levels()

    def _levels(self) -> list[_Level]:
        """Which output is which, read from the shapes of one run (the names are tf2onnx's)."""
        blank = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
        shapes = {
            out.name: value.shape
            for out, value in zip(self.session.get_outputs(), self._run(blank), strict=True)
        }
        levels = []
        for stride in STRIDES:
            cells = (INPUT_SIZE // stride) ** 2
            by_width = {s[2]: name for name, s in shapes.items() if s[1] == cells}
            if set(by_width) != {len(COCO_LABELS), 4 * BINS}:
                raise RuntimeError(f"not a NanoDet-m graph: outputs {shapes}")
            side = INPUT_SIZE // stride
            ys, xs = np.divmod(np.arange(cells), side)
            centres = (np.stack([xs, ys], axis=1).astype(np.float32) + 0.5) * stride
            levels.append(_Level(by_width[len(COCO_LABELS)], by_width[4 * BINS], stride, centres))
        return levels

    def _run(self, batch: Floats) -> list[Any]:
        return list(self.session.run(None, {self.input: batch}))

    def detect(self, images: Sequence[RGB], min_confidence: float) -> list[Objects]:
        if not images:
            return []
        prepared = [_letterbox(image) for image in images]
        batch = np.stack([tensor for tensor, _ in prepared])
        names = [out.name for out in self.session.get_outputs()]
        outputs = dict(zip(names, self._run(batch), strict=True))
        return [
            self._decode(outputs, i, image.shape[1], image.shape[0], scale, min_confidence)
            for i, (image, (_, scale)) in enumerate(zip(images, prepared, strict=True))
        ]

    def _decode(
        self,
        outputs: dict[str, Any],
        index: int,
        width: int,
        height: int,
        scale: float,
        threshold: float,
    ) -> Objects:
        boxes, scores, classes = [], [], []
        for level in self.levels:
            class_scores = outputs[level.scores][index]
            cells, ids = np.nonzero(class_scores >= threshold)
            if not len(cells):
                continue
            logits = outputs[level.sides][index][cells].reshape(-1, 4, BINS)
            logits = logits - logits.max(axis=2, keepdims=True)
            weights = np.exp(logits)
            weights /= weights.sum(axis=2, keepdims=True)
            sides = weights @ np.arange(BINS, dtype=np.float32) * level.stride  # (n, 4)
            centre = level.centres[cells]
            boxes.append(np.concatenate([centre - sides[:, :2], centre + sides[:, 2:]], axis=1))
            scores.append(class_scores[cells, ids])
            classes.append(ids)
        if not boxes:
            return Objects.empty()
        found = np.concatenate(boxes) / scale
        np.clip(found, 0, [width, height, width, height], out=found)
        objects = Objects(
            found.astype(np.float32),
            np.concatenate(scores).astype(np.float32),
            np.concatenate(classes).astype(np.int64),
        )
        return non_maximum_suppression(objects)


def _letterbox(image: RGB) -> tuple[Floats, float]:
    """Scaled to fit 416x416 with its aspect kept (padded with black), 0..1, channels first.

    Stretching a 16:9 camera frame to a square squeezes people 1.8 times: on our
    test sequences it halved NanoDet's person scores (0.3-0.4 against 0.6-0.8).
    """
    height, width = image.shape[:2]
    scale = INPUT_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    canvas[: size[1], : size[0]] = cv2.resize(image, size, interpolation=interpolation)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)) / 255.0, scale
