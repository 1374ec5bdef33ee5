"""Each camera's latest analysed frame, for the console's camera page.

Held in memory only and never written anywhere: one frame per camera, replaced
by the next. The stream keeps a reference to the decoded frame and its result
(no copy, no encoding on the frame path); the JPEG is made when the console
asks, with every person's head pixelated, so the console never shows a face.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from percept.v1 import vision_pb2
from percept.vision.cameras import Camera
from percept.vision.images import RGB, encode_jpeg

HEAD_SHARE = 0.3  # the top of a person box that holds the head
PIXELS_ACROSS = 6  # pixelation blocks across a head: no face survives it
VIEW_MAX_SIDE = 960  # console frames are downscaled to this; a board needs no more


@dataclass
class _Latest:
    image: RGB
    result: vision_pb2.FrameResult


def camera_message(camera_id: str, camera: Camera, streaming: bool) -> vision_pb2.Camera:
    return vision_pb2.Camera(
        camera_id=camera_id,
        streaming=streaming,
        zones=[
            vision_pb2.Zone(
                name=zone.name,
                kind=zone.kind,
                product=zone.product,
                polygon=[vision_pb2.Point(x=x, y=y) for x, y in zone.points],
                inside=zone.inside if zone.kind == "line" else "",
            )
            for zone in camera.zones
        ],
    )


def blur_heads(image: RGB, result: vision_pb2.FrameResult, person_label: str) -> RGB:
    """A copy of the frame with the head area of every person box pixelated."""
    out = image.copy()
    height, width = out.shape[:2]
    for obj in result.objects:
        if obj.label != person_label:
            continue
        b = obj.box
        x0, x1 = max(0, int(b.x_min)), min(width, int(np.ceil(b.x_max)))
        y0 = max(0, int(b.y_min))
        y1 = min(height, int(np.ceil(b.y_min + HEAD_SHARE * (b.y_max - b.y_min))))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        head = out[y0:y1, x0:x1]
        down = max(1, round(PIXELS_ACROSS * (y1 - y0) / (x1 - x0)))
        small = cv2.resize(head, (PIXELS_ACROSS, down), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cv2.resize(
            small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST
        ).astype(out.dtype)
    return out


class CameraViews:
    """Latest frame and result per camera, and which cameras stream now."""

    def __init__(self, cameras: Mapping[str, Camera], person_label: str) -> None:
        self.cameras = cameras
        self.person_label = person_label
        self._latest: dict[str, _Latest] = {}
        self._streams: dict[str, int] = {}
        self._lock = threading.Lock()

    def opened(self, camera_id: str) -> None:
        with self._lock:
            self._streams[camera_id] = self._streams.get(camera_id, 0) + 1

    def closed(self, camera_id: str) -> None:
        with self._lock:
            self._streams[camera_id] = max(0, self._streams.get(camera_id, 0) - 1)

    def record(self, camera_id: str, image: RGB, result: vision_pb2.FrameResult) -> None:
        self._latest[camera_id] = _Latest(image, result)

    def camera(self, camera_id: str) -> vision_pb2.Camera:
        return camera_message(
            camera_id, self.cameras[camera_id], self._streams.get(camera_id, 0) > 0
        )

    def list(self) -> list[vision_pb2.Camera]:
        return [self.camera(camera_id) for camera_id in sorted(self.cameras)]

    def view(self, camera_id: str) -> vision_pb2.CameraView:
        """The camera, and its latest frame (heads pixelated) with its result, if any."""
        view = vision_pb2.CameraView(camera=self.camera(camera_id))
        latest = self._latest.get(camera_id)
        if latest is None:
            return view
        image = blur_heads(latest.image, latest.result, self.person_label)
        height, width = image.shape[:2]
        scale = VIEW_MAX_SIDE / max(height, width)
        if scale < 1:  # boxes stay in the frame's pixels: frame_width/height say which
            size = (round(width * scale), round(height * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.uint8)
        view.jpeg = encode_jpeg(image, quality=80)
        view.result.CopyFrom(latest.result)
        view.frame_width, view.frame_height = width, height
        return view

    def forget(self, camera_ids: Iterable[str] | None = None) -> None:
        """Drops the held frames of these cameras (removed from the cameras file), or of
        every camera (service stop)."""
        with self._lock:
            if camera_ids is None:
                self._latest.clear()
            for camera_id in camera_ids or ():
                self._latest.pop(camera_id, None)
