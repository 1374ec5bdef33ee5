"""The telephony gateway against StreamingRecognize, measured in the same run.

A real stereo call (Asterisk's 8 kHz telephone prompts, agent and customer taking
turns: bench/speech_calls.py) is sent to one `percept serve speech` process:
1. Cost: the same call as fast as each path takes it, alternately through gRPC
   StreamingRecognize (mu-law stereo, per-channel recognition) and through the
   gateway as a Twilio Media Stream (two tracks of 20 ms base64 JSON frames). The
   server process's CPU seconds per call (from /proc) and wall time; the finals
   must be the same words. Target: gateway CPU <= 1.05x StreamingRecognize's.
2. Capacity: N Twilio calls at once at real-time pace; for each FINAL (heard through
   WatchCalls) the delay from the end of its last word (the moment that audio was
   sent) to its arrival, per role; the gateway holds N when every final comes
   within HOLD_S. The same N through StreamingRecognize for reference, alternating
   which goes first, with the server's CPU seconds for each.

Run: .venv/bin/python bench/gateway.py [--calls 1,2,3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_servers import free_port
from speech_calls import TURNS, config, stereo_call
from telephony_clients import twilio_call

from percept.runtime.settings import Settings
from percept.speech import g711
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

RATE = 8000
HOLD_S = 2.0
CHUNK_S = 0.1
TICKS = os.sysconf("SC_CLK_TCK")
ROLE_NAMES = {sp.CHANNEL_ROLE_AGENT: "agent", sp.CHANNEL_ROLE_CUSTOMER: "customer"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class Server:
    def __init__(self, folder: Path) -> None:
        self.port, self.gateway_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")}
        env |= {
            "PERCEPT_DATA_DIR": str(folder / "data"),
            "PERCEPT_MODEL_DIR": str(Settings().resolved_model_dir),
            "PERCEPT_SPEECH_PORT": str(self.port),
            "PERCEPT_SPEECH_GATEWAY_PORT": str(self.gateway_port),
            "PERCEPT_SPEECH_AUDIOSOCKET_PORT": str(free_port()),
            "PERCEPT_SPEECH_METRICS_PORT": "0",
            "PERCEPT_LEADS_ADDRESS": f"127.0.0.1:{free_port()}",  # nobody: signals wait
            "PERCEPT_LOG_LEVEL": "WARNING",
        }
        percept = str(Path(sys.executable).parent / "percept")
        self.process = subprocess.Popen([percept, "serve", "speech"], env=env)
        subprocess.run([percept, "health", "--wait", "240", self.address], env=env, check=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


async def grpc_call(
    stub: speech_pb2_grpc.SpeechAsyncStub, data: bytes, pace: float, call_id: str
) -> tuple[list[sp.RecognitionEvent], list[tuple[int, float]]]:
    """The finals of one StreamingRecognize call, and (role, delay) per final when paced."""
    step = int(CHUNK_S * RATE) * 2
    start = time.perf_counter()
    request_config = config()
    request_config.interim_results = False  # as the gateway's calls
    request_config.call_id = call_id

    async def requests() -> AsyncIterator[sp.StreamingRecognizeRequest]:
        yield sp.StreamingRecognizeRequest(config=request_config)
        for n, offset in enumerate(range(0, len(data), step)):
            if pace:
                await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.perf_counter()))
            yield sp.StreamingRecognizeRequest(audio_content=data[offset : offset + step])

    finals, delays = [], []
    async for event in stub.StreamingRecognize(requests()):
        if event.type == sp.RecognitionEvent.EVENT_TYPE_FINAL:
            finals.append(event)
            if pace and event.words:
                until = event.words[-1].end_offset.ToNanoseconds() / 1e9
                sent = start + (int(until / CHUNK_S) + 1) * CHUNK_S
                delays.append((int(event.role), time.perf_counter() - sent))
    return finals, delays


async def gateway_calls(
    server: Server,
    stub: speech_pb2_grpc.SpeechAsyncStub,
    tracks: dict[str, bytes],
    n: int,
    pace: float,
) -> tuple[list[sp.RecognitionEvent], list[tuple[int, float]]]:
    """N Twilio calls at once; their finals (through WatchCalls) and paced delays."""
    watch = stub.WatchCalls(sp.WatchCallsRequest())
    arrivals: list[tuple[sp.CallUpdate, float]] = []
    ids = [f"CA-bench-{time.monotonic_ns()}-{i}" for i in range(n)]
    ended: set[str] = set()

    async def collect() -> None:
        async for update in watch:
            if update.event.type == sp.RecognitionEvent.EVENT_TYPE_FINAL:
                arrivals.append((update, time.perf_counter()))
            elif update.type == sp.CallUpdate.UPDATE_TYPE_ENDED:
                ended.add(update.call.call_id)
                if ended >= set(ids):
                    return

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.3)
    url = f"ws://127.0.0.1:{server.gateway_port}/twilio"
    started = time.perf_counter()
    await asyncio.gather(*(twilio_call(url, tracks, call_sid=i, pace=pace) for i in ids))
    await asyncio.wait_for(collector, 600)  # the last finals come after `stop`
    watch.cancel()
    finals, delays = [], []
    for update, arrived in arrivals:
        if update.call.call_id not in ids:
            continue
        event = update.event
        finals.append(event)
        if pace and event.words:
            until = event.words[-1].end_offset.ToNanoseconds() / 1e9
            sent = started + (int(until / 0.02) + 1) * 0.02 / pace
            delays.append((int(event.role), arrived - sent))
    return finals, delays


def words(finals: list[sp.RecognitionEvent], role: int) -> str:
    return " ".join(
        f.transcript for f in sorted(finals, key=lambda f: f.utterance_index) if f.role == role
    )


def describe(delays: list[tuple[int, float]], expected: int, got: int) -> str:
    parts = []
    for role, name in ROLE_NAMES.items():
        mine = [d for r, d in delays if r == role]
        if mine:
            parts.append(f"{name} median {statistics.median(mine):.2f} s max {max(mine):.2f} s")
    every = [d for _, d in delays]
    held = got >= expected and bool(every) and max(every) <= HOLD_S
    return (
        f"finals {got}/{expected}; "
        + "; ".join(parts)
        + (" -> holds" if held else " -> falls behind")
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", default="1,2,3")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data, _, channels = stereo_call(seed=0)
    tracks = {
        "inbound": g711.compress(channels[1], "mulaw"),  # the customer
        "outbound": g711.compress(channels[0], "mulaw"),  # the agent
    }
    seconds = len(channels[0]) / RATE
    print(f"one stereo call: {TURNS} turns a side, {seconds:.0f} s, tiny.en int8, 2 cores")
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder))
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = speech_pb2_grpc.SpeechStub(channel)
                await grpc_call(stub, data, 0, "warm-up")
                print("\n1. cost of one call, as fast as each path takes it (server CPU)")
                cost: dict[str, list[float]] = {"grpc": [], "gateway": []}
                wall: dict[str, list[float]] = {"grpc": [], "gateway": []}
                texts: dict[str, list[str]] = {"grpc": [], "gateway": []}
                for r in range(args.repeat):
                    for path in ("grpc", "gateway") if r % 2 == 0 else ("gateway", "grpc"):
                        before, began = server.cpu(), time.perf_counter()
                        if path == "grpc":
                            finals, _ = await grpc_call(stub, data, 0, f"grpc-{r}")
                        else:
                            finals, _ = await gateway_calls(server, stub, tracks, 1, 0)
                        wall[path].append(time.perf_counter() - began)
                        cost[path].append(server.cpu() - before)
                        texts[path].append(" | ".join(words(finals, role) for role in ROLE_NAMES))
                for path in ("grpc", "gateway"):
                    print(
                        f"   {path:8s} CPU {statistics.median(cost[path]):.2f} s "
                        f"(runs {', '.join(f'{c:.2f}' for c in cost[path])}), wall "
                        f"{statistics.median(wall[path]):.2f} s"
                    )
                ratio = statistics.median(cost["gateway"]) / statistics.median(cost["grpc"])
                same = len(set(texts["grpc"]) | set(texts["gateway"])) == 1
                print(
                    f"   gateway / grpc CPU: {ratio:.3f}x (target <= 1.05); "
                    f"same words: {'yes' if same else 'no'}"
                )
                if not same:
                    for path in ("grpc", "gateway"):
                        print(f"   {path}: {texts[path][0][:300]}")
                print("\n2. concurrent calls at real-time pace (two tracks each)")
                expected_per_call = 2 * TURNS
                for i, n in enumerate(int(x) for x in args.calls.split(",")):
                    # alternate which path goes first, so a drifting machine hits both
                    for path in ("gateway", "grpc") if i % 2 == 0 else ("grpc", "gateway"):
                        before = server.cpu()
                        if path == "gateway":
                            finals, delays = await gateway_calls(server, stub, tracks, n, 1.0)
                            count = len(finals)
                        else:
                            results = await asyncio.gather(
                                *(grpc_call(stub, data, 1.0, f"grpc-paced-{j}") for j in range(n))
                            )
                            delays = [d for _, ds in results for d in ds]
                            count = sum(len(f) for f, _ in results)
                        print(
                            f"   {path:7s} {n} call(s): server CPU {server.cpu() - before:.1f} s; "
                            + describe(delays, n * expected_per_call, count)
                        )
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
