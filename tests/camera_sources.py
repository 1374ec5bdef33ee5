"""Real footage and a real RTSP server for the tests of cameras vision pulls itself.

- Footage: `opencv-doc`'s vtest.avi (768x576, 10 fps, 79 s of people walking across
  a campus), decoded with PyAV into numbered JPEGs once per session (not committed).
- Server: GStreamer's gst-rtsp-server (tests/rtsp_server.py), run by Debian's
  /usr/bin/python3, serving those JPEGs as RTP/JPEG, looped, like an IP camera.
"""

from __future__ import annotations

import os
import subprocess
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
