"""The vision service's logic, between the servicer (protobuf, statuses) and the models.

Detection of every caller's images goes through one micro-batcher; face work
runs on its own thread so that a slow face model delays only the frames that
need it. A `CameraStream` is one StreamFrames call: its scene (tracks, zones)
lives and ends with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np

from percept.runtime.batching import MicroBatcher
from percept.v1 import common_pb2
from percept.vision.cameras import Camera
from percept.vision.detection import Detector, Floats, Objects
from percept.vision.faces import FaceDetector, FaceEmbedder, FacesFound, largest
from percept.vision.footfall import FootfallMinutes, FootfallStore, MinuteRow
from percept.vision.gallery import Enrolment, Gallery, Match
from percept.vision.images import RGB
from percept.vision.metrics import VisionMetrics
from percept.vision.scene import CROWD_ZONE, Scene, SceneUpdate, Track, Tuning, ZoneChange
from percept.vision.signals import (
    crowding_signals,
    dwell_signal,
    enrolment_signal,
    face_signals,
)
from percept.vision.views import CameraViews

log = logging.getLogger("percept.vision")
Publish = Callable[[common_pb2.Signal], None]
MIN_ENROL_FACE_PX = 60  # smaller faces give unreliable embeddings
MAX_FACE_CHECKS_PER_FRAME = 4
CROP_SIDE = 320  # a face fills much of a person's upper body: no need for more pixels
MAX_BACKOFF = 8  # an unmatched person is looked at again after 1, 2, 4, then 8 intervals
T = TypeVar("T")


def _signal_time(t: float) -> datetime:
    """When it was seen: the capture time, but never later than now (a camera clock that
    runs ahead would otherwise have its signals refused by leads as from the future)."""
    return datetime.fromtimestamp(min(t, time.time()), UTC)


class EnrolmentError(ValueError):
    """The enrolment image cannot be used; the message says why."""


@dataclass(frozen=True)
class FaceSeen:
    box: Floats
    score: float
    visitor_id: str
    match: Match | None = None


@dataclass(frozen=True)
class Options:
    min_confidence: float = 0.35
    faces: str = "recognize"  # off | detect | recognize
    face_interval_s: float = 1.0
    visit_gap_s: float = 4 * 3600.0
    track_label: str = "person"
    tuning: Tuning = field(default_factory=Tuning)


class VisionEngine:
    def __init__(
        self,
        detector: Detector,
        cameras: Mapping[str, Camera],
        *,
        options: Options = Options(),
        face_detector: FaceDetector | None = None,
        embedder: FaceEmbedder | None = None,
        gallery: Gallery | None = None,
        publish: Publish | None = None,
        metrics: VisionMetrics | None = None,
        footfall: FootfallStore | None = None,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
    ) -> None:
        self.detector, self.cameras, self.options = detector, cameras, options
        self.face_detector, self.embedder, self.gallery = face_detector, embedder, gallery
        self.publish = publish
        self.metrics = metrics or VisionMetrics()
        self.footfall = footfall
        self.open_streams: set[CameraStream] = set()  # their minute in progress counts too
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="vision-footfall")
        labels = list(detector.labels)
        if options.track_label not in labels:
            raise ValueError(
                f"the detector {detector.name} has no class {options.track_label!r} to track "
                f"(PERCEPT_VISION_TRACK_LABEL); it has {', '.join(labels[:10])}"
            )
        self.track_class = labels.index(options.track_label)
        self.batcher: MicroBatcher[tuple[RGB, float], Objects] = MicroBatcher(
            self._detect_batch,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            metrics=self.metrics.detector,
            thread_name="vision-detector",
            callers=lambda: self.callers,
        )
        self.callers = 0  # open camera streams and Detect calls: who could share a batch
        self.views = CameraViews(cameras, options.track_label)
        self._face_thread = ThreadPoolExecutor(1, thread_name_prefix="vision-faces")

    @property
    def recognizing(self) -> bool:
        return self.options.faces == "recognize" and self.embedder is not None

    # -- detection --------------------------------------------------------------------

    def _detect_batch(self, items: Sequence[tuple[RGB, float]]) -> list[Objects]:
        lowest = min(threshold for _, threshold in items)
        found = self.detector.detect([image for image, _ in items], lowest)
        return [o.select(o.scores >= t) for o, (_, t) in zip(found, items, strict=True)]

    async def detect(self, image: RGB, min_confidence: float = 0.0) -> Objects:
        return await self.batcher.submit((image, min_confidence or self.options.min_confidence))

    async def detect_once(self, image: RGB, min_confidence: float = 0.0) -> Objects:
        """Detect's call: counted among the callers while it waits for its batch."""
        self.callers += 1
        try:
            return await self.detect(image, min_confidence)
        finally:
            self.callers -= 1

    # -- faces --------------------------------------------------------------------------

    async def on_face_thread(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._face_thread, work)

    def recognise(self, image: RGB, boxes: Floats) -> list[Match | None]:
        """The enrolled visitor each face is, if any; every face looked at is counted here."""
        self.metrics.faces.labels("detected").inc(len(boxes))
        if not self.recognizing or self.gallery is None or not len(boxes):
            return [None] * len(boxes)
        if self.gallery.size() == 0:  # nobody enrolled: no embedding is even computed
            return [None] * len(boxes)
        assert self.embedder is not None
        matches = [self.gallery.match(e) for e in self.embedder.embed(image, boxes)]
        self.metrics.faces.labels("matched").inc(sum(m is not None for m in matches))
        return matches

    def _faces_of_image(self, image: RGB) -> list[FaceSeen]:
        assert self.face_detector is not None
        found = self.face_detector.detect(image)
        matches = self.recognise(image, found.boxes)
        seen = []
        for box, score, match in zip(found.boxes, found.scores, matches, strict=True):
            visitor = match.face_identity_id if match else f"visit-{uuid.uuid4().hex[:16]}"
            seen.append(FaceSeen(box, float(score), visitor, match))
        return seen

    async def faces(self, image: RGB) -> list[FaceSeen]:
        """Faces in one image (Detect): ephemeral ids unless one is an enrolled visitor."""
        if self.face_detector is None or self.options.faces == "off":
            return []
        return await self.on_face_thread(lambda: self._faces_of_image(image))

    def _enroll(self, image: RGB, consent: dict[str, str]) -> tuple[Enrolment, bool]:
        assert self.face_detector is not None and self.embedder is not None
        assert self.gallery is not None
        found = self.face_detector.detect(image)
        if len(found) != 1:
            raise EnrolmentError(
                f"image: {len(found)} faces found; enrolment needs exactly one"
                if len(found)
                else "image: no face found; enrolment needs one clear, frontal face"
            )
        x0, y0, x1, y1 = found.boxes[0]
        if min(x1 - x0, y1 - y0) < MIN_ENROL_FACE_PX:
            raise EnrolmentError(
                f"image: the face is {x1 - x0:.0f}x{y1 - y0:.0f} px; enrolment needs at least "
                f"{MIN_ENROL_FACE_PX} px (a closer photo)"
            )
        embedding = self.embedder.embed(image, found.boxes)[0]
        known = self.gallery.match(embedding)
        if known is not None:  # the same consenting person again: renew, do not duplicate
            return self.gallery.renew(known.face_identity_id, consent), False
        return self.gallery.enroll(embedding, consent), True

    async def enroll(
        self,
        image: RGB,
        consent_reference: str,
        identity: common_pb2.IdentityKeys,
        camera_id: str,
    ) -> Enrolment:
        consent = {
            "reference": consent_reference,
            "camera_id": camera_id,
            "recorded_at": datetime.now().astimezone().isoformat(),
        }
        enrolment, new = await self.on_face_thread(lambda: self._enroll(image, consent))
        self.metrics.enrolments.inc()
        self.send(
            [enrolment_signal(camera_id, enrolment.face_identity_id, identity, consent_reference)]
        )
        log.info(
            "visitor enrolled" if new else "enrolment renewed",
            extra={"face_identity_id": enrolment.face_identity_id, "camera_id": camera_id},
        )
        return enrolment

    async def forget(self, face_identity_id: str) -> int:
        if self.gallery is None:
            return 0
        gallery = self.gallery
        erased = await self.on_face_thread(lambda: gallery.forget(face_identity_id))
        self.metrics.erasures.inc(erased)
        log.info("face erased", extra={"face_identity_id": face_identity_id, "erased": erased})
        return erased

    # -- streams --------------------------------------------------------------------------

    def stream(self, camera_id: str) -> CameraStream:
        """A stream on the camera's configuration now (KeyError: it was just removed)."""
        return CameraStream(self, camera_id, self.cameras[camera_id])

    def set_cameras(self, cameras: Mapping[str, Camera]) -> None:
        """The edited cameras file; open streams keep the configuration they started on."""
        self.cameras = dict(cameras)
        self.views.cameras = self.cameras

    def forget_camera(self, camera_id: str) -> None:
        """A camera removed from the cameras file: its metric series and its kept frame go
        (a stream of it still open brings them back until it ends)."""
        self.metrics.forget_camera(camera_id)
        self.views.forget([camera_id])

    def send(self, signals: Sequence[common_pb2.Signal]) -> None:
        """Signals to the outbox; a failure is logged, never felt by the camera."""
        if self.publish is None:
            return
        try:
            for signal in signals:
                self.publish(signal)
        except Exception:
            log.exception("could not queue vision signals")

    def minutes_in_progress(self, camera_id: str, zone: str) -> list[MinuteRow]:
        """The open streams' current minute of a camera's zone (not stored yet)."""
        return [
            row
            for stream in self.open_streams
            if stream.camera_id == camera_id
            for row in stream.minutes.current()
            if row.zone == zone
        ]

    def store_footfall(self, rows: Sequence[MinuteRow]) -> None:
        """Finished minutes to the store, in order, off the event loop; a failure is logged."""
        if self.footfall is None or not rows:
            return
        store = self.footfall

        def write() -> None:
            try:
                store.write(rows)
            except Exception:
                log.exception("footfall minutes not stored", extra={"rows": len(rows)})

        self._store_thread.submit(write)

    async def close(self) -> None:
        self.views.forget()
        await self.batcher.close()
        self._face_thread.shutdown(wait=True, cancel_futures=True)
        await asyncio.to_thread(self._store_thread.shutdown, wait=True)  # the last minutes
        if self.footfall is not None:
            self.footfall.close()
        if self.gallery is not None:
            self.gallery.close()


