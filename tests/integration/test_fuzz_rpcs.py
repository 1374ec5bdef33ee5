"""Fuzzing every RPC of the four services over real gRPC (`percept serve all` in a
subprocess, real models): random messages built from the descriptors, and mutated wire
bytes. Every call ends, before its deadline, with a status we document (never INTERNAL,
UNKNOWN, UNAVAILABLE or a hang; bytes that are no message of the type get INVALID_ARGUMENT
saying so), and the server is still healthy and stops cleanly afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from fuzz_messages import messages, mutated
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_servers import serve_all
from vision_harness import MODEL_DIR

from percept.v1 import leads_pb2, nlp_pb2, speech_pb2, vision_pb2

pytestmark = pytest.mark.slow
PERCEPT = str(Path(sys.executable).parent / "percept")
LEAKS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "sqlalche.me", "psycopg", "Traceback")
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
MODULES = {"speech": speech_pb2, "vision": vision_pb2, "nlp": nlp_pb2, "leads": leads_pb2}
CALL_TIMEOUT_S = 60.0
WATCH_S = 1.0  # WatchLeads, WatchCalls and WatchChats never end by themselves: it ends here


@dataclass
class Suite:
    process: subprocess.Popen[bytes]
    addresses: dict[str, str]
    channels: dict[str, grpc.Channel]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    log = tmp_path_factory.mktemp("fuzz-log") / "serve.log"
    data = tmp_path_factory.mktemp("fuzz")
    with serve_all(data, MODEL_DIR, log, PERCEPT_LOG_LEVEL="WARNING") as (process, _, addresses):
        channels = {n: grpc.insecure_channel(a) for n, a in addresses.items()}
        yield Suite(process, addresses, channels)
        for channel in channels.values():
            channel.close()


def _methods() -> list[tuple[str, MethodDescriptor]]:
    return [
        (name, method)
        for name, module in MODULES.items()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


METHODS = _methods()


def _call(
    suite: Suite, service: str, method: MethodDescriptor, requests: list[bytes]
) -> grpc.StatusCode:
    """Sends raw request bytes; returns the call's final status."""
    channel = suite.channels[service]
    path = f"/{method.containing_service.full_name}/{method.name}"
    out: Callable[[bytes], bytes] = lambda b: b  # noqa: E731 - the bytes go out as they are
    watch = method.name in ("WatchLeads", "WatchCalls", "WatchChats")
    timeout = WATCH_S if watch else CALL_TIMEOUT_S
    try:
        if method.client_streaming and method.server_streaming:
            for _ in channel.stream_stream(path, request_serializer=out)(
                iter(requests), timeout=timeout
            ):
                pass
        elif method.client_streaming:
            channel.stream_unary(path, request_serializer=out)(iter(requests), timeout=timeout)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, request_serializer=out)(
                requests[0], timeout=timeout
            ):
                pass
        else:
            channel.unary_unary(path, request_serializer=out)(requests[0], timeout=timeout)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        if watch and code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK  # the watch was open and fine until we stopped it
        details = exc.details() or ""
        assert code in DOCUMENTED, (path, code, details)
        # No answer carries SQL, its parameters or a library's exception text.
        assert not any(leak in details for leak in LEAKS), (path, code, details)
        if code is grpc.StatusCode.INVALID_ARGUMENT and _undecodable(method, requests):
            assert "message (" in details, details  # it says which type the bytes are not
        return code
    return grpc.StatusCode.OK


def _undecodable(method: MethodDescriptor, requests: list[bytes]) -> bool:
    cls = GetMessageClass(method.input_type)
    for data in requests:
        try:
            cls.FromString(data)
        except DecodeError:
            return True
    return False


FUZZ = settings(
    max_examples=int(os.environ.get("PERCEPT_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same cases each run; PERCEPT_FUZZ_EXAMPLES raises the count
)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
def test_random_messages_get_a_documented_status(
    suite: Suite, service: str, method: MethodDescriptor
) -> None:
    count = (0, 4) if method.client_streaming else (1, 1)

    @FUZZ
    @given(st.lists(messages(method.input_type), min_size=count[0], max_size=count[1]))
    def check(requests: list[Message]) -> None:
        _call(suite, service, method, [r.SerializeToString() for r in requests])

    check()


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
def test_mutated_bytes_get_a_documented_status(
    suite: Suite, service: str, method: MethodDescriptor
) -> None:
    @FUZZ
    @given(messages(method.input_type).map(lambda m: m.SerializeToString()).flatmap(mutated))
    def check(data: bytes) -> None:
        _call(suite, service, method, [data])

    check()


def test_the_server_survived_and_stops_cleanly(suite: Suite) -> None:
    assert suite.process.poll() is None, "percept serve all died during the fuzzing"
    for name, channel in suite.channels.items():
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    suite.process.send_signal(signal.SIGINT)
    assert suite.process.wait(timeout=60) == 0
    time.sleep(0.1)
