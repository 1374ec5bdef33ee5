"""Protobuf messages of what the engine found: one FrameResult per analysed frame, the
same for a pushed stream (StreamFrames) and a pulled camera (its source)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.duration_pb2 import Duration

from percept.v1 import common_pb2, vision_pb2
from percept.vision.detection import Floats, Objects
from percept.vision.engine import CameraStream, FaceSeen, FrameOutcome
from percept.vision.images import RGB

ENTER = vision_pb2.ZoneEvent.EVENT_TYPE_ENTER
EXIT = vision_pb2.ZoneEvent.EVENT_TYPE_EXIT


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def _box(values: Sequence[float] | Floats) -> common_pb2.BoundingBox:
    x0, y0, x1, y1 = (float(v) for v in values)
    return common_pb2.BoundingBox(x_min=x0, y_min=y0, x_max=x1, y_max=y1)


def detection_messages(
    objects: Objects, labels: Sequence[str], tracks: Sequence[int] | None = None
) -> list[vision_pb2.Detection]:
    return [
        vision_pb2.Detection(
            label=labels[int(c)] if int(c) < len(labels) else str(int(c)),
            class_id=int(c),
            confidence=float(s),
            box=_box(b),
            track_id=int(tracks[i]) if tracks is not None else 0,
        )
        for i, (b, s, c) in enumerate(
            zip(objects.boxes, objects.scores, objects.class_ids, strict=True)
        )
    ]


def face_message(face: FaceSeen) -> vision_pb2.Face:
    return vision_pb2.Face(
        box=_box(face.box),
        confidence=face.score,
        visitor_id=face.visitor_id,
        enrolled=face.match is not None,
        match_distance=face.match.distance if face.match else 0.0,
    )


def frame_result(
    frame: vision_pb2.Frame, outcome: FrameOutcome, labels: Sequence[str], t: float, dropped: int
) -> vision_pb2.FrameResult:
    update = outcome.update
    rows, cols = update.density.shape
    result = vision_pb2.FrameResult(
        camera_id=frame.camera_id,
        sequence=frame.sequence,
        objects=detection_messages(update.objects, labels, update.object_tracks.tolist()),
        zone_events=[
            vision_pb2.ZoneEvent(
                type=ENTER if c.entered else EXIT,
                zone=c.zone.name,
                track_id=c.track.track_id,
                dwell=None if c.entered or c.zone.kind == "line" else duration(c.dwell_s),
            )
            for c in update.changes
        ],
        zones=[
            vision_pb2.ZoneOccupancy(
                zone=o.zone,
                people=o.people,
                queue_length=o.queue_length,
                entries=o.entries,
                exits=o.exits,
            )
            for o in update.occupancy
        ],
        people_count=len(update.people),
        faces=[face_message(face) for _, face in outcome.faces],
        density=vision_pb2.DensityGrid(
            rows=rows, cols=cols, cells=[round(float(v), 4) for v in update.density.flat]
        ),
        frames_dropped=dropped,
    )
    result.captured_at.FromNanoseconds(round(t * 1e9))
    return result


async def analyse_frame(
    stream: CameraStream, frame: vision_pb2.Frame, image: RGB, t: float, skipped: int
) -> vision_pb2.FrameResult:
    """One frame of a camera, pushed or pulled: analysed, its skipped frames counted, and
    the result kept as the camera's latest view."""
    engine = stream.engine
    outcome = await stream.analyse(image, t)
    engine.metrics.dropped.labels(stream.camera_id).inc(skipped)
    result = frame_result(frame, outcome, engine.detector.labels, t, skipped)
    engine.views.record(stream.camera_id, image, result)
    return result