@dataclass
class FrameOutcome:
    update: SceneUpdate
    faces: list[tuple[Track, FaceSeen]]


class CameraStream:
    def __init__(self, engine: VisionEngine, camera_id: str, camera: Camera) -> None:
        self.engine, self.camera_id, self.camera = engine, camera_id, camera
        self.scene = Scene(camera, engine.track_class, engine.options.tuning)
        self.last_t: float | None = None
        self.minutes = FootfallMinutes(camera_id)
        engine.open_streams.add(self)
        engine.metrics.streams.inc()
        engine.callers += 1
        engine.views.opened(camera_id)

    async def analyse(self, image: RGB, t: float) -> FrameOutcome:
        engine = self.engine
        objects = await engine.detect(image)
        update = self.scene.update(objects, image.shape[1], image.shape[0], t)
        faces = await self._faces(image, update.people, t)
        self.last_t = t
        engine.store_footfall(self.minutes.observe(update, t))
        self._report(update, faces, t)
        metrics = engine.metrics
        metrics.frames.labels(self.camera_id).inc()
        metrics.people.labels(self.camera_id).set(len(update.people))
        for occupancy in update.occupancy:
            metrics.zone_people.labels(self.camera_id, occupancy.zone).set(occupancy.people)
        return FrameOutcome(update, faces)

    async def _faces(
        self, image: RGB, people: list[Track], t: float
    ) -> list[tuple[Track, FaceSeen]]:
        engine = self.engine
        if engine.face_detector is None or engine.options.faces == "off" or not self.camera.faces:
            return []
        due = sorted(
            (p for p in people if not p.face_identity_id and p.next_face_check <= t),
            key=lambda p: p.next_face_check,
        )[:MAX_FACE_CHECKS_PER_FRAME]
        if not due:
            return []
        for track in due:  # again later, less often while they match nobody
            wait = engine.options.face_interval_s * min(2**track.face_checks, MAX_BACKOFF)
            track.next_face_check = t + wait
            track.face_checks += 1
        return await engine.on_face_thread(lambda: self._look_at_faces(image, due))

    def _look_at_faces(self, image: RGB, tracks: list[Track]) -> list[tuple[Track, FaceSeen]]:
        """The face of each person (in the upper part of their box), matched if enrolled."""
        engine = self.engine
        assert engine.face_detector is not None
        height, width = image.shape[:2]
        found: list[tuple[Track, Floats, float]] = []
        for track in tracks:
            x0, y0, x1, y1 = track.box
            margin = 0.1 * (x1 - x0)
            cx0, cy0 = int(max(0, x0 - margin)), int(max(0, y0 - margin))
            cx1, cy1 = int(min(width, x1 + margin)), int(min(height, y0 + 0.6 * (y1 - y0)))
            if cx1 - cx0 < 24 or cy1 - cy0 < 24:
                continue
            faces: FacesFound = engine.face_detector.detect(image[cy0:cy1, cx0:cx1], CROP_SIDE)
            best = largest(faces)
            if best is None:
                continue
            box = faces.boxes[best] + np.array([cx0, cy0, cx0, cy0], np.float32)
            found.append((track, box, float(faces.scores[best])))
        boxes = np.stack([box for _, box, _ in found]) if found else np.zeros((0, 4), np.float32)
        matches = engine.recognise(image, boxes)
        seen = []
        for (track, box, score), match in zip(found, matches, strict=True):
            if match is not None:
                track.face_identity_id = match.face_identity_id
            visitor = track.face_identity_id or track.visitor_id
            seen.append((track, FaceSeen(box, score, visitor, match)))
        return seen

    def _report(self, update: SceneUpdate, faces: list[tuple[Track, FaceSeen]], t: float) -> None:
        engine, camera_id = self.engine, self.camera_id
        at = _signal_time(t)
        signals = []
        for track, face in faces:
            match, gallery = face.match, engine.gallery
            if match is None or gallery is None:  # matches come from the gallery
                continue
            last = match.last_seen_at
            returning = last is not None and (gallery.now() - last).total_seconds() >= (
                engine.options.visit_gap_s
            )
            confidence = max(0.0, min(1.0, 1.0 - match.distance / gallery.threshold))
            signals += face_signals(camera_id, track, round(confidence, 3), returning, at)
            track.reported = True
        signals += self._dwell_signals(update.changes, at)
        for zone, people in update.crowded:
            engine.metrics.crowding.labels(camera_id, zone).inc()
            inside = [p for p in update.people if zone == CROWD_ZONE or zone in p.entered]
            signals += crowding_signals(camera_id, zone, people, inside, at)
        engine.send(signals)

    def _dwell_signals(
        self, changes: Sequence[ZoneChange], at: datetime
    ) -> list[common_pb2.Signal]:
        signals = []
        for change in changes:
            signal = dwell_signal(self.camera_id, change, at)
            if signal is not None:
                signals.append(signal)
                change.track.reported = True
        return signals

    def idle(self) -> None:
        """Nobody counted in view while the camera is down (the scene keeps its tracks)."""
        self.engine.metrics.idle(self.camera_id, [zone.name for zone in self.camera.zones])

    def close(self) -> None:
        """The stream ended: people still in zones leave them (their dwell is reported,
        and counted in footfall's exits and dwell, as a walk out of view is)."""
        engine = self.engine
        end = self.last_t if self.last_t is not None else time.time()
        left = self.scene.close()
        engine.send(self._dwell_signals(left, _signal_time(end)))
        self.minutes.leave(left, end)
        engine.store_footfall(self.minutes.flush())
        engine.open_streams.discard(self)
        engine.metrics.streams.dec()
        engine.callers -= 1
        engine.views.closed(self.camera_id)
        if self.camera_id in engine.cameras:
            self.idle()
        elif not any(s.camera_id == self.camera_id for s in engine.open_streams):
            engine.forget_camera(self.camera_id)  # removed while this stream ran
