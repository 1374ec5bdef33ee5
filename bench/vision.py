"""Vision service speed, against baselines measured in the same run.

1. Service overhead: frames streamed through StreamFrames over gRPC (JPEG
   decoding, detection, tracking, zones, the result message) against the bare
   path (decode + NanoDet) on the same frames, faces off. Target: <= 10 %.
2. Batching: 4 cameras streaming at once with micro-batching (batches up to 8)
   against the same 4 cameras with batches of 1, and against 1-by-1 (one
   camera after another). Target on CPU: >= 1.5x.
3. Detectors on the same frames: NanoDet-m on ONNX Runtime against ultralytics
   YOLOv8n in PyTorch and exported to ONNX. No package ships YOLO weights: the
   YOLOv8n here is the tests' tiny self-trained model (tests/yolo_tiny.py), whose
   compute is that of any YOLOv8n (same architecture and input size).
4. Face pipeline: MTCNN on a full 1920 px photo and on person crops, dlib
   embeddings per face, gallery matching.
5. Pulled RTSP cameras (bench/vision_rtsp.py): 1 and 4 cameras read by vision itself
   from a real RTSP server at 5 fps each: analysed, dropped, CPU, decode's share.

Frames: a real person (skimage's astronaut) walking across an 854x480 store view.
Run: .venv/bin/python bench/vision.py [--frames 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import grpc
import numpy as np

from percept.models import model_store
from percept.runtime.server import ServiceHost
from percept.runtime.settings import SERVICE_NAMES, Settings
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.detection import Detector
from percept.vision.engine import CROP_SIDE
from percept.vision.faces import DlibEmbedder, Mtcnn
from percept.vision.gallery import Gallery
from percept.vision.images import decode_image
from percept.vision.nanodet import NanoDet
from percept.vision.service import VisionService
from percept.vision.yolo import Yolo, import_yolo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import vision_rtsp
from vision_harness import MODEL_DIR, frames_of, lockstep
from vision_media import astronaut, astronaut_person, group_photo, walk
from yolo_tiny import tiny_yolo

CAMERAS = 4


def settings_for(data: Path, **overrides: object) -> Settings:
    ports = {f"{n}_{k}": 0 for n in SERVICE_NAMES for k in ("port", "metrics_port")}
    values: dict[str, object] = {
        **ports,
        "data_dir": data,
        "model_dir": MODEL_DIR,
        "log_level": "WARNING",
        "vision_device": "cpu",
        "vision_faces": "off",
        "leads_address": "127.0.0.1:9",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


async def serve(settings: Settings) -> ServiceHost:
    host = ServiceHost(VisionService(settings), settings)
    await host.start()
    await host.ready.wait()
    return host


async def stream_fps(address: str, frames: Sequence[vision_pb2.Frame]) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        start = time.perf_counter()
        results = await lockstep(vision_pb2_grpc.VisionStub(channel), frames)
        took = time.perf_counter() - start
    assert len(results) == len(frames)
    return len(frames) / took


def copy_to(frame: vision_pb2.Frame, camera: str) -> vision_pb2.Frame:
    copy = vision_pb2.Frame()
    copy.CopyFrom(frame)
    copy.camera_id = camera
    return copy


async def cameras_fps(address: str, frames: Sequence[vision_pb2.Frame], together: bool) -> float:
    """All cameras at once (each in lock-step), or one camera after another."""
    streams = [[copy_to(f, f"cam-{c}") for f in frames] for c in range(CAMERAS)]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = vision_pb2_grpc.VisionStub(channel)
        start = time.perf_counter()
        if together:
            await asyncio.gather(*(lockstep(stub, s) for s in streams))
        else:
            for s in streams:
                await lockstep(stub, s)
        took = time.perf_counter() - start
    return CAMERAS * len(frames) / took


def cameras_file(folder: Path) -> Path:
    zones = "\n".join(
        f"  cam-{c}:\n    zones:\n      - name: phones\n        kind: product\n"
        f"        product: phone\n        polygon: [[0.2, 0.3], [0.6, 0.3], [0.6, 1], [0.2, 1]]"
        for c in range(CAMERAS)
    )
    path = folder / "cameras.yaml"
    path.write_text(f"cameras:\n  store-front:\n    zones: []\n{zones}\n")
    return path


def detector_ms(detector: Detector, images: Sequence[np.ndarray]) -> float:
    start = time.perf_counter()
    for image in images:
        detector.detect([image], 0.35)
    return (time.perf_counter() - start) / len(images) * 1000


async def main(n_frames: int, rounds: int) -> None:
    images = walk(astronaut_person(), list(np.linspace(-40, 600, n_frames).astype(int)), height=440)
    frames = frames_of(images, 0.1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = model_store(settings_for(folder))
        nanodet = NanoDet(store.resolve("nanodet").file("nanodet.onnx"), "cpu", 2)

        # 1. Service overhead --------------------------------------------------------
        host = await serve(settings_for(folder / "one"))

        def bare() -> None:
            for f in frames:
                nanodet.detect([decode_image(f.image, 36_000_000)], 0.35)

        await stream_fps(host.address, frames)  # warm-up
        bare_s, service_s, ratios = [], [], []
        for _ in range(rounds):  # paired rounds: the machine's noise hits both alike
            bare_s.append(timed(bare) / len(frames))
            service_s.append(1 / await stream_fps(host.address, frames))
            ratios.append(service_s[-1] / bare_s[-1])
        await host.stop(grace=1)
        b, s = statistics.median(bare_s), statistics.median(service_s)
        print("1. service overhead (StreamFrames vs decode + NanoDet, faces off, one camera)")
        print(f"   bare backend   {1 / b:6.1f} frames/s  ({b * 1000:.1f} ms/frame)")
        print(f"   service (gRPC) {1 / s:6.1f} frames/s  ({s * 1000:.1f} ms/frame)")
        overhead = 100 * (statistics.median(ratios) - 1)
        print(f"   overhead       {overhead:+6.1f} %   (median of {rounds} paired rounds; <= 10 %)")

        # 2. Batching ------------------------------------------------------------------
        cams = cameras_file(folder)
        batched = await serve(settings_for(folder / "b8", vision_cameras_file=cams))
        single = await serve(
            settings_for(folder / "b1", vision_cameras_file=cams, vision_max_batch=1)
        )
        rates: dict[str, list[float]] = {"batched": [], "batch1": [], "one-by-one": []}
        await cameras_fps(batched.address, frames[:5], together=True)  # warm-up
        await cameras_fps(single.address, frames[:5], together=True)
        for _ in range(rounds):
            rates["batched"].append(await cameras_fps(batched.address, frames, together=True))
            rates["batch1"].append(await cameras_fps(single.address, frames, together=True))
            rates["one-by-one"].append(await cameras_fps(single.address, frames, together=False))
        sizes = batched.metrics.registry
        count = sizes.get_sample_value("percept_vision_detector_batch_size_count") or 1
        mean = (sizes.get_sample_value("percept_vision_detector_batch_size_sum") or 0) / count
        await batched.stop(grace=1)
        await single.stop(grace=1)
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"\n2. {CAMERAS} cameras at once (frames/s over all cameras)")
        print(f"   1-by-1 (one camera after another) {med['one-by-one']:6.1f}")
        print(f"   together, batches of 1            {med['batch1']:6.1f}")
        batched_rate = med["batched"]
        print(f"   together, micro-batched           {batched_rate:6.1f}  (mean batch {mean:.2f})")
        gain, over_single = batched_rate / med["one-by-one"], batched_rate / med["batch1"]
        print(
            f"   gain vs 1-by-1 {gain:.2f}x, vs batches of 1 {over_single:.2f}x  (target >= 1.5x)"
        )

        # 3. Detectors -----------------------------------------------------------------
        rgb = [decode_image(f.image, 36_000_000) for f in frames[:20]]
        weights = tiny_yolo()
        exported = folder / "yolo-onnx" / weights.name
        exported.parent.mkdir()
        exported.write_bytes(weights.read_bytes())
        YOLO = import_yolo(folder / "cfg")

        onnx_path = Path(YOLO(str(exported)).export(format="onnx", imgsz=416, simplify=False))
        detectors: dict[str, Detector] = {"NanoDet-m 416, onnxruntime": nanodet}
        for size in (416, 640):
            detectors[f"YOLOv8n {size}, ultralytics pytorch"] = Yolo(
                weights, folder / "cfg", device="cpu", image_size=size
            )
        detectors["YOLOv8n 416, ultralytics onnxruntime"] = Yolo(
            onnx_path, folder / "cfg", device="cpu", image_size=416
        )
        print("\n3. detectors on the same 854x480 frames (ms per frame, median of rounds)")
        base = 0.0
        for name, detector in detectors.items():
            detector.detect(rgb[:1], 0.35)
            ms = statistics.median(detector_ms(detector, rgb) for _ in range(rounds))
            base = base or ms
            print(f"   {name:40s} {ms:7.1f} ms   ({ms / base:.2f}x NanoDet)")

        # 4. Faces ---------------------------------------------------------------------
        mtcnn = Mtcnn(store.resolve("mtcnn").path, "cpu")
        embedder = DlibEmbedder(store.resolve("dlib-face-resnet").path)
        group = group_photo(3)
        portrait = astronaut()
        crop = group[200:900, 900:1450].copy()  # one person's upper body
        found = mtcnn.detect(group)
        gallery = Gallery(
            f"sqlite:///{folder / 'g.db'}",
            bytes(32),
            embedder.name,
            retention=timedelta(days=1),
            threshold=0.45,
        )
        rng = np.random.default_rng(0)
        for _ in range(200):  # a store's enrolled visitors
            v = rng.normal(size=128)
            gallery.enroll((v / np.linalg.norm(v) * 0.5).astype(np.float32), {"reference": "b"})
        probe = embedder.embed(portrait, mtcnn.detect(portrait).boxes)[0]
        gallery.match(probe)
        rows: list[tuple[str, Callable[[], object], int]] = [
            ("MTCNN, 1920x1350 photo (3 faces)", lambda: mtcnn.detect(group), 3),
            ("MTCNN, one person crop (550x700 at 320)", lambda: mtcnn.detect(crop, CROP_SIDE), 5),
            ("dlib embedding, per face", lambda: embedder.embed(group, found.boxes[:1]), 5),
            ("gallery match, 200 enrolled", lambda: gallery.match(probe), 20),
        ]
        print("\n4. face pipeline (ms)")
        for name, fn, repeat in rows:
            fn()
            print(f"   {name:40s} {timed(fn, repeat) * 1000:7.1f} ms")
        gallery.close()
    await vision_rtsp.main(20.0, "cpu")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.frames, args.rounds))
