"""Cameras vision pulls itself, on a real RTSP server (GStreamer) serving real footage
(vtest.avi): analysed with no client attached, kept alive through the server's restart,
and every fault a camera can have said precisely, without its credentials."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from camera_sources import VTEST, RtspServer, vtest_frames
from vision_harness import start_vision, vision_settings

from percept.runtime.server import ServiceHost
from percept.v1 import vision_pb2, vision_pb2_grpc

pytestmark = pytest.mark.slow
S = vision_pb2


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vtest_frames(tmp_path_factory.mktemp("vtest"), count=300)  # 30 s, looped


@pytest_asyncio.fixture
async def vision_with(
    tmp_path: Path,
) -> AsyncIterator[Callable[[str], asyncio.Future[vision_pb2_grpc.VisionAsyncStub]]]:
    """Starts vision on a cameras file (YAML text); stops it after the test."""
    hosts: list[ServiceHost] = []
    channels: list[grpc.aio.Channel] = []

    async def start(cameras: str) -> vision_pb2_grpc.VisionAsyncStub:
        path = tmp_path / "cameras.yaml"
        path.write_text(cameras)
        settings = vision_settings(tmp_path / "data", vision_cameras_file=path, vision_faces="off")
        _, host = await start_vision(settings)
        hosts.append(host)
        channel = grpc.aio.insecure_channel(host.address)
        channels.append(channel)
        return vision_pb2_grpc.VisionStub(channel)

    yield start  # type: ignore[misc]
    for channel in channels:
        await channel.close()
    for host in hosts:
        await host.stop(grace=1)


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
    frames: Path, vision_with: Callable[[str], asyncio.Future[vision_pb2_grpc.VisionAsyncStub]]
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
    vision_with: Callable[[str], asyncio.Future[vision_pb2_grpc.VisionAsyncStub]],
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


async def test_each_fault_is_said_and_touches_no_other_camera(
    frames: Path,
    tmp_path: Path,
    vision_with: Callable[[str], asyncio.Future[vision_pb2_grpc.VisionAsyncStub]],
) -> None:
    garbage = tmp_path / "not-a-video.mp4"
    garbage.write_bytes(bytes(range(256)) * 64)
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
            good = await until(stub, "good", lambda s: s.frames_analysed >= 5, 60, "good")
            assert good.state == S.SOURCE_STATE_STREAMING
    finally:
        silent.close()


async def test_a_video_file_plays_at_its_pace_and_loops(
    vision_with: Callable[[str], asyncio.Future[vision_pb2_grpc.VisionAsyncStub]],
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
