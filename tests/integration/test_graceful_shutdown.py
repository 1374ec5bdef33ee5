"""SIGTERM drains in-flight calls for the grace period, then the process exits."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

SLOW_SERVER = Path(__file__).resolve().parents[1] / "support" / "slow_server.py"

pytestmark = pytest.mark.slow

StartServer = Callable[[float], tuple[subprocess.Popen[bytes], str]]


def wait_serving(address: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} never became SERVING")
            time.sleep(0.1)


@pytest.fixture
def slow_server(
    free_port: Callable[[], int],
) -> Iterator[Callable[[float], tuple[subprocess.Popen[bytes], str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(grace: float) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(SLOW_SERVER), str(port), str(grace)], stderr=subprocess.PIPE
        )
        procs.append(proc)
        address = f"127.0.0.1:{port}"
        wait_serving(address)
        return proc, address

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def sleep_method(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary("/percept.test.Slow/Sleep")


class Call:
    """A slow call running in a thread; records its outcome."""

    def __init__(self, address: str, seconds: float) -> None:
        self.result: bytes | None = None
        self.error: grpc.RpcError | None = None
        self.started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(address, seconds))
        self._thread.start()

    def _run(self, address: str, seconds: float) -> None:
        with grpc.insecure_channel(address) as channel:
            future = sleep_method(channel).future(str(seconds).encode(), timeout=60)
            self.started.set()
            try:
                self.result = future.result()
            except grpc.RpcError as exc:
                self.error = exc

    def join(self) -> None:
        self._thread.join(timeout=60)


def test_sigterm_drains_an_in_flight_call(slow_server: StartServer) -> None:
    proc, address = slow_server(10.0)
    call = Call(address, 2.0)
    call.started.wait(5)
    time.sleep(0.5)  # the call is now being handled
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # New calls are refused while the old one drains.
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as refused:
        sleep_method(channel)(b"0", timeout=5)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    call.join()
    assert call.error is None, call.error
    assert call.result == b"slept"
    assert proc.wait(timeout=15) == 0


def test_grace_period_bounds_the_drain(slow_server: StartServer) -> None:
    proc, address = slow_server(1.0)
    call = Call(address, 30.0)
    call.started.wait(5)
    time.sleep(0.5)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    stopped_after = time.monotonic() - began
    call.join()
    assert call.result is None
    assert call.error is not None
    assert call.error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    # The 30 s call was cut at the grace period, not waited for.
    assert stopped_after < 15
    assert proc.stderr is not None
    assert b"draining in-flight calls" in proc.stderr.read()


async def test_leads_stops_after_the_services_that_send_to_it() -> None:
    """Perception outboxes drain into an in-process leads before it goes."""
    import types

    from percept.runtime.server import _stop_all

    order: list[str] = []

    class Recorder:
        server = None

        def __init__(self, name: str) -> None:
            self.service = types.SimpleNamespace(name=name)

        async def stop(self, grace: float | None) -> None:
            await asyncio.sleep(0.05 if self.service.name == "speech" else 0)
            order.append(self.service.name)

    hosts = [Recorder(n) for n in ("leads", "speech", "nlp")]
    await _stop_all(hosts, 1.0, asyncio.Event())  # type: ignore[arg-type]
    assert order[-1] == "leads" and set(order) == {"leads", "speech", "nlp"}
