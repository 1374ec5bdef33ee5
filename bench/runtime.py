"""Benchmarks of the shared runtime, each as a ratio to a baseline measured in the same run.

1. Start-up: `percept serve all` from spawn until all four services answer SERVING,
   against spawning the same interpreter to `import grpc` and exit (the floor).
2. Per-call overhead: unary calls through a `ServiceHost` (metrics, JSON log, API-key auth)
   against the same handler on a bare `grpc.aio` server.

Run: .venv/bin/python bench/runtime.py [--calls N] [--starts N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from percept.runtime.logs import configure_logging
from percept.runtime.server import ServiceHost
from percept.runtime.settings import SERVICE_NAMES, Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from local_servers import free_port

PERCEPT = str(Path(sys.executable).parent / "percept")
KEY = "b" * 32


def all_serving(ports: Sequence[int]) -> bool:
    for port in ports:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5
                )
            except grpc.RpcError:
                return False
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return False
    return True


def time_serve_all(data_dir: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")}
    ports = []
    for name in SERVICE_NAMES:
        ports.append(free_port())
        env[f"PERCEPT_{name.upper()}_PORT"] = str(ports[-1])
        env[f"PERCEPT_{name.upper()}_METRICS_PORT"] = str(free_port())
    env["PERCEPT_SPEECH_GATEWAY_PORT"] = str(free_port())
    env["PERCEPT_SPEECH_AUDIOSOCKET_PORT"] = str(free_port())
    env["PERCEPT_DATA_DIR"] = data_dir
    # The usual model dir: vision never turns SERVING without NanoDet (setup converts it there).
    env["PERCEPT_MODEL_DIR"] = str(Settings().resolved_model_dir)
    began = time.perf_counter()
    proc = subprocess.Popen(
        [PERCEPT, "serve", "all"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not all_serving(ports):
            if proc.poll() is not None:
                raise RuntimeError("percept serve all exited early")
            if time.perf_counter() - began > 300:
                raise RuntimeError("percept serve all was not SERVING after 300 s")
            time.sleep(0.02)
        return time.perf_counter() - began
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def time_import_grpc() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import grpc"], check=True)
    return time.perf_counter() - began


class EchoService:
    name = "speech"
    grpc_service_names = ("percept.bench.Echo",)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_echo(server)

    async def load(self) -> None:
        return None

    async def close(self) -> None:
        return None


def add_echo(server: grpc.aio.Server) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("percept.bench.Echo", {"Echo": handler}),)
    )


async def call_latencies(
    address: str, calls: int, metadata: tuple[tuple[str, str], ...]
) -> list[float]:
    async with grpc.aio.insecure_channel(address) as channel:
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/percept.bench.Echo/Echo"
        )
        payload = b"x" * 256
        for _ in range(200):  # warm-up
            await echo(payload, metadata=metadata)
        samples = []
        for _ in range(calls):
            began = time.perf_counter()
            await echo(payload, metadata=metadata)
            samples.append(time.perf_counter() - began)
        return samples


async def bench_calls(calls: int) -> tuple[list[float], list[float]]:
    bare = grpc.aio.server()
    add_echo(bare)
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()

    settings = Settings(speech_port=0, speech_metrics_port=0, api_keys=[KEY], log_format="json")
    host = ServiceHost(EchoService(), settings)
    await host.start()
    try:
        auth = (("authorization", f"Bearer {KEY}"),)
        # Interleave rounds so that machine noise hits both sides alike.
        bare_samples: list[float] = []
        runtime_samples: list[float] = []
        for _ in range(5):
            bare_samples += await call_latencies(f"127.0.0.1:{bare_port}", calls // 5, ())
            runtime_samples += await call_latencies(host.address, calls // 5, auth)
        return bare_samples, runtime_samples
    finally:
        await host.stop(None)
        await bare.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    # Per-call JSON logs are formatted as in production but written to a sink:
    # we measure their cost, not the terminal's.
    configure_logging("INFO", "json")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(Path(os.devnull).open("w"))  # noqa: SIM115

    with tempfile.TemporaryDirectory() as data_dir:
        starts = [time_serve_all(data_dir) for _ in range(args.starts)]
    floors = [time_import_grpc() for _ in range(args.starts)]
    start_med, floor_med = statistics.median(starts), statistics.median(floors)
    print(f"start-up  serve all -> 4x SERVING: median {start_med:.3f} s over {args.starts} runs")
    print(f"          baseline python -c 'import grpc': median {floor_med:.3f} s")
    print(f"          ratio {start_med / floor_med:.2f}x the interpreter+grpc floor")

    bare, runtime = asyncio.run(bench_calls(args.calls))
    bare_p50, run_p50 = statistics.median(bare), statistics.median(runtime)
    bare_p99 = statistics.quantiles(bare, n=100)[98]
    run_p99 = statistics.quantiles(runtime, n=100)[98]
    us = 1e6
    print(f"per-call  bare grpc.aio echo: p50 {bare_p50 * us:.0f} us, p99 {bare_p99 * us:.0f} us")
    print(f"          percept runtime echo: p50 {run_p50 * us:.0f} us, p99 {run_p99 * us:.0f} us")
    overhead = (run_p50 - bare_p50) * us
    print(f"          ratio p50 {run_p50 / bare_p50:.2f}x, overhead {overhead:.0f} us/call")


if __name__ == "__main__":
    main()
