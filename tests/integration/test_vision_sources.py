"""Cameras vision pulls itself, on a real RTSP server (GStreamer) serving real footage
(vtest.avi): analysed with no client attached, kept alive through the server's restart,
and every fault a camera can have said precisely, without its credentials."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from camera_sources import VTEST, RtspServer, vtest_frames
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from vision_harness import start_vision, vision_settings

from percept.runtime.server import ServiceHost
from percept.v1 import vision_pb2, vision_pb2_grpc

pytestmark = pytest.mark.slow
S = vision_pb2


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vtest_frames(tmp_path_factory.mktemp("vtest"), count=300)  # 30 s, looped


class Start:
    """Starts vision on a cameras file (YAML text); `address` is the latest one's."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.address = folder, ""
        self.hosts: list[ServiceHost] = []
        self.channels: list[grpc.aio.Channel] = []

    async def __call__(self, cameras: str) -> vision_pb2_grpc.VisionAsyncStub:
        path = self.folder / "cameras.yaml"
        path.write_text(cameras)
        settings = vision_settings(
            self.folder / "data",
            vision_cameras_file=path,
            vision_faces="off",
            vision_cameras_reload_s=0.3,
        )
        _, host = await start_vision(settings)
        self.hosts.append(host)
        self.address = host.address
        channel = grpc.aio.insecure_channel(host.address)
        self.channels.append(channel)
        return vision_pb2_grpc.VisionStub(channel)

    async def stop(self) -> None:
        for channel in self.channels:
            await channel.close()
        for host in self.hosts:
            await host.stop(grace=1)


@pytest_asyncio.fixture
async def vision_with(tmp_path: Path) -> AsyncIterator[Start]:
    start = Start(tmp_path)
    yield start
    await start.stop()


def cli(*args: str) -> str:
    """`percept ARGS` (run in a thread: the server shares this test's event loop)."""
    from typer.testing import CliRunner

    from percept.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


async def source_of(stub: vision_pb2_grpc.VisionAsyncStub, camera_id: str) -> S.CameraSource:
    cameras = (await stub.ListCameras(S.ListCamerasRequest())).cameras
    return next(c for c in cameras if c.camera_id == camera_id).source


async def until(
    stub: vision_pb2_grpc.VisionAsyncStub,
    camera_id: str,
    check: Callable[[S.CameraSource], bool],
    within_s: float,
    what: str,
) -> S.CameraSource:
    async with asyncio.timeout(within_s):
        while True:
            source = await source_of(stub, camera_id)
            if check(source):
                return source
            await asyncio.sleep(0.25)
    raise AssertionError(what)


def streaming(source: S.CameraSource) -> bool:
    return source.state == S.SOURCE_STATE_STREAMING


async def test_an_rtsp_camera_is_analysed_with_no_client_and_survives_a_restart(
    frames: Path, vision_with: Start
) -> None:
    server = RtspServer(frames).start()
    try:
        stub = await vision_with(
            f"cameras:\n  campus:\n    frame_rate: 5\n    stall_s: 3\n    source: {server.url}\n"
        )
        await until(stub, "campus", lambda s: s.frames_analysed >= 10, 60, "10 frames analysed")
        view = await stub.GetCameraView(S.GetCameraViewRequest(camera_id="campus"))
        assert view.camera.streaming and view.jpeg  # nobody pushed a frame
        assert (view.frame_width, view.frame_height) == (768, 576)
        people = []
        for _ in range(10):  # the campus has people walking in it
            view = await stub.GetCameraView(S.GetCameraViewRequest(camera_id="campus"))
            people.append(view.result.people_count)
            await asyncio.sleep(0.3)
        assert max(people) >= 2, people

        server.kill()  # the camera goes away mid-stream ...
        down = await until(stub, "campus", lambda s: not streaming(s), 15, "marked down")
        assert down.state == S.SOURCE_STATE_RECONNECTING, down
        assert down.last_error
        before = down.frames_analysed
        server.start()  # ... and comes back on the same address: no restart of vision
        back = await until(
            stub,
            "campus",
            lambda s: streaming(s) and s.frames_analysed > before + 5,
            60,
            "streaming again",
        )
        assert back.reconnects >= 1
        assert back.frames_received >= back.frames_analysed + back.frames_dropped
    finally:
        server.kill()


