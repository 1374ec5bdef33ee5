"""gRPC face of the vision service: requests checked, images decoded, results as messages."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from percept.leads.identity import InvalidIdentityError, keys_of
from percept.runtime.ratelimit import RateLimiter
from percept.runtime.streams import DRAIN_S, MalformedMessageError, drain
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.engine import CameraStream, EnrolmentError, VisionEngine
from percept.vision.feeds import CameraFeeds
from percept.vision.footfall import VIEW, with_rows
from percept.vision.footfall_query import (
    FootfallQueryError,
    footfall_message,
    footfall_query,
)
from percept.vision.images import RGB, ImageError, ImageTooLargeError, decode_image
from percept.vision.latest import LatestSlot
from percept.vision.reload import CamerasReloader
from percept.vision.results import analyse_frame, detection_messages, duration, face_message
from percept.vision.sources import redact

Context = grpc.aio.ServicerContext[Any, Any]
MAX_CONSENT_REFERENCE = 500
MAX_CLOCK_AHEAD_S = 86_400.0  # a camera's clock may be off (a time zone), not by days


class StreamError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class VisionServicer(vision_pb2_grpc.VisionServicer):
    def __init__(self, max_pixels: int = 36_000_000, max_fps: float = 60.0) -> None:
        self.engine: VisionEngine | None = None  # set when the models have loaded
        self.feeds: CameraFeeds | None = None  # the cameras read from a source
        self.reloader: CamerasReloader | None = None  # watches the cameras file
        self.max_pixels = max_pixels
        self.max_fps = max_fps
        self.phone_region: str | None = None  # for enrolled visitors' numbers without +country

    async def _engine(self, context: Context) -> VisionEngine:
        if self.engine is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the vision models are still loading")
        assert self.engine is not None
        return self.engine

    async def _decode(self, image: vision_pb2.Image, field: str) -> RGB:
        try:
            return await asyncio.to_thread(decode_image, image, self.max_pixels, field)
        except ImageTooLargeError as exc:
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except ImageError as exc:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    async def _image(self, image: vision_pb2.Image, context: Context, field: str = "image") -> RGB:
        try:
            return await self._decode(image, field)
        except StreamError as exc:
            await context.abort(exc.code, str(exc))
        raise AssertionError("unreachable")

    async def Detect(
        self, request: vision_pb2.DetectRequest, context: Context
    ) -> vision_pb2.Detections:
        engine = await self._engine(context)
        threshold = request.min_confidence
        if math.isnan(threshold) or not 0.0 <= threshold < 1.0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"min_confidence: {threshold} is outside [0, 1) (0 uses the server default)",
            )
        labels = list(engine.detector.labels)
        unknown = [c for c in request.classes if c not in labels]
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"classes: {unknown[0]!r} is not a class of {engine.detector.name} "
                f"(e.g. {', '.join(labels[:8])})",
            )
        image = await self._image(request.image, context)
        started = time.perf_counter()
        objects = await engine.detect_once(image, threshold)
        if request.classes:
            wanted = [labels.index(c) for c in request.classes]
            objects = objects.select(np.isin(objects.class_ids, wanted))
        faces = await engine.faces(image) if request.detect_faces else []
        return vision_pb2.Detections(
            detections=detection_messages(objects, labels),
            faces=[face_message(f) for f in faces],
            image_width=image.shape[1],
            image_height=image.shape[0],
            model=engine.detector.name,
            inference_time=duration(time.perf_counter() - started),
        )

    async def StreamFrames(
        self, request_iterator: AsyncIterator[vision_pb2.Frame], context: Context
    ) -> AsyncIterator[vision_pb2.FrameResult]:
        engine = await self._engine(context)
        slot: LatestSlot[vision_pb2.Frame] = LatestSlot()
        reader = asyncio.create_task(self._read(request_iterator, slot, engine))
        stream: CameraStream | None = None
        try:
            skipped = 0
            while True:
                frame, dropped = await slot.take()
                skipped += dropped
                if frame is None:
                    break
                if stream is None:
                    try:
                        stream = engine.stream(frame.camera_id.strip())
                    except KeyError:  # removed from the cameras file meanwhile
                        raise StreamError(
                            grpc.StatusCode.NOT_FOUND,
                            _unknown_camera(frame.camera_id.strip(), engine),
                        ) from None
                t = _frame_time(frame)
                if stream.last_t is not None and t <= stream.last_t:
                    skipped += 1  # older than what was analysed: stale
                    continue
                image = await self._decode(frame.image, f"sequence {frame.sequence}: image")
                yield await analyse_frame(stream, frame, image, t, skipped)
                skipped = 0
            if slot.error is not None:
                raise slot.error
        except StreamError as exc:
            with contextlib.suppress(TimeoutError, Exception):  # the reader drains the rest
                await asyncio.wait_for(asyncio.shield(reader), DRAIN_S)
            await context.abort(exc.code, str(exc))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if stream is not None:
                stream.close()

    async def _read(
        self,
        requests: AsyncIterator[vision_pb2.Frame],
        slot: LatestSlot[vision_pb2.Frame],
        engine: VisionEngine,
    ) -> None:
        """Checks each frame's camera as it arrives; the slot keeps only the newest frame."""
        camera = None
        count = 0
        # Latest-wins absorbs a camera somewhat faster than the model; a flood past this
        # (every message is still parsed) is refused.
        pace = RateLimiter(self.max_fps * 60, burst=max(1, round(self.max_fps)))
        try:
            async for frame in requests:
                count += 1
                if pace.allow("frames") > 0:
                    raise StreamError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"frame {count}: more than {self.max_fps:g} frames a second on one "
                        "stream (PERCEPT_VISION_MAX_FPS); send at the camera's frame rate",
                    )
                camera_id = frame.camera_id.strip()
                if camera is None:
                    if not camera_id:
                        raise StreamError(
                            grpc.StatusCode.INVALID_ARGUMENT, "frame 1: camera_id: required"
                        )
                    if camera_id not in engine.cameras:
                        raise StreamError(
                            grpc.StatusCode.NOT_FOUND, _unknown_camera(camera_id, engine)
                        )
                    camera = camera_id
                elif camera_id != camera:
                    raise StreamError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"frame {count}: camera_id {camera_id!r} differs from the stream's "
                        f"camera {camera!r}; open one stream per camera",
                    )
                if not frame.HasField("image"):
                    raise StreamError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"frame {count}: image: required"
                    )
                if problem := _capture_problem(frame, time.time()):
                    raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"frame {count}: {problem}")
                slot.put(frame)
        except MalformedMessageError as exc:
            await drain(requests)
            slot.close(StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)))
            return
        except StreamError as exc:
            await drain(requests)
            slot.close(exc)
            return
        slot.close()

    async def Enroll(
        self, request: vision_pb2.EnrollRequest, context: Context
    ) -> vision_pb2.EnrollResponse:
        engine = await self._engine(context)
        consent = request.consent_reference.strip()
        if not consent:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "consent_reference: required (where and when the visitor consented); "
                "no face is enrolled without consent",
            )
        if len(consent) > MAX_CONSENT_REFERENCE or not consent.isprintable():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"consent_reference: printable text of at most {MAX_CONSENT_REFERENCE} characters",
            )
        try:  # leads would refuse the enrolment's signal after the visitor was enrolled
            keys_of(request.identity, self.phone_region)
        except InvalidIdentityError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not engine.recognizing:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"face recognition is off here (PERCEPT_VISION_FACES={engine.options.faces}); "
                "enrolment needs 'recognize'",
            )
        image = await self._image(request.image, context)
        try:
            enrolment = await engine.enroll(
                image, consent, request.identity, request.camera_id.strip()
            )
        except EnrolmentError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        expires = Timestamp()
        expires.FromDatetime(enrolment.expires_at.astimezone(UTC))
        return vision_pb2.EnrollResponse(
            face_identity_id=enrolment.face_identity_id, expires_at=expires
        )

    async def ForgetVisitor(
        self, request: vision_pb2.ForgetVisitorRequest, context: Context
    ) -> vision_pb2.ForgetVisitorResponse:
        engine = await self._engine(context)
        face_id = request.face_identity_id.strip()
        if not face_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "face_identity_id: required")
        erased = await engine.forget(face_id)
        return vision_pb2.ForgetVisitorResponse(embeddings_erased=erased)

    async def ListCameras(
        self, request: vision_pb2.ListCamerasRequest, context: Context
    ) -> vision_pb2.ListCamerasResponse:
        engine = await self._engine(context)
        cameras = engine.views.list()
        for camera in cameras:
            self._with_source(camera)
        refused = self.reloader.error if self.reloader is not None else ""
        return vision_pb2.ListCamerasResponse(cameras=cameras, cameras_file_error=refused)

    async def GetCameraView(
        self, request: vision_pb2.GetCameraViewRequest, context: Context
    ) -> vision_pb2.CameraView:
        engine = await self._engine(context)
        camera_id = request.camera_id.strip()
        if not camera_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "camera_id: required")
        if camera_id not in engine.cameras:
            await context.abort(grpc.StatusCode.NOT_FOUND, _unknown_camera(camera_id, engine))
        view = await asyncio.to_thread(engine.views.view, camera_id)
        self._with_source(view.camera)
        return view

    async def GetFootfall(
        self, request: vision_pb2.GetFootfallRequest, context: Context
    ) -> vision_pb2.Footfall:
        engine = await self._engine(context)
        try:
            query = footfall_query(request, engine.cameras, time.time())
        except FootfallQueryError as exc:
            await context.abort(exc.code, str(exc))
        if engine.footfall is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "footfall is not kept here")
        store, zone = engine.footfall, query.zone or VIEW
        stored = await asyncio.to_thread(
            store.buckets,
            query.camera_id,
            zone,
            query.start_minute,
            query.end_minute,
            query.bucket_minutes,
        )
        live = engine.minutes_in_progress(query.camera_id, zone)
        buckets = with_rows(
            stored, live, query.start_minute, query.end_minute, query.bucket_minutes
        )
        return footfall_message(query, buckets)

    def _with_source(self, camera: vision_pb2.Camera) -> None:
        """A pulled camera's reader status (it streams while its source does)."""
        status = self.feeds.status(camera.camera_id) if self.feeds is not None else None
        if status is not None:
            camera.source.CopyFrom(status)
            camera.streaming = status.state == vision_pb2.SOURCE_STATE_STREAMING
            return
        engine = self.engine
        configured = engine.cameras.get(camera.camera_id) if engine is not None else None
        if configured is not None and configured.source:  # another replica reads it
            camera.source.url = redact(configured.source)
            camera.source.state = vision_pb2.SOURCE_STATE_ELSEWHERE


