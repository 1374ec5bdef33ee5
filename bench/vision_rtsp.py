"""Cameras vision pulls itself: 1 and 4 RTSP cameras, analysed at 5 fps each.

A real RTSP server (GStreamer, tests/rtsp_server.py) serves vtest.avi's frames (768x576,
10 fps); vision reads N cameras of it, sampled to 5 fps, with no client attached. After
a warm-up it measures, over the same window: frames received, analysed and dropped per
camera per second, and the CPU the service used (cores, from the process's CPU time).
The baseline in the same run: the same N readers decoding with nothing analysing
(deliver does nothing), whose CPU is the decode's share of the full run.

Run: .venv/bin/python bench/vision_rtsp.py [--seconds 20] [--device cpu|cuda]
(bench/vision.py runs it too, as its section 5.)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import grpc

from percept.runtime.server import ServiceHost
from percept.runtime.settings import SERVICE_NAMES, Settings
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.service import VisionService
from percept.vision.sources import FrameSource, SourceSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from camera_sources import RtspServer, vtest_frames
from vision_harness import MODEL_DIR

RATE = 5.0
WARM_UP_S = 8.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settings(data: Path, cameras: Path, device: str) -> Settings:
    ports = {f"{n}_{k}": 0 for n in SERVICE_NAMES for k in ("port", "metrics_port")}
    values: dict[str, object] = {
        **ports,
        "data_dir": data,
        "model_dir": MODEL_DIR,
        "log_level": "WARNING",
        "vision_device": device,
        "vision_faces": "off",
        "leads_address": "127.0.0.1:9",
        "vision_cameras_file": cameras,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def _counts(stub: vision_pb2_grpc.VisionAsyncStub) -> tuple[int, int, int]:
    found = await stub.ListCameras(vision_pb2.ListCamerasRequest())
    sources = [c.source for c in found.cameras]
    return (
        sum(s.frames_received for s in sources),
        sum(s.frames_analysed for s in sources),
        sum(s.frames_dropped for s in sources),
    )


async def analysed(url: str, n: int, seconds: float, folder: Path, device: str) -> dict[str, float]:
    cameras = folder / f"cameras-{n}.yaml"
    cameras.write_text(
        "cameras:\n"
        + "".join(f"  cam-{i}:\n    frame_rate: {RATE}\n    source: {url}\n" for i in range(n))
    )
    settings = _settings(folder / f"data-{n}", cameras, device)
    host = ServiceHost(VisionService(settings), settings)
    await host.start()
    await host.ready.wait()
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub: vision_pb2_grpc.VisionAsyncStub = vision_pb2_grpc.VisionStub(channel)
            await asyncio.sleep(WARM_UP_S)
            before, cpu0, t0 = await _counts(stub), _cpu_s(), time.perf_counter()
            await asyncio.sleep(seconds)
            after, cpu1, t1 = await _counts(stub), _cpu_s(), time.perf_counter()
    finally:
        await host.stop(grace=1)
    wall = t1 - t0
    received, done, dropped = (a - b for a, b in zip(after, before, strict=True))
    return {
        "received": received / wall / n,
        "analysed": done / wall / n,
        "dropped": dropped / wall / n,
        "cores": (cpu1 - cpu0) / wall,
    }


async def decode_only(url: str, n: int, seconds: float) -> float:
    """Cores used by n readers decoding and sampling, nothing analysing."""
    readers = [
        FrameSource(f"cam-{i}", SourceSpec(url, RATE), lambda image, t: None) for i in range(n)
    ]
    for reader in readers:
        reader.start()
    await asyncio.sleep(WARM_UP_S / 2)
    cpu0, t0 = _cpu_s(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu1, t1 = _cpu_s(), time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(r.stop) for r in readers))
    return (cpu1 - cpu0) / (t1 - t0)


async def main(seconds: float, device: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames = vtest_frames(folder / "frames", count=300)
        print(f"\n5. pulled RTSP cameras, {RATE:g} fps each (vtest.avi 768x576 served at 10 fps)")
        print(
            f"   {'cameras':>7s} {'received/s':>10s} {'analysed/s':>10s} {'dropped/s':>9s}"
            f" {'cores':>6s} {'decode cores':>12s} {'decode share':>12s}"
        )
        for n in (1, 4):
            with RtspServer(frames) as server:
                full = await analysed(server.url, n, seconds, folder, device)
            with RtspServer(frames) as server:
                decode = await decode_only(server.url, n, seconds)
            print(
                f"   {n:7d} {full['received']:10.1f} {full['analysed']:10.1f}"
                f" {full['dropped']:9.1f} {full['cores']:6.2f} {decode:12.2f}"
                f" {decode / max(full['cores'], 1e-6):12.0%}"
            )
        print("   (per camera; cores = CPU seconds per second of the whole vision process)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.device))
