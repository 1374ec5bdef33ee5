"""Prometheus metrics of the vision service (camera and zone labels come from the
cameras file, so their number is bounded by configuration, not by callers)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from percept.runtime.batching import BatchMetrics


class VisionMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw: dict[str, Any] = {"registry": registry}
        self.detector = BatchMetrics(registry, "percept_vision_detector")
        self.frames = Counter("percept_vision_frames_total", "Frames analysed.", ["camera"], **kw)
        self.dropped = Counter(
            "percept_vision_frames_dropped_total",
            "Frames skipped by the latest-wins policy (the camera sent faster than we analyse).",
            ["camera"],
            **kw,
        )
        self.streams = Gauge("percept_vision_streams", "Camera streams open now.", **kw)
        self.reloads = Counter(
            "percept_vision_cameras_reloads_total",
            "Edits of the cameras file, by outcome (applied, refused as malformed).",
            ["outcome"],
            **kw,
        )
        self.source_up = Gauge(
            "percept_vision_camera_up",
            "1 while a camera vision pulls itself is streaming, 0 while it is down.",
            ["camera"],
            **kw,
        )
        self.source_frames = Counter(
            "percept_vision_camera_frames_received_total",
            "Frames decoded from cameras vision pulls itself (before sampling).",
            ["camera"],
            **kw,
        )
        self.source_reconnects = Counter(
            "percept_vision_camera_reconnects_total",
            "Times a pulled camera's stream failed or stalled and was opened again.",
            ["camera"],
            **kw,
        )
        self.people = Gauge("percept_vision_people", "People in view.", ["camera"], **kw)
        self.zone_people = Gauge(
            "percept_vision_zone_people", "People in a zone.", ["camera", "zone"], **kw
        )
        self.crowding = Counter(
            "percept_vision_crowding_alerts_total",
            "Crowding episodes (zone '*' is the whole view).",
            ["camera", "zone"],
            **kw,
        )
        self.faces = Counter(
            "percept_vision_faces_total",
            "Faces looked at, by outcome (detected, matched an enrolled visitor).",
            ["outcome"],
            **kw,
        )
        self.enrolments = Counter(
            "percept_vision_enrolments_total", "Consenting visitors enrolled.", **kw
        )
        self.erasures = Counter(
            "percept_vision_face_erasures_total", "Enrolled faces erased.", **kw
        )

    def idle(self, camera_id: str, zones: Iterable[str]) -> None:
        """Nobody is counted in view of a camera whose stream closed or went down: a
        gauge left at its last value would say people stand there still."""
        self.people.labels(camera_id).set(0)
        for zone in zones:
            self.zone_people.labels(camera_id, zone).set(0)

    def forget_camera(self, camera_id: str) -> None:
        """A camera gone from the cameras file: every series labelled with it goes too."""
        for metric in (
            self.frames,
            self.dropped,
            self.source_up,
            self.source_frames,
            self.source_reconnects,
            self.people,
            self.zone_people,
            self.crowding,
        ):
            metric.remove_by_labels({"camera": camera_id})
