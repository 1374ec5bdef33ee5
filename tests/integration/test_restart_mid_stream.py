"""A perception service restarted while a camera streams into it (`percept serve vision`
in a subprocess, killed with SIGKILL or stopped with SIGTERM): the camera gets UNAVAILABLE
(retryable), and a new stream to the restarted service is analysed again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from vision_harness import MODEL_DIR

from percept.demo import media
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.images import encode_jpeg

pytestmark = pytest.mark.slow
PERCEPT = str(Path(sys.executable).parent / "percept")
FRAMES = [encode_jpeg(f) for f in media.walk(media.astronaut_person(), range(0, 700, 35))]


async def camera(pace_s: float = 0.2) -> AsyncIterator[vision_pb2.Frame]:
    i = 0
    while True:
        frame = vision_pb2.Frame(
            camera_id="store-front",
            sequence=i,
            image=vision_pb2.Image(encoded=FRAMES[i % len(FRAMES)]),
        )
        frame.captured_at.GetCurrentTime()
        yield frame
        i += 1
        await asyncio.sleep(pace_s)


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [PERCEPT, "serve", "vision"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    health = subprocess.run(
        [PERCEPT, "health", "--wait", "120", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert health.returncode == 0, health.stdout
    return process


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_a_camera_gets_unavailable_and_resumes_after_a_restart(
    stop: signal.Signals, free_port: Callable[[], int], tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")} | {
        "PERCEPT_VISION_PORT": str(port),
        "PERCEPT_VISION_METRICS_PORT": "0",
        "PERCEPT_DATA_DIR": str(tmp_path),
        "PERCEPT_MODEL_DIR": str(MODEL_DIR),
        "PERCEPT_LEADS_ADDRESS": "127.0.0.1:9",  # no leads: signals wait in the outbox
        "PERCEPT_GRACE_PERIOD_S": "2",
    }
    process = serve(env, port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = vision_pb2_grpc.VisionStub(channel)
            seen = 0
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async for _ in stub.StreamFrames(camera()):
                    seen += 1
                    if seen == 3:
                        process.send_signal(stop)
                        stopped = time.monotonic()
            assert ended.value.code() is grpc.StatusCode.UNAVAILABLE  # retryable
            assert time.monotonic() - stopped < 10  # at once, or after the grace period
            process.wait(timeout=30)
            process = serve(env, port)  # the restarted service, on the same address
            resumed = 0
            async for result in stub.StreamFrames(camera()):
                assert result.camera_id == "store-front"
                resumed += 1
                if resumed == 3:
                    break
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
