"""The vision service as the runtime hosts it: cameras, detector, faces and gallery on load."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from percept.models import model_store
from percept.runtime.devices import resolve_device
from percept.runtime.periodic import every
from percept.runtime.settings import Settings
from percept.runtime.signals import SignalPublisher
from percept.understanding import data
from percept.understanding.entities import catalog
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.cameras import FILE as CAMERAS_FILE
from percept.vision.cameras import Camera, load_cameras
from percept.vision.engine import Options, VisionEngine
from percept.vision.faces import DlibEmbedder, FaceEmbedder, FacenetEmbedder, Mtcnn
from percept.vision.feeds import CameraFeeds
from percept.vision.footfall import FootfallStore
from percept.vision.gallery import Gallery, load_key
from percept.vision.leader import SourceLeader
from percept.vision.metrics import VisionMetrics
from percept.vision.models import load_detector
from percept.vision.reload import CamerasReloader
from percept.vision.servicer import VisionServicer

SERVICE = vision_pb2.DESCRIPTOR.services_by_name["Vision"].full_name
PURGE_EVERY_S = 3600.0
log = logging.getLogger("percept.vision")


def cameras_path(settings: Settings) -> Path | None:
    """The cameras file in use; None: the packaged demo cameras."""
    path = settings.vision_cameras_file
    if path is None and settings.understanding_dir is not None:
        candidate = settings.understanding_dir / CAMERAS_FILE
        path = candidate if candidate.is_file() else None
    return path


def cameras_of(settings: Settings) -> dict[str, Camera]:
    data.use_directory(settings.understanding_dir)
    return dict(load_cameras(cameras_path(settings), sorted(catalog())))


def open_gallery(settings: Settings, embedder: str, threshold: float) -> Gallery:
    url = settings.vision_gallery_store or f"sqlite:///{settings.data_dir / 'vision-gallery.db'}"
    shared = bool(settings.vision_gallery_store) and not url.startswith("sqlite")
    key = load_key(settings.vision_gallery_key, settings.data_dir / "vision-gallery.key", shared)
    return Gallery(
        url,
        key,
        embedder,
        retention=timedelta(days=settings.vision_face_retention_days),
        threshold=threshold,
    )


def load_embedder(settings: Settings, device: str) -> FaceEmbedder:
    store = model_store(settings)
    if settings.vision_face_embedder == "facenet":
        weights = store.resolve("facenet-vggface2")
        return FacenetEmbedder(weights.file(weights.spec.files[0]), device)
    return DlibEmbedder(store.resolve("dlib-face-resnet").path)


class VisionService:
    name = "vision"
    grpc_service_names: Sequence[str] = (SERVICE,)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = VisionMetrics(self.registry)
        self.signals = SignalPublisher(settings, self.name, self.registry)
        self.servicer = VisionServicer(
            max_pixels=settings.vision_max_pixels, max_fps=settings.vision_max_fps
        )
        self.servicer.phone_region = settings.default_phone_region or None
        self._purge: asyncio.Task[None] | None = None
        self.feeds: CameraFeeds | None = None
        self.reloader: CamerasReloader | None = None
        self.leader: SourceLeader | None = None
        self._lead: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        vision_pb2_grpc.add_VisionServicer_to_server(self.servicer, server)

    def _build(self) -> VisionEngine:
        settings = self.settings
        cameras = cameras_of(settings)
        detector = load_detector(settings)
        faces = settings.vision_faces
        device = resolve_device(settings.vision_device)
        face_detector = None
        if faces != "off":
            face_detector = Mtcnn(model_store(settings).resolve("mtcnn").path, device)
        embedder = load_embedder(settings, device) if faces == "recognize" else None
        threshold = settings.vision_face_match_threshold or (
            embedder.threshold if embedder else DlibEmbedder.threshold
        )
        # Opened whatever the mode, so erasure and retention work after recognition is off.
        gallery = open_gallery(
            settings, embedder.name if embedder else DlibEmbedder.name, threshold
        )
        purged = gallery.purge_expired()
        if purged:
            log.info("expired face enrolments erased", extra={"erased": purged})
        footfall_url = self._store_url()
        options = Options(
            min_confidence=settings.vision_min_confidence,
            faces=faces,
            face_interval_s=settings.vision_face_interval_s,
            visit_gap_s=settings.vision_visit_gap_s,
            track_label=settings.vision_track_label,
        )
        return VisionEngine(
            detector,
            cameras,
            options=options,
            face_detector=face_detector,
            embedder=embedder,
            gallery=gallery,
            metrics=self.metrics,
            footfall=FootfallStore(footfall_url),
            max_batch=settings.vision_max_batch,
            max_wait_s=settings.vision_batch_wait_ms / 1000,
        )

    async def load(self) -> None:
        engine = await asyncio.to_thread(self._build)
        self.signals.start()
        engine.publish = self.signals.publish
        self.servicer.engine = engine
        self.feeds = CameraFeeds(engine)
        self.servicer.feeds = self.feeds
        self.leader = SourceLeader(self._store_url(), self.feeds.lead, self.feeds.give_up)
        self._lead = asyncio.create_task(self.leader.run(), name="vision-cameras-leader")
        path = cameras_path(self.settings)
        if path is not None and self.settings.vision_cameras_reload_s > 0:
            self.reloader = CamerasReloader(
                path, self._apply_cameras, self.settings.vision_cameras_reload_s, self.metrics
            )
            self.servicer.reloader = self.reloader
            self._reload = asyncio.create_task(self.reloader.run(), name="vision-cameras-reload")
        self._purge = asyncio.create_task(
            every(PURGE_EVERY_S, partial(self._expire, engine), "footfall and gallery expiry"),
            name="vision-retention",
        )

    def _store_url(self) -> str:
        """Footfall's database, which also elects the replica reading pulled cameras."""
        default = f"sqlite:///{self.settings.data_dir / 'vision-footfall.db'}"
        return self.settings.vision_footfall_store or default

    async def _apply_cameras(self, cameras: Mapping[str, Camera]) -> None:
        engine = self.servicer.engine
        if engine is None or self.feeds is None:
            return
        removed = set(engine.cameras) - set(cameras)
        engine.set_cameras(cameras)
        await self.feeds.apply(cameras)
        for camera_id in removed:  # after their feeds stopped: nothing brings them back
            if not any(s.camera_id == camera_id for s in engine.open_streams):
                engine.forget_camera(camera_id)

    async def _expire(self, engine: VisionEngine) -> None:
        if engine.footfall is not None:
            keep = self.settings.vision_footfall_retention_days * 24 * 60
            before = int(time.time() // 60 - keep)
            purged = await asyncio.to_thread(engine.footfall.purge, before)
            if purged:
                log.info("expired footfall minutes erased", extra={"erased": purged})
        if engine.gallery is not None:
            purged = await engine.on_face_thread(engine.gallery.purge_expired)
            if purged:
                log.info("expired face enrolments erased", extra={"erased": purged})

    async def close(self) -> None:
        if self._lead is not None:
            self._lead.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lead
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload
        if self._purge is not None:
            self._purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge
        if self.feeds is not None:
            await self.feeds.stop()
        if self.leader is not None:
            await self.leader.close()
        engine, self.servicer.engine = self.servicer.engine, None
        if engine is not None:
            engine.publish = None
            await engine.close()
        await self.signals.close()
