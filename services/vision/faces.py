"""Face detection and face embeddings, each behind a small interface.

Detection: MTCNN, whose weights ship in the facenet-pytorch wheel. Embeddings:
dlib's ResNet (128-D, face-recognition-models) by default; facenet's
InceptionResnetV1 when its weights are in the model dir. Embeddings are
compared by Euclidean distance; each embedder knows the distance below which
two faces are the same person, and the default is strict: a false match would
attach one person's visit to another's lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from percept.vision.detection import Floats
from percept.vision.images import RGB

MIN_FACE_CONFIDENCE = 0.9


@dataclass(frozen=True)
class FacesFound:
    boxes: Floats  # (n, 4) x_min, y_min, x_max, y_max in pixels
    scores: Floats  # (n,)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> FacesFound:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


class FaceDetector(Protocol):
    name: str

    def detect(self, image: RGB, max_side: int | None = None) -> FacesFound: ...


class FaceEmbedder(Protocol):
    name: str  # embeddings of different embedders never match each other
    threshold: float  # same person below this distance

    def embed(self, image: RGB, boxes: Floats) -> Floats:
        """(n, d) embeddings of the faces in `boxes`."""


class Mtcnn:
    """MTCNN on images shrunk to at most `max_side` (its pyramid costs O(pixels))."""

    name = "mtcnn"

    def __init__(self, weights: Path, device: str = "cpu", max_side: int = 1280) -> None:
        import torch
        from facenet_pytorch import MTCNN

        self.device = device
        self.max_side = max_side
        self.model: Any = MTCNN(keep_all=True, post_process=False, device=device)
        for net in ("pnet", "rnet", "onet"):  # from the resolved model, not the wheel's own path
            state = torch.load(weights / f"{net}.pt", map_location=device, weights_only=True)
            getattr(self.model, net).load_state_dict(state)

    def detect(self, image: RGB, max_side: int | None = None) -> FacesFound:
        """Faces in `image`, shrunk first to `max_side` (a person's crop needs far less)."""
        height, width = image.shape[:2]
        scale = min(1.0, (max_side or self.max_side) / max(height, width))
        small: npt.NDArray[np.uint8] = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        boxes, probs = self.model.detect(np.ascontiguousarray(small))
        if boxes is None:
            return FacesFound.empty()
        keep = np.asarray(probs, np.float32) >= MIN_FACE_CONFIDENCE
        found = np.asarray(boxes, np.float32)[keep] / scale
        np.clip(found, 0, [width, height, width, height], out=found)
        return FacesFound(found, np.asarray(probs, np.float32)[keep])


class DlibEmbedder:
    name = "dlib-resnet-v1"
    threshold = 0.45  # dlib's own 0.6 matched different people in our test photos

    def __init__(self, folder: Path) -> None:
        import dlib

        self._dlib = dlib
        self.shape = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def embed(self, image: RGB, boxes: Floats) -> Floats:
        if not len(boxes):
            return np.zeros((0, 128), np.float32)
        dlib = self._dlib
        image = np.ascontiguousarray(image)
        shapes = dlib.full_object_detections()
        for x0, y0, x1, y1 in boxes:
            shapes.append(self.shape(image, dlib.rectangle(int(x0), int(y0), int(x1), int(y1))))
        return np.asarray(self.net.compute_face_descriptor(image, shapes), np.float32)


class FacenetEmbedder:
    """InceptionResnetV1 (512-D, L2-normalised) from `<model dir>/facenet/<weights>.pt`."""

    threshold = 0.9

    def __init__(self, weights: Path, device: str = "cpu") -> None:
        import torch
        from facenet_pytorch import InceptionResnetV1

        self.name = f"facenet-{weights.stem}"
        self.device = device
        state = torch.load(weights, map_location=device, weights_only=True)
        classes = state["logits.weight"].shape[0] if "logits.weight" in state else None
        self.model: Any = InceptionResnetV1(classify=False, num_classes=classes).eval()
        self.model.load_state_dict(state)
        self.model.to(device)

    def embed(self, image: RGB, boxes: Floats) -> Floats:
        import torch

        if not len(boxes):
            return np.zeros((0, 512), np.float32)
        crops = []
        for x0, y0, x1, y1 in boxes.astype(int):
            crop = cv2.resize(image[max(y0, 0) : y1, max(x0, 0) : x1], (160, 160))
            crops.append((crop.astype(np.float32) - 127.5) / 128.0)  # facenet's standardisation
        batch = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2)).to(self.device)
        with torch.inference_mode():
            embeddings = self.model(batch)
        return np.asarray(embeddings.cpu().numpy(), np.float32)


def distances(embedding: Floats, gallery: Floats) -> Floats:
    """Euclidean distance from one embedding to each row of `gallery`."""
    if not len(gallery):
        return np.zeros(0, np.float32)
    return np.asarray(np.linalg.norm(gallery - embedding[None, :], axis=1), np.float32)


def largest(faces: FacesFound) -> int | None:
    if not len(faces):
        return None
    b = faces.boxes
    return int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