async def test_credentials_come_from_a_secret_file_and_never_show(
    frames: Path,
    tmp_path: Path,
    vision_with: Start,
) -> None:
    with RtspServer(frames, user="admin:Sup3r-s3cret") as server:
        secret = tmp_path / "camera-secret"
        secret.write_text("admin:Sup3r-s3cret\n")
        wrong = server.url.replace("rtsp://", "rtsp://admin:Wr0ng-pass@")
        stub = await vision_with(
            "cameras:\n"
            f"  door:\n    source: {server.url}\n    credentials_file: {secret}\n"
            f"  back:\n    source: {wrong}\n"
        )
        await until(stub, "door", streaming, 60, "the door camera streaming")
        failed = await until(
            stub, "back", lambda s: s.state == S.SOURCE_STATE_FAILED, 30, "back failed"
        )
        assert "401 Unauthorized" in failed.last_error
        listed = str(await stub.ListCameras(S.ListCamerasRequest()))
        for secret_text in ("Sup3r-s3cret", "Wr0ng-pass"):
            assert secret_text not in listed
        assert failed.url == server.url.replace("rtsp://", "rtsp://***@")
        printed = await asyncio.to_thread(cli, "cameras", "--server", vision_with.address)
        assert "door" in printed and "streaming" in printed and "failed" in printed
        assert "401 Unauthorized" in printed and "s3cret" not in printed
        listed_json = await asyncio.to_thread(
            cli, "cameras", "--server", vision_with.address, "--json"
        )
        states = {c["camera_id"]: c["source"]["state"] for c in json.loads(listed_json)["cameras"]}
        assert states == {"door": "SOURCE_STATE_STREAMING", "back": "SOURCE_STATE_FAILED"}


class SilentServer:
    """A TCP server that accepts and never answers: a camera that delivers nothing."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        for connection in self.held:
            connection.close()
        self.socket.close()


def _avi_with_unknown_codec(path: Path) -> Path:
    """A real AVI of MJPEG frames whose FourCC says a codec FFmpeg has no decoder for."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), "rgb24")
            out.mux(stream.encode(frame.reformat(format="yuvj420p")))
        out.mux(stream.encode())
    path.write_bytes(path.read_bytes().replace(b"MJPG", b"XQ7Z"))
    return path


async def test_each_fault_is_said_and_touches_no_other_camera(
    frames: Path,
    tmp_path: Path,
    vision_with: Start,
) -> None:
    garbage = tmp_path / "not-a-video.mp4"
    garbage.write_bytes(bytes(range(256)) * 64)
    unknown_codec = _avi_with_unknown_codec(tmp_path / "unknown-codec.avi")
    silent = SilentServer()
    closed = socket.create_server(("127.0.0.1", 0))
    unreachable = closed.getsockname()[1]
    closed.close()
    try:
        with RtspServer(frames) as server:
            stub = await vision_with(
                "cameras:\n"
                f"  good:\n    source: {server.url}\n"
                f"  gone:\n    source: rtsp://127.0.0.1:{unreachable}/cam\n"
                f"  mute:\n    source: rtsp://127.0.0.1:{silent.port}/cam\n    stall_s: 2\n"
                f"  noise:\n    source: {garbage}\n"
                f"  nofile:\n    source: {tmp_path / 'missing.mp4'}\n"
                f"  codec:\n    source: {unknown_codec}\n"
            )
            gone = await until(stub, "gone", lambda s: s.reconnects >= 2, 30, "gone retried")
            assert gone.state == S.SOURCE_STATE_RECONNECTING
            assert "Connection refused" in gone.last_error
            mute = await until(stub, "mute", lambda s: s.reconnects >= 1, 30, "mute timed out")
            assert mute.state == S.SOURCE_STATE_RECONNECTING and mute.frames_received == 0
            assert "nothing received for" in mute.last_error
            noise = await until(stub, "noise", lambda s: s.reconnects >= 1, 30, "noise refused")
            assert noise.state == S.SOURCE_STATE_FAILED
            assert "Invalid data" in noise.last_error
            nofile = await until(stub, "nofile", lambda s: s.reconnects >= 1, 30, "no file")
            assert nofile.state == S.SOURCE_STATE_FAILED
            assert "no such file" in nofile.last_error
            codec = await until(stub, "codec", lambda s: s.reconnects >= 1, 30, "codec refused")
            assert codec.state == S.SOURCE_STATE_FAILED
            assert "no decoder for the camera's video codec" in codec.last_error
            good = await until(stub, "good", lambda s: s.frames_analysed >= 5, 60, "good")
            assert good.state == S.SOURCE_STATE_STREAMING
    finally:
        silent.close()


