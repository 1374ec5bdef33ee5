"""What every object detector gives the service: boxes, scores and classes per image.

Backends take a batch of images (the micro-batcher gathers frames from many
cameras) and return plain arrays, so tracking and zones never see a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from percept.vision.images import RGB

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True)
class Objects:
    """Detections in one image: boxes as (x_min, y_min, x_max, y_max) pixels."""

    boxes: Floats  # (n, 4)
    scores: Floats  # (n,)
    class_ids: Ints  # (n,)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Objects:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Objects:
        return Objects(self.boxes[keep], self.scores[keep], self.class_ids[keep])


class Detector(Protocol):
    @property
    def name(self) -> str:
        """What produced the detections, e.g. "nanodet-m-416 (onnxruntime, cpu)"."""

    @property
    def labels(self) -> Sequence[str]:
        """Class names by class id."""

    def detect(self, images: Sequence[RGB], min_confidence: float) -> list[Objects]:
        """Objects in each image (runs on a worker thread; one call at a time)."""


def non_maximum_suppression(
    objects: Objects, iou_threshold: float = 0.5, max_detections: int = 100
) -> Objects:
    """Per-class NMS, best first, at most `max_detections`."""
    if not len(objects):
        return objects
    b = objects.boxes
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), objects.scores.tolist(), objects.class_ids.tolist(), 0.0, iou_threshold
    )
    order = np.asarray(keep, dtype=np.intp).reshape(-1)
    order = order[np.argsort(-objects.scores[order], kind="stable")][:max_detections]
    return objects.select(order)
