"""Cameras with a `source`: vision reads them whether or not any client is connected.

Each feed is a reader thread (sources.FrameSource) and a task that analyses its
newest frame through the same engine path as a pushed StreamFrames stream: one
CameraStream (tracks, zones, faces, signals) for as long as the feed runs, its
results kept for the console's view. Frames the model cannot keep up with are
replaced (latest wins) and counted as dropped. A feed that fails never touches the
others or the service's health; it says why in its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from percept.v1 import vision_pb2
from percept.vision.cameras import Camera
from percept.vision.engine import CameraStream, VisionEngine
from percept.vision.images import RGB
from percept.vision.latest import LatestSlot
from percept.vision.results import analyse_frame
from percept.vision.sources import FrameSource, SourceSpec, SourceState

log = logging.getLogger("percept.vision.feeds")
STATES = {
    SourceState.CONNECTING: vision_pb2.SOURCE_STATE_CONNECTING,
    SourceState.STREAMING: vision_pb2.SOURCE_STATE_STREAMING,
    SourceState.RECONNECTING: vision_pb2.SOURCE_STATE_RECONNECTING,
    SourceState.FAILED: vision_pb2.SOURCE_STATE_FAILED,
    SourceState.ENDED: vision_pb2.SOURCE_STATE_ENDED,
    SourceState.STOPPED: vision_pb2.SOURCE_STATE_STOPPED,
}


def source_spec(camera: Camera) -> SourceSpec:
    return SourceSpec(
        url=camera.source,
        credentials_file=camera.credentials_file,
        frame_rate=camera.frame_rate,
        rtsp_transport=camera.rtsp_transport,
        loop=camera.loop,
        stall_s=camera.stall_s,
        max_backoff_s=camera.max_backoff_s,
    )


@dataclass
class FeedCounts:
    analysed: int = 0
    dropped: int = 0  # sampled in, but replaced before the model was free, or out of time


class Feed:
    """One pulled camera: its reader thread and the task analysing what it reads."""

    def __init__(self, engine: VisionEngine, camera_id: str, camera: Camera) -> None:
        self.engine, self.camera_id, self.camera = engine, camera_id, camera
        self.counts = FeedCounts()
        self.slot: LatestSlot[tuple[RGB, float]] = LatestSlot()
        loop = asyncio.get_running_loop()

        def deliver(image: RGB, t: float) -> None:  # on the reader thread
            loop.call_soon_threadsafe(self.slot.put, (image, t))

        def down() -> None:  # on the reader thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to say
                loop.call_soon_threadsafe(self._idle)

        self.source = FrameSource(camera_id, source_spec(camera), deliver, engine.metrics, down)
        self.stream: CameraStream | None = None  # while the analysing task runs
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.source.start()
        self.task = asyncio.create_task(self._analyse(), name=f"camera-{self.camera_id}")

    def _idle(self) -> None:
        """The source went down: nobody is counted in view until it streams again."""
        if self.stream is not None:
            self.stream.idle()

    async def _analyse(self) -> None:
        engine, camera_id = self.engine, self.camera_id
        stream = self.stream = engine.stream(camera_id)
        sequence = 0
        try:
            while True:
                item, skipped = await self.slot.take()
                if item is None:
                    return
                image, t = item
                self.counts.dropped += skipped
                if stream.last_t is not None and t <= stream.last_t:
                    # not after the last frame analysed (a file's frames carry the host
                    # clock, which NTP may step back; a live camera's times only go
                    # forward): dropped, and counted so
                    self.counts.dropped += 1
                    engine.metrics.dropped.labels(camera_id).inc(skipped + 1)
                    continue
                sequence += 1
                frame = vision_pb2.Frame(camera_id=camera_id, sequence=sequence)
                try:
                    await analyse_frame(stream, frame, image, t, skipped)
                except Exception:  # a model failure costs this frame, not the camera
                    log.exception("camera frame not analysed", extra={"camera_id": camera_id})
                    engine.metrics.dropped.labels(camera_id).inc(skipped)
                    continue
                self.counts.analysed += 1
                if self.source.status.state is not SourceState.STREAMING:
                    stream.idle()  # it went down while this frame was analysed
        finally:
            self.stream = None
            stream.close()

    def status(self) -> vision_pb2.CameraSource:
        seen = self.source.status
        message = vision_pb2.CameraSource(
            url=seen.url,
            state=STATES[seen.state],
            frames_received=seen.frames_received,
            frames_analysed=self.counts.analysed,
            frames_dropped=self.counts.dropped,
            last_error=seen.last_error,
            reconnects=seen.reconnects,
        )
        if seen.last_frame_at is not None:
            message.last_frame_at.FromNanoseconds(round(seen.last_frame_at * 1e9))
        return message

    async def stop(self) -> None:
        self.slot.close()
        await asyncio.to_thread(self.source.stop)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class CameraFeeds:
    """Every camera of the cameras file that has a source, running."""

    def __init__(self, engine: VisionEngine) -> None:
        self.engine = engine
        self.feeds: dict[str, Feed] = {}
        self.reading = False  # this replica reads the pulled cameras (leader.SourceLeader)

    async def lead(self) -> None:
        self.reading = True
        self.start(self.engine.cameras)

    async def give_up(self) -> None:
        self.reading = False
        await self.stop()

    def start(self, cameras: Mapping[str, Camera]) -> None:
        if not self.reading:
            return
        for camera_id, camera in sorted(cameras.items()):
            if camera.source:
                feed = Feed(self.engine, camera_id, camera)
                self.feeds[camera_id] = feed
                feed.start()
                log.info(
                    "camera feed started",
                    extra={"camera_id": camera_id, "source": feed.source.status.url},
                )

    async def apply(self, cameras: Mapping[str, Camera]) -> None:
        """An edited cameras file: feeds of removed or changed cameras stop, new ones start
        (a changed camera starts afresh: new zones, a new scene); the rest run on."""
        stale = [
            camera_id
            for camera_id, feed in self.feeds.items()
            if cameras.get(camera_id) != feed.camera
        ]
        await asyncio.gather(*(self.feeds.pop(camera_id).stop() for camera_id in stale))
        self.start({k: v for k, v in cameras.items() if k not in self.feeds})

    def status(self, camera_id: str) -> vision_pb2.CameraSource | None:
        feed = self.feeds.get(camera_id)
        return feed.status() if feed is not None else None

    async def stop(self) -> None:
        feeds, self.feeds = list(self.feeds.values()), {}
        await asyncio.gather(*(feed.stop() for feed in feeds))