def _unknown_camera(camera_id: str, engine: VisionEngine) -> str:
    known = ", ".join(sorted(engine.cameras)) or "none"
    return (
        f"camera_id: {camera_id!r} has no configuration in the cameras "
        f"file (PERCEPT_VISION_CAMERAS_FILE); configured: {known}"
    )


def _capture_problem(frame: vision_pb2.Frame, now: float) -> str:
    """What is wrong with a frame's capture time, or ''. A time far ahead would make every
    later frame of the stream look stale (older than it), and so be skipped."""
    if not frame.HasField("captured_at"):
        return ""
    try:
        at = frame.captured_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        return f"captured_at: not a valid time ({exc})"
    if at.timestamp() > now + MAX_CLOCK_AHEAD_S:
        server = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        return (
            f"captured_at: {at.isoformat()} is more than {MAX_CLOCK_AHEAD_S / 3600:g} hours "
            f"ahead of the server's clock ({server}); set the camera's clock"
        )
    return ""


def _frame_time(frame: vision_pb2.Frame) -> float:
    """Capture time in seconds (the arrival time when the camera gives none); checked by
    `_capture_problem` as the frame arrived."""
    if frame.HasField("captured_at"):
        return frame.captured_at.ToNanoseconds() / 1e9
    return datetime.now(UTC).timestamp()