async def test_a_video_file_plays_at_its_pace_and_loops(
    vision_with: Start,
) -> None:
    if not VTEST.is_file():
        vtest_frames(Path("/nonexistent"))  # skips, or fails under CI, naming the package
    stub = await vision_with(
        f"cameras:\n  demo:\n    frame_rate: 4\n    loop: true\n    source: {VTEST}\n"
    )
    first = await until(stub, "demo", lambda s: s.frames_received >= 20, 60, "20 frames")
    await asyncio.sleep(3)
    later = await source_of(stub, "demo")
    rate = (later.frames_received - first.frames_received) / 3
    assert 5 <= rate <= 14, rate  # the file's 10 fps, not as fast as it decodes
    assert later.frames_analysed > first.frames_analysed


# The door line, and what crosses it in vtest.avi's first 31 s (frames 0-309), counted by
# hand from contact sheets of every 5th frame with the line drawn (feet = bottom of the
# person): right to left, "in", at about frames 12 (a man in black), 47 and 55 (a pair,
# red jacket then dark coat), 138 (white hood), 157 (navy jumper), 226 (a man who first
# crossed out at 187 and turned back), 252 and 260 (two men in black): 8; left to right,
# "out", at about 122, 172 and 187: 3. One more walks right to left at frame ~190 just
# above the line's top end (feet at y ~0.36, the line starts at 0.40): round it, not
# across it, though a detector's box may put the feet on either side of the end.
DOOR = "[[0.72, 0.40], [0.72, 0.85]]"
HAND_IN, HAND_OUT, AMBIGUOUS_IN = 8, 3, 1


async def test_line_crossings_on_real_footage_match_a_hand_count_and_fill_footfall(
    tmp_path: Path, vision_with: Start
) -> None:
    from camera_sources import vtest_background
    from PIL import Image

    folder = vtest_frames(tmp_path / "stretch", count=310)
    empty = Image.fromarray(vtest_background())
    for i in range(310, 350):  # then 4 s of the empty campus, so the count can be read
        empty.save(folder / f"{i:05d}.jpg", quality=90)
    server = RtspServer(folder).start()
    try:
        stub = await vision_with(
            "cameras:\n  campus:\n    frame_rate: 10\n"
            f"    source: {server.url}\n"
            f"    zones:\n      - name: door\n        kind: line\n        line: {DOOR}\n"
            "        inside: right\n"
        )
        seen_people, counted = False, None
        async with asyncio.timeout(150):
            while counted is None:
                view = await stub.GetCameraView(S.GetCameraViewRequest(camera_id="campus"))
                door = next((z for z in view.result.zones if z.zone == "door"), None)
                seen_people |= view.result.people_count >= 3
                if seen_people and door is not None and view.result.people_count == 0:
                    counted = (door.entries, door.exits)
                await asyncio.sleep(0.2)
        source = await source_of(stub, "campus")
        print(f"hand {HAND_IN}/{HAND_OUT}, counted {counted}, source {source}")
        entries, exits = counted
        assert HAND_IN - 1 <= entries <= HAND_IN + AMBIGUOUS_IN, counted
        assert HAND_OUT - 1 <= exits <= HAND_OUT, counted

        start = Timestamp()
        start.FromSeconds(int(time.time()) - 3600)
        footfall = await stub.GetFootfall(
            S.GetFootfallRequest(
                camera_id="campus", zone="door", start=start, bucket=Duration(seconds=3600)
            )
        )
        assert sum(b.entries for b in footfall.buckets) >= entries
        whole = await stub.GetFootfall(
            S.GetFootfallRequest(camera_id="campus", start=start, bucket=Duration(seconds=60))
        )
        assert whole.buckets and max(b.occupancy_peak for b in whole.buckets) >= 3
        printed = await asyncio.to_thread(
            cli, "footfall", "campus", "--zone", "door", "--server", vision_with.address
        )
        assert "campus / door" in printed and "median dwell" in printed
    finally:
        server.kill()


