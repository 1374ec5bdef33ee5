"""Cameras that vision pulls itself: RTSP, HTTP (MJPEG, HLS), video files and V4L2 devices.

One reader thread per camera decodes with FFmpeg (PyAV), samples frames to the
camera's frame rate and hands each to `deliver` (latest wins further on). It keeps
the stream alive: a failure or a stall (no packet for `stall_s`) closes it, and it
opens again after a back-off that doubles up to a cap. An error that will not go
away by itself (wrong credentials, a codec FFmpeg cannot decode) marks the camera
failed, and it is tried again at the longest back-off, so a fixed camera comes back
without a restart. A URL's credentials never leave this module: status, logs and
errors carry `redact(url)`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import av.error
import numpy as np

from percept.vision.images import RGB
from percept.vision.metrics import VisionMetrics

log = logging.getLogger("percept.vision.sources")
SCHEMES = ("rtsp", "rtsps", "http", "https", "file", "v4l2")
USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
OPEN_TIMEOUT_S = 10.0  # opening probes the stream: a stall_s of 2 s would cut that short
FIRST_BACKOFF_S = 1.0
Deliver = Callable[[RGB, float], None]


class SourceState(StrEnum):
    CONNECTING = "connecting"  # the first try
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"  # it failed or stalled: tried again after a back-off
    FAILED = "failed"  # an error that needs a fix; still tried, at the longest back-off
    ENDED = "ended"  # a file without `loop` played to its end
    STOPPED = "stopped"


class SourceError(ValueError):
    """A camera source that cannot be used as written; the message says why."""


def redact(text: str) -> str:
    """`text` with the user:password of every URL in it removed."""
    return USERINFO.sub("***@", text)


def check_source(source: str) -> str:
    """The scheme of a source written in a cameras file, or a SourceError naming the fault."""
    scheme = urlsplit(source).scheme.lower() if "://" in source else "file"
    if scheme not in SCHEMES:
        raise SourceError(
            f"scheme {scheme!r} is not one vision reads ({', '.join(SCHEMES)}, or a file path)"
        )
    parts = urlsplit(source)
    if scheme in ("rtsp", "rtsps", "http", "https") and not parts.hostname:
        raise SourceError(f"{redact(source)} names no host")
    if scheme == "v4l2" and not parts.path.startswith("/dev/"):
        raise SourceError("a v4l2 source is v4l2:///dev/videoN")
    return scheme


def with_credentials(url: str, credentials: str) -> str:
    """`url` with `user:password` (from a secret file) put in, unless it has its own."""
    if not credentials or "@" in urlsplit(url).netloc:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{credentials}@{rest}"


@dataclass(frozen=True)
class SourceSpec:
    url: str  # may hold credentials: they stay in this module
    frame_rate: float = 10.0  # frames analysed per second at most
    rtsp_transport: str = "tcp"
    loop: bool = False  # files: from the start again at the end
    stall_s: float = 10.0  # no packet for this long: the stream is down
    max_backoff_s: float = 30.0
    credentials_file: Path | None = None  # "user:password", read at each opening (rotation)


@dataclass(frozen=True)
class SourceStatus:
    url: str  # redacted
    state: SourceState
    frames_received: int = 0  # decoded from the source
    last_frame_at: float | None = None
    last_error: str = ""
    reconnects: int = 0


class PermanentSourceError(Exception):
    """Retrying at once will not help (credentials, missing stream, codec)."""


PERMANENT = (
    av.error.HTTPUnauthorizedError,
    av.error.HTTPForbiddenError,
    av.error.HTTPNotFoundError,
    av.error.DecoderNotFoundError,
    av.error.DemuxerNotFoundError,
    av.error.ProtocolNotFoundError,
    PermanentSourceError,
)


def describe(exc: BaseException, url: str) -> str:
    """What went wrong, without the URL's credentials (FFmpeg's messages quote the URL)."""
    if isinstance(exc, av.error.FFmpegError):
        reason = exc.strerror or type(exc).__name__
        return redact(f"{reason} ({url})")
    return redact(str(exc) or type(exc).__name__)


class FrameSource:
    """One camera's reader thread; `status` is safe to read from any thread."""

    def __init__(
        self,
        camera_id: str,
        spec: SourceSpec,
        deliver: Deliver,
        metrics: VisionMetrics | None = None,
    ) -> None:
        self.camera_id, self.spec, self.deliver = camera_id, spec, deliver
        metrics = metrics or VisionMetrics()
        self._up = metrics.source_up.labels(camera_id)
        self._received = metrics.source_frames.labels(camera_id)
        self._reconnects = metrics.source_reconnects.labels(camera_id)
        self._up.set(0)
        self.scheme = check_source(spec.url)
        self._status = SourceStatus(redact(spec.url), SourceState.CONNECTING)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress = time.monotonic()  # when this try opened or last had a frame
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    @property
    def status(self) -> SourceStatus:
        with self._lock:
            return self._status

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Asks the thread to end; FFmpeg's interrupt callback sees it within a packet."""
        self._stop.set()
        self._thread.join(timeout)
        self._set(state=SourceState.STOPPED)
        self._up.set(0)

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                self._play()
                backoff = FIRST_BACKOFF_S
                if self._stop.is_set():
                    return
                if self.scheme == "file" and self.spec.loop:
                    continue
                if self.scheme == "file":
                    self._set(state=SourceState.ENDED)
                    self._up.set(0)
                    return
                raise ConnectionError("the camera closed the stream")
            except Exception as exc:  # every failure: counted, logged, retried
                if self._stop.is_set():
                    return
                permanent = isinstance(exc, PERMANENT) or (
                    # a file's bytes stay what they are; a network camera's garbage or
                    # silence (FFmpeg says "invalid data" for both) may pass
                    self.scheme == "file" and isinstance(exc, av.error.InvalidDataError)
                )
                message = describe(exc, self.status.url)
                quiet = time.monotonic() - self._progress
                if not permanent and quiet >= 0.9 * self.spec.stall_s:
                    message = f"nothing received for {quiet:.0f} s ({message})"
                wait = self.spec.max_backoff_s if permanent else backoff
                state = SourceState.FAILED if permanent else SourceState.RECONNECTING
                was = self.status
                if was.last_error != message or was.state != state:
                    log.warning(
                        "camera source %s",
                        state.value,
                        extra={"camera_id": self.camera_id, "error": message, "retry_s": wait},
                    )
                self._set(state=state, last_error=message, reconnects=was.reconnects + 1)
                self._up.set(0)
                self._reconnects.inc()
                self._stop.wait(wait)
                backoff = min(self.spec.max_backoff_s, backoff * 2)

    def _credentials(self) -> str:
        """The secret file's `user:password`, read anew at each opening, so a rotated
        secret is used from the next reconnect."""
        path = self.spec.credentials_file
        if path is None:
            return ""
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise PermanentSourceError(
                f"credentials_file {path}: cannot read ({exc.strerror})"
            ) from None

    def _open(self) -> Any:
        url, options, kind = with_credentials(self.spec.url, self._credentials()), {}, None
        if self.scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self.spec.rtsp_transport
        elif self.scheme == "file":
            url = urlsplit(url).path if url.startswith("file://") else url
            if not Path(url).is_file():
                raise PermanentSourceError(f"no such file: {url}")
        elif self.scheme == "v4l2":
            url, kind = urlsplit(url).path, "v4l2"
        return av.open(
            url,
            format=kind,
            options=options,
            timeout=(OPEN_TIMEOUT_S, self.spec.stall_s),
        )

    def _play(self) -> None:
        """Decodes until the stream ends or it is stopped; raises on a failure."""
        self._progress = time.monotonic()
        with self._open() as container:
            if not container.streams.video:
                raise PermanentSourceError("the source has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # FFmpeg knows no decoder for it
                raise PermanentSourceError("no decoder for the camera's video codec")
            stream.thread_type = "AUTO"
            live = self.scheme != "file"
            every = 1.0 / self.spec.frame_rate
            started = time.monotonic()
            first_pts: float | None = None
            next_due = 0.0
            for frame in container.decode(stream):
                if self._stop.is_set():
                    return
                now, self._progress = time.time(), time.monotonic()
                seen = self.status
                if seen.state != SourceState.STREAMING:
                    log.info("camera streaming", extra={"camera_id": self.camera_id})
                    self._up.set(1)
                self._received.inc()
                self._set(
                    state=SourceState.STREAMING,
                    frames_received=seen.frames_received + 1,
                    last_frame_at=now,
                )
                if not live:  # a file plays at its own pace, as a camera would send it
                    at = float(frame.time or 0.0)
                    first_pts = at if first_pts is None else first_pts
                    ahead = (at - first_pts) - (time.monotonic() - started)
                    if ahead > 0 and self._stop.wait(ahead):
                        return
                position = time.monotonic()
                if position < next_due:
                    continue  # sampled out: the camera sends faster than frame_rate
                next_due = max(next_due + every, position)
                image: RGB = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                self.deliver(image, time.time())
