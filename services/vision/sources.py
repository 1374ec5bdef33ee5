"""Cameras that vision pulls itself: RTSP, HTTP (MJPEG, HLS), video files and V4L2 devices.

One reader thread per camera decodes the video with FFmpeg (PyAV), times each frame
(a live camera by its presentation time, see pacing.py; a file by its own pace),
samples frames to the camera's frame rate and hands each to `deliver` (latest wins
further on). It keeps the stream alive: a failure or a stall (no video frame for
`stall_s`, whatever else the stream still sends) closes it, and it opens again after
a back-off that doubles up to a cap, and starts at 1 s again once a session has
streamed. An error that will not go away by itself (wrong credentials, a codec
FFmpeg cannot decode) marks the camera failed, and it is tried again at the longest
back-off, so a fixed camera comes back without a restart. A URL's credentials never
leave this module: status, logs and errors carry `redact(url)`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import av.error
import av.format
import numpy as np

from percept.vision.images import RGB
from percept.vision.metrics import VisionMetrics
from percept.vision.pacing import PresentationClock

log = logging.getLogger("percept.vision.sources")
SCHEMES = ("rtsp", "rtsps", "http", "https", "file", "v4l2")
USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
OPEN_TIMEOUT_S = 10.0  # opening probes the stream: a stall_s of 2 s would cut that short
FIRST_BACKOFF_S = 1.0
SAME_TIME_S = 0.001  # frame times this close are one instant (float rounding of PTS)
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
    stall_s: float = 10.0  # no video frame for this long: the stream is down
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


class StalledError(ConnectionError):
    """Nothing, or no video, came for stall_s: the stream is down."""


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


@dataclass
class _Session:
    """One opening of the stream: how its frames are timed and sampled."""

    every: float  # seconds between frames analysed
    live: bool  # a camera (timed by its PTS), not a file (played at its own pace)
    stamped: bool  # the format carries presentation times (MJPEG over HTTP has none)
    started: float = field(default_factory=time.monotonic)
    first_pts: float | None = None
    next_sample: float = -math.inf
    frames: int = 0  # decoded

    def sampled(self, position: float) -> bool:
        """Whether the frame at `position` (seconds) is taken at the camera's frame rate."""
        if position < self.next_sample - SAME_TIME_S:
            return False  # the camera sends faster than frame_rate
        self.next_sample += self.every
        if self.next_sample <= position:  # the first frame, or after a gap: count from here
            self.next_sample = position + self.every
        return True

    def file_due(self, frame: Any) -> float:
        """When a file's frame is due: at its place in the file, from the session's start."""
        at = float(frame.time or 0.0)
        self.first_pts = at if self.first_pts is None else self.first_pts
        return self.started + (at - self.first_pts)