def test_every_frame_of_the_stretch_gives_the_hand_count(tmp_path: Path) -> None:
    """The same stretch, every frame through the packaged detector and the scene (no
    stream, no dropped frame): the counting itself, deterministic."""
    import av

    from percept.vision.cameras import Camera, Zone
    from percept.vision.images import RGB
    from percept.vision.models import load_detector
    from percept.vision.scene import Scene

    if not VTEST.is_file():
        vtest_frames(Path("/nonexistent"))
    detector = load_detector(vision_settings(tmp_path))
    line = ((0.72, 0.40), (0.72, 0.85))
    door = Zone(name="door", kind="line", line=line, inside="right")
    scene = Scene(Camera(zones=(door,)), list(detector.labels).index("person"))
    with av.open(str(VTEST)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 310:
                break
            image: RGB = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
            objects = detector.detect([image], 0.35)[0]
            update = scene.update(objects, frame.width, frame.height, i / 10)
    counted = update.occupancy[0]
    assert HAND_IN <= counted.entries <= HAND_IN + AMBIGUOUS_IN
    assert counted.exits == HAND_OUT


async def test_edits_of_the_cameras_file_apply_without_a_restart_and_bad_ones_are_refused(
    frames: Path, tmp_path: Path, vision_with: Start
) -> None:
    if not VTEST.is_file():
        vtest_frames(Path("/nonexistent"))
    with RtspServer(frames) as server:
        first = f"cameras:\n  campus:\n    source: {server.url}\n  till:\n    frame_rate: 5\n"
        stub = await vision_with(first)
        await until(stub, "campus", streaming, 60, "campus streaming")
        path = tmp_path / "cameras.yaml"

        async def listed() -> S.ListCamerasResponse:
            return await stub.ListCameras(S.ListCamerasRequest())

        async def listed_when(check: Callable[[S.ListCamerasResponse], bool]) -> None:
            async with asyncio.timeout(30):
                while True:
                    if check(await listed()):
                        return
                    await asyncio.sleep(0.2)

        # a camera added (a looped file), one removed, one changed (a new line zone)
        line = "    zones:\n      - {name: door, kind: line, line: [[0.72, 0.4], [0.72, 0.85]]}\n"
        path.write_text(
            f"cameras:\n  campus:\n    source: {server.url}\n{line}"
            f"  demo:\n    loop: true\n    source: {VTEST}\n"
        )
        await listed_when(lambda r: {c.camera_id for c in r.cameras} == {"campus", "demo"})
        await until(stub, "demo", lambda s: s.frames_analysed >= 3, 60, "demo analysed")
        campus = next(c for c in (await listed()).cameras if c.camera_id == "campus")
        assert [z.name for z in campus.zones] == ["door"]
        await until(stub, "campus", lambda s: s.frames_analysed >= 3, 60, "campus again")
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # the removed camera is gone
            await stub.GetCameraView(S.GetCameraViewRequest(camera_id="till"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        # a malformed edit: refused with its line, and the cameras run on as they were
        path.write_text(
            f"cameras:\n  campus:\n    source: {server.url}\n"
            "    zones:\n      - name: door\n        kind: line\n"
            "        line: [[0.5, 0.5], [0.5, 0.5]]\n"
        )
        await listed_when(lambda r: bool(r.cameras_file_error))
        refused = await listed()
        assert "line 7: cameras.campus.zones.0.line: the line's two points are the same" in (
            refused.cameras_file_error
        )
        assert {c.camera_id for c in refused.cameras} == {"campus", "demo"}
        before = (await source_of(stub, "campus")).frames_analysed
        await until(stub, "campus", lambda s: s.frames_analysed > before + 3, 30, "runs on")


async def test_an_http_mjpeg_camera_with_basic_authentication(
    frames: Path, tmp_path: Path, vision_with: Start
) -> None:
    from camera_sources import MjpegServer

    camera = MjpegServer(frames, user="viewer:Mjpeg-s3cret")
    try:
        secret = tmp_path / "lobby-secret"
        secret.write_text("viewer:Mjpeg-s3cret")
        wrong = camera.url.replace("http://", "http://viewer:nope@")
        stub = await vision_with(
            "cameras:\n"
            f"  lobby:\n    frame_rate: 5\n    source: {camera.url}\n"
            f"    credentials_file: {secret}\n"
            f"  hall:\n    source: {wrong}\n"
        )
        lobby = await until(stub, "lobby", lambda s: s.frames_analysed >= 5, 60, "lobby")
        assert lobby.state == S.SOURCE_STATE_STREAMING
        view = await stub.GetCameraView(S.GetCameraViewRequest(camera_id="lobby"))
        assert (view.frame_width, view.frame_height) == (768, 576)
        hall = await until(stub, "hall", lambda s: s.reconnects >= 1, 30, "hall refused")
        assert hall.state == S.SOURCE_STATE_FAILED and "401" in hall.last_error
        assert "nope" not in str(await stub.ListCameras(S.ListCamerasRequest()))
    finally:
        camera.close()
