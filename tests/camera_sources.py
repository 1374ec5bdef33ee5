"""Real footage and a real RTSP server for the tests of cameras vision pulls itself.

- Footage: `opencv-doc`'s vtest.avi (768x576, 10 fps, 79 s of people walking across
  a campus), decoded with PyAV into numbered JPEGs once per session (not committed).
- Server: GStreamer's gst-rtsp-server (tests/rtsp_server.py), run by Debian's
  /usr/bin/python3, serving those JPEGs as RTP/JPEG, looped, like an IP camera.
"""

from __future__ import annotations

import http.server
import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from local_servers import free_port
from PIL import Image

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SERVER = Path(__file__).resolve().parent / "rtsp_server.py"
DEBIAN_PYTHON = "/usr/bin/python3"
PACKAGES = "opencv-doc, gir1.2-gst-rtsp-server-1.0, python3-gi and gstreamer1.0-plugins-good"


def missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: scripts/setup.sh installs {PACKAGES}")
    pytest.skip(f"{what} is missing (scripts/setup.sh installs {PACKAGES})")


def vtest_frames(folder: Path, count: int | None = None) -> Path:
    """The first `count` frames of vtest.avi (all by default) as 00000.jpg, 00001.jpg..."""
    if not VTEST.is_file():
        missing(str(VTEST))
    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(VTEST)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if count is not None and i >= count:
                break
            image = Image.fromarray(frame.to_ndarray(format="rgb24"))
            image.save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def vtest_background() -> npt.NDArray[np.uint8]:
    """The campus with nobody in it: the median of every 8th frame of vtest.avi."""
    if not VTEST.is_file():
        missing(str(VTEST))
    with av.open(str(VTEST)) as container:
        decoded = enumerate(container.decode(video=0))
        frames = [
            np.asarray(f.to_ndarray(format="rgb24"), np.float32) for i, f in decoded if i % 8 == 0
        ]
    stacked: npt.NDArray[np.float32] = np.stack(frames)
    return np.median(stacked, axis=0).astype(np.uint8)