class FrameSource:
    """One camera's reader thread; `status` is safe to read from any thread.

    `on_down` is called on the reader thread each time the stream goes down (failed,
    stalled, ended), so that what was counted in view is not left standing."""

    def __init__(
        self,
        camera_id: str,
        spec: SourceSpec,
        deliver: Deliver,
        metrics: VisionMetrics | None = None,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        self.camera_id, self.spec, self.deliver = camera_id, spec, deliver
        self.on_down = on_down or (lambda: None)
        metrics = metrics or VisionMetrics()
        self._up = metrics.source_up.labels(camera_id)
        self._received = metrics.source_frames.labels(camera_id)
        self._reconnects = metrics.source_reconnects.labels(camera_id)
        self._up.set(0)
        self.scheme = check_source(spec.url)
        self.clock = PresentationClock(max_gap_s=spec.stall_s)  # lives across sessions
        self._status = SourceStatus(redact(spec.url), SourceState.CONNECTING)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress = time.monotonic()  # when this session opened or last had a video frame
        self._heard = time.monotonic()  # when it began opening or last had a packet of any kind
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

    def stop(self, timeout: float = 5.0) -> bool:
        """Asks the thread to end; True if it did within `timeout`. It looks at every packet
        of any stream and wakes from any wait, so it ends within a packet; a read that gets
        nothing at all ends at stall_s (PyAV offers no way to cut FFmpeg's blocking read
        short but its read timeout)."""
        self._stop.set()
        self._thread.join(timeout)
        self._set(state=SourceState.STOPPED)
        self._up.set(0)
        return not self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                frames = self._play()
                if self._stop.is_set():
                    return
                if self.scheme == "file" and self.spec.loop and frames:
                    continue
                if self.scheme == "file" and self.spec.loop:  # would reopen in a busy loop
                    raise PermanentSourceError("the file has no video frame to play")
                if self.scheme == "file":
                    self._set(state=SourceState.ENDED)
                    self._went_down()
                    return
                raise ConnectionError("the camera closed the stream")
            except Exception as exc:  # every failure: counted, logged, retried
                if self._stop.is_set():
                    return
                if self.status.state == SourceState.STREAMING:
                    backoff = FIRST_BACKOFF_S  # it streamed: a new outage, not the same one
                self._stop.wait(self._failed(exc, backoff))
                backoff = min(self.spec.max_backoff_s, backoff * 2)

    def _failed(self, exc: Exception, backoff: float) -> float:
        """Says why the stream went down (status, log, metrics); the wait before the next try."""
        permanent = isinstance(exc, PERMANENT) or (
            # a file's bytes stay what they are (garbage, or empty); a network camera's
            # garbage or silence (FFmpeg says "invalid data" for both) may pass
            self.scheme == "file" and isinstance(exc, av.error.InvalidDataError | av.error.EOFError)
        )
        message = describe(exc, self.status.url)
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
        self._reconnects.inc()
        self._went_down()
        return wait

    def _went_down(self) -> None:
        self._up.set(0)
        try:
            self.on_down()
        except Exception:  # the reader goes on whatever its listener does
            log.exception("camera down: listener failed", extra={"camera_id": self.camera_id})

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
        self._heard = time.monotonic()
        try:
            return av.open(
                url,
                format=kind,
                options=options,
                timeout=(OPEN_TIMEOUT_S, self.spec.stall_s),
            )
        except av.error.FFmpegError as exc:
            raise self._stalled(exc, OPEN_TIMEOUT_S) from None

    def _play(self) -> int:
        """Decodes until the stream ends or it is stopped (the frames decoded); raises on
        a failure."""
        with self._open() as container:
            if not container.streams.video:
                raise PermanentSourceError("the source has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # FFmpeg knows no decoder for it
                raise PermanentSourceError("no decoder for the camera's video codec")
            stream.thread_type = "AUTO"
            session = _Session(
                every=1.0 / self.spec.frame_rate,
                live=self.scheme != "file",
                stamped=not container.format.flags & av.format.Flags.no_timestamps.value,
            )
            self.clock.new_session()
            self._progress = self._heard = time.monotonic()  # opening (probing) is no stall
            try:
                self._read(container, stream, session)
            except av.error.FFmpegError as exc:
                raise self._stalled(exc, self.spec.stall_s) from None
            return session.frames

    def _stalled(self, exc: av.error.FFmpegError, timeout_s: float) -> Exception:
        """A failure of FFmpeg's, said as the stall it is when its timeout ended it: its
        interrupt callback (ExitError), or an error that protocol makes of it (RTSP says
        "invalid data") after nothing came for about that long."""
        quiet = time.monotonic() - self._heard
        if isinstance(exc, av.error.ExitError):
            return StalledError(f"nothing received for {timeout_s:g} s")
        if not isinstance(exc, PERMANENT) and quiet >= 0.9 * timeout_s:
            return StalledError(
                f"nothing received for {quiet:.0f} s ({describe(exc, self.status.url)})"
            )
        return exc

    def _read(self, container: Any, stream: Any, session: _Session) -> None:
        """Decodes the video's packets only (audio and data are skipped undecoded), and
        looks for stop and stall at every packet of any stream."""
        for packet in container.demux():
            self._heard = time.monotonic()
            if self._stop.is_set():
                return
            if packet.stream_index == stream.index:
                for frame in packet.decode():
                    if not self._frame(frame, session):
                        return
            quiet = time.monotonic() - self._progress
            if quiet > self.spec.stall_s:  # e.g. the video froze while the audio flows
                raise StalledError(f"nothing received for {quiet:.0f} s: no video frame")

    def _frame(self, frame: Any, session: _Session) -> bool:
        """Counts, times, samples and hands on one decoded frame; False once stopped."""
        self._received_frame(session)
        if session.live:
            pts = frame.time if session.stamped else None
            timing = self.clock.time(pts, time.monotonic(), time.time())
            if not session.sampled(timing.t):
                return True
            if not self._wait_until(timing.due):  # a burst plays out at its own times
                return False
            t = timing.t
        else:  # a file plays at its own pace, as a camera would send it
            if not self._wait_until(session.file_due(frame)):
                return False
            if not session.sampled(time.monotonic()):
                return True
            t = time.time()
        image: RGB = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
        self.deliver(image, t)
        return True

    def _received_frame(self, session: _Session) -> None:
        session.frames += 1
        self._progress = time.monotonic()
        seen = self.status
        if seen.state != SourceState.STREAMING:
            log.info("camera streaming", extra={"camera_id": self.camera_id})
            self._up.set(1)
        self._received.inc()
        self._set(
            state=SourceState.STREAMING,
            frames_received=seen.frames_received + 1,
            last_frame_at=time.time(),
            last_error="",
        )

    def _wait_until(self, due: float) -> bool:
        """Waits for `due` (monotonic) unless stopped meanwhile; False once stopped. Time
        spent waiting is not a stall."""
        ahead = due - time.monotonic()
        if ahead > 0 and self._stop.wait(ahead):
            return False
        self._progress = time.monotonic()
        return True
