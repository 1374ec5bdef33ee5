"""A bounded load run against `percept serve all` on loopback: concurrent calls, cameras
and chats for a fixed time, then throughput, latency percentiles, errors and the server's
memory growth. It stops by itself (the duration, then at most a minute of draining).

- calls: the demo's espeak-ng call streamed at real-time pace into StreamingRecognize,
  again and again; latency = a FINAL's arrival after the end of its utterance's audio.
- cameras: the demo's store walk at --fps into StreamFrames, each frame stamped; latency =
  frame sent to its result; frames dropped by latest-wins are counted.
- chats: the scripted English chat, one turn after the other with --think seconds
  between; latency = Chat round trip.
- leads: signals ingested meanwhile (through the services' outboxes) and ListLeads latency.

Run: .venv/bin/python bench/load.py [--calls 2] [--cameras 2] [--chats 4] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from percept.demo import media
from percept.demo.story import CALL, synthesise
from percept.runtime.settings import Settings
from percept.speech.client import RATE, call_requests
from percept.v1 import (
    leads_pb2,
    leads_pb2_grpc,
    nlp_pb2,
    nlp_pb2_grpc,
    speech_pb2_grpc,
    vision_pb2,
    vision_pb2_grpc,
)
from percept.v1 import speech_pb2 as sp
from percept.vision.images import encode_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chat_scripts import ENGLISH_CHAT
from local_servers import serve_all_env

PERCEPT = str(Path(sys.executable).parent / "percept")


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def error(self, kind: str, exc: BaseException) -> None:
        code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        self.errors[kind].append(code)


def _rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (APY and its pipelines)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        status = Path(f"/proc/{p}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


async def calls(address: str, pcm: bytes, until: float, tally: Tally, n: int) -> None:
    config = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE, language_code="en",
        call_id=f"load-call-{n}", interim_results=True,
    )  # fmt: skip
    async with grpc.aio.insecure_channel(address) as channel:
        stub = speech_pb2_grpc.SpeechStub(channel)
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                async for event in stub.StreamingRecognize(call_requests(config, pcm)):
                    if event.type == sp.RecognitionEvent.EVENT_TYPE_FINAL:
                        spoken = started + event.end_offset.ToTimedelta().total_seconds()
                        tally.latencies["call final"].append(time.monotonic() - spoken)
                        tally.counts["call finals"] += 1
                    elif event.type == sp.RecognitionEvent.EVENT_TYPE_PARTIAL:
                        tally.counts["call partials"] += 1
                tally.counts["calls"] += 1
            except grpc.aio.AioRpcError as exc:
                tally.error("calls", exc)


async def camera(address: str, fps: float, until: float, tally: Tally, n: int) -> None:
    frames = [encode_jpeg(f) for f in media.walk(media.astronaut_person(), range(0, 700, 20))]
    sent: dict[int, float] = {}

    async def send() -> AsyncIterator[vision_pb2.Frame]:
        i = 0
        while time.monotonic() < until:
            frame = vision_pb2.Frame(
                camera_id="store-front", sequence=i,
                image=vision_pb2.Image(encoded=frames[i % len(frames)]),
            )  # fmt: skip
            frame.captured_at.GetCurrentTime()
            sent[i] = time.monotonic()
            yield frame
            i += 1
            await asyncio.sleep(1 / fps)

    async with grpc.aio.insecure_channel(address) as channel:
        try:
            async for result in vision_pb2_grpc.VisionStub(channel).StreamFrames(send()):
                tally.latencies["camera frame"].append(time.monotonic() - sent[result.sequence])
                tally.counts["frames analysed"] += 1
                tally.counts["frames dropped"] += result.frames_dropped
        except grpc.aio.AioRpcError as exc:
            tally.error(f"camera {n}", exc)


async def chat(address: str, think_s: float, until: float, tally: Tally) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = nlp_pb2_grpc.NlpStub(channel)
        while time.monotonic() < until:
            session = ""
            for line in ENGLISH_CHAT:
                if time.monotonic() >= until:
                    return
                began = time.monotonic()
                try:
                    reply = await stub.Chat(nlp_pb2.ChatTurn(session_id=session, text=line))
                    session = reply.session_id
                    tally.latencies["chat turn"].append(time.monotonic() - began)
                    tally.counts["chat turns"] += 1
                except grpc.aio.AioRpcError as exc:
                    tally.error("chats", exc)
                await asyncio.sleep(think_s)


async def board(address: str, until: float, tally: Tally) -> None:
    """A sales console refreshing the hot leads every second."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = leads_pb2_grpc.LeadsStub(channel)
        while time.monotonic() < until:
            began = time.monotonic()
            try:
                await stub.ListLeads(leads_pb2.ListLeadsRequest(page_size=50))
                tally.latencies["ListLeads"].append(time.monotonic() - began)
            except grpc.aio.AioRpcError as exc:
                tally.error("leads", exc)
            await asyncio.sleep(1.0)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def run(args: argparse.Namespace, addresses: dict[str, str], pid: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pcm = (await asyncio.to_thread(synthesise, CALL, Path(tmp))).astype("<i2").tobytes()
    tally = Tally()
    rss_before = _rss_mb(pid)
    began = time.monotonic()
    until = began + args.duration
    samples: list[float] = []

    async def watch_memory() -> None:
        while time.monotonic() < until:
            samples.append(_rss_mb(pid))
            await asyncio.sleep(2.0)

    work = [calls(addresses["speech"], pcm, until, tally, i) for i in range(args.calls)]
    work += [camera(addresses["vision"], args.fps, until, tally, i) for i in range(args.cameras)]
    work += [chat(addresses["nlp"], args.think, until, tally) for _ in range(args.chats)]
    work += [board(addresses["leads"], until, tally), watch_memory()]
    # Streams end at `until` (a call finishes its audio first): at most a minute more.
    await asyncio.wait_for(asyncio.gather(*work), args.duration + 60)
    elapsed = time.monotonic() - began
    async with grpc.aio.insecure_channel(addresses["leads"]) as channel:
        page = await leads_pb2_grpc.LeadsStub(channel).ListLeads(
            leads_pb2.ListLeadsRequest(page_size=500)
        )
    rss_after = _rss_mb(pid)
    print(
        f"load: {args.calls} calls, {args.cameras} cameras at {args.fps:g} fps, "
        f"{args.chats} chats, {args.duration:.0f} s (ran {elapsed:.0f} s)"
    )
    print(f"  {'':14} {'count':>7} {'per s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for kind, values in tally.latencies.items():
        print(
            f"  {kind:14} {len(values):7d} {len(values) / elapsed:7.2f} "
            f"{pct(values, 50):8.0f} {pct(values, 95):8.0f} {pct(values, 99):8.0f}"
        )
    print("  counts: " + ", ".join(f"{k} {v}" for k, v in tally.counts.items()))
    errors = {k: len(v) for k, v in tally.errors.items()}
    codes = sorted({c for v in tally.errors.values() for c in v})
    print(f"  errors: {errors or 'none'}" + (f" ({', '.join(codes)})" if codes else ""))
    print(f"  leads: {len(page.leads)} leads from the load's signals")
    peak = max(samples, default=rss_after)
    warm = samples[len(samples) // 3] if len(samples) >= 3 else rss_before
    print(
        f"  server memory (RSS, with APY): {rss_before:.0f} MB idle, {warm:.0f} MB a third in "
        f"(warmed up), peak {peak:.0f} MB, {rss_after:.0f} MB at the end "
        f"({rss_after - warm:+.0f} MB since warm)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--chats", type=int, default=4)
    parser.add_argument("--think", type=float, default=1.0, help="seconds between chat turns")
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        env, addresses = serve_all_env(
            data, Settings().resolved_model_dir, PERCEPT_LOG_LEVEL="WARNING"
        )
        server = subprocess.Popen(
            [PERCEPT, "serve", "all"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            subprocess.run(
                [PERCEPT, "health", "--wait", "240", *addresses.values()],
                env=env, check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            asyncio.run(run(args, addresses, server.pid))
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