class RtspServer:
    """GStreamer's RTSP server on loopback serving a folder of frames at /cam."""

    def __init__(self, frames: Path, *, fps: int = 10, user: str = "") -> None:
        if not Path(DEBIAN_PYTHON).is_file():
            missing(DEBIAN_PYTHON)
        self.frames, self.fps, self.user = frames, fps, user
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> RtspServer:
        command = [DEBIAN_PYTHON, str(SERVER), str(self.frames), str(self.port)]
        command += ["--fps", str(self.fps)] + (["--user", self.user] if self.user else [])
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready ..." once it listens
        if not line.startswith("ready"):
            error = self.process.stderr.read() if self.process.stderr else ""
            if "Namespace GstRtspServer not available" in error or "No module named" in error:
                missing("GStreamer's RTSP server")
            raise RuntimeError(f"the RTSP server did not start: {line}{error}")
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class MjpegServer:
    """An HTTP camera: multipart/x-mixed-replace JPEG frames at `fps`, looped, as many IP
    cameras serve (`/video.mjpg`); with `user`, HTTP Basic authentication is required."""

    def __init__(self, frames: Path, *, fps: int = 10, user: str = "") -> None:
        import base64
        import http.server
        import threading
        import time

        jpegs = [p.read_bytes() for p in sorted(frames.glob("*.jpg"))]
        expected = "Basic " + base64.b64encode(user.encode()).decode() if user else ""

        class Camera(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if expected and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i in range(10**9):
                        jpeg = jpegs[i % len(jpegs)]
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                        self.wfile.write(head.encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        time.sleep(1 / fps)
                except OSError:  # the client went away
                    return

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _http_server(
    handler: Callable[..., http.server.BaseHTTPRequestHandler],
) -> tuple[http.server.ThreadingHTTPServer, int]:
    """A threaded HTTP server on a free loopback port, serving in a daemon thread."""
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class TsCamera:
    """A live HTTP camera sending MPEG-TS at `fps`, as encoders and NVRs do: `image` as
    MPEG-2 video, and with `audio` a silent MP2 track beside it. Each request gets
    `video_s` seconds of video and then, by `then`: 'close' (the camera ends the stream),
    'audio' (the video freezes, the audio flows on) or 'silent' (the connection stays
    open and nothing comes). Setting `down` cuts the connections and refuses new ones (503),
    like a camera dropping off the network."""

    def __init__(
        self,
        image: npt.NDArray[np.uint8],
        *,
        fps: int = 10,
        video_s: float = 3600.0,
        then: str = "close",
        audio: bool = False,
    ) -> None:
        self.down = False
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if camera.down:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                try:
                    _send_ts(self.wfile, image, fps, video_s, then, audio, lambda: camera.down)
                except (OSError, ValueError):  # the client went away
                    return

            def log_message(self, *args: object) -> None:
                pass

        self.server, self.port = _http_server(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/camera.ts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _send_ts(
    out_file: io.BufferedIOBase,
    image: npt.NDArray[np.uint8],
    fps: int,
    video_s: float,
    then: str,
    audio: bool,
    down: Callable[[], bool],
) -> None:
    """Writes one camera connection's MPEG-TS, in real time (see TsCamera)."""
    import fractions
    import time

    # Interleaving waits at most 0.1 s for the other stream: a frozen video holds no audio.
    options = {"max_interleave_delta": "100000"}
    out = av.open(out_file, "w", format="mpegts", container_options=options)
    video = out.add_stream("mpeg2video", rate=fps)
    video.height, video.width = image.shape[:2]
    video.pix_fmt = "yuv420p"
    sound = out.add_stream("mp2", rate=16000) if audio or then == "audio" else None
    if sound is not None:
        sound.layout = "mono"
    samples = 16000 // fps
    start, i = time.monotonic(), 0
    while not down():
        if time.monotonic() - start < video_s:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
            out.mux(video.encode(frame))
        elif then == "close":
            out.mux(video.encode(None))
            out.close()
            return
        elif then == "silent":
            out.mux(video.encode(None))
            out_file.flush()
            time.sleep(3600)
        if sound is not None:
            chunk = av.AudioFrame.from_ndarray(
                np.zeros((1, samples), np.int16), format="s16", layout="mono"
            )
            chunk.sample_rate, chunk.pts = 16000, i * samples
            out.mux(sound.encode(chunk))
        out_file.flush()
        i += 1
        time.sleep(max(0.0, start + i / fps - time.monotonic()))


class LiveHls:
    """A live HLS camera: `image` encoded as H.264 at `fps` into 2 s segments as time
    passes (the playlist lists the newest five), served over HTTP like an encoder that
    publishes to a web server. A segment comes whole: a reader gets 2 s of frames at
    once, then nothing for 2 s."""

    def __init__(self, folder: Path, image: npt.NDArray[np.uint8], *, fps: int = 10) -> None:
        import functools
        import threading

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.image, self.fps = folder, image, fps
        self.stopped = threading.Event()
        self.producer = threading.Thread(target=self._produce, daemon=True)
        self.producer.start()

        class Files(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        self.server, self.port = _http_server(functools.partial(Files, directory=str(folder)))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.m3u8"

    def _produce(self) -> None:
        import fractions
        import time

        options = {"hls_time": "2", "hls_list_size": "5", "hls_flags": "delete_segments"}
        with av.open(str(self.folder / "live.m3u8"), "w", format="hls", options=options) as out:
            video = out.add_stream("libx264", rate=self.fps)
            video.height, video.width = self.image.shape[:2]
            video.pix_fmt = "yuv420p"
            video.options = {"g": str(self.fps), "preset": "ultrafast", "tune": "zerolatency"}
            start, i = time.monotonic(), 0
            while not self.stopped.is_set():
                frame = av.VideoFrame.from_ndarray(self.image, format="rgb24")
                frame.pts, frame.time_base = i, fractions.Fraction(1, self.fps)
                out.mux(video.encode(frame))
                i += 1
                self.stopped.wait(max(0.0, start + i / self.fps - time.monotonic()))

    def close(self) -> None:
        self.stopped.set()
        self.producer.join(10)
        self.server.shutdown()
        self.server.server_close()
