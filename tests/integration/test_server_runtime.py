"""The shared runtime over real gRPC on loopback: health, reflection, auth, limits, metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import urllib.request
from collections.abc import Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pending_services import pending_speech
from prometheus_client.parser import text_string_to_metric_families

from percept.runtime.pending import PendingService
from percept.runtime.server import Service, ServiceHost
from percept.runtime.settings import SERVICE_NAMES, Settings
from percept.suite import build_service
from percept.v1 import speech_pb2, speech_pb2_grpc

API_KEY = "k" * 32
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

ChannelTo = Callable[[ServiceHost], grpc.aio.Channel]
HostFactory = Callable[[Service, Settings], Awaitable[ServiceHost]]
SettingsFactory = Callable[..., Settings]


class GatedSpeech(PendingService):
    """The speech API whose model loading waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__(
            "speech",
            speech_pb2.DESCRIPTOR.services_by_name["Speech"],
            speech_pb2_grpc.add_SpeechServicer_to_server,
        )
        self.release = asyncio.Event()

    async def load(self) -> None:
        await self.release.wait()


async def health_status(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def test_health_is_not_serving_until_models_load(
    start_host: HostFactory, make_settings: SettingsFactory, channel_to: ChannelTo
) -> None:
    service = GatedSpeech()
    host = await start_host(service, make_settings())
    channel = channel_to(host)
    assert await health_status(channel) == NOT_SERVING
    assert await health_status(channel, "percept.v1.Speech") == NOT_SERVING

    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service="percept.v1.Speech"), timeout=10
    )
    assert (await watch.read()).status == NOT_SERVING
    gc.unfreeze()  # whatever hosts of earlier tests (module fixtures) froze
    service.release.set()
    assert (await watch.read()).status == SERVING
    watch.cancel()
    assert await health_status(channel) == SERVING
    # What was loaded is out of the cyclic collector's passes while serving, back after.
    assert gc.get_freeze_count() > 0
    await host.stop(None)
    assert gc.get_freeze_count() == 0


async def test_health_goes_not_serving_on_shutdown(
    start_host: HostFactory, make_settings: SettingsFactory
) -> None:
    host = await start_host(build_service("leads", make_settings()), make_settings())
    await asyncio.wait_for(host.ready.wait(), 10)
    async with grpc.aio.insecure_channel(host.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert (await watch.read()).status == SERVING
        stopping = asyncio.create_task(host.stop(grace=2))
        assert (await watch.read()).status == NOT_SERVING
        await stopping


async def test_reflection_lists_every_service(
    start_host: HostFactory, make_settings: SettingsFactory, channel_to: ChannelTo
) -> None:
    settings = make_settings()
    expected = {
        "speech": "percept.v1.Speech",
        "vision": "percept.v1.Vision",
        "nlp": "percept.v1.Nlp",
        "leads": "percept.v1.Leads",
    }
    for name in SERVICE_NAMES:
        host = await start_host(build_service(name, settings), settings)
        stub = reflection_pb2_grpc.ServerReflectionStub(channel_to(host))
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=expected[name]),
        ]
        # Generous: the hosts started before load their models meanwhile, on 2 cores.
        replies = [r async for r in stub.ServerReflectionInfo(iter(requests), timeout=30)]
        listed = {s.name for s in replies[0].list_services_response.service}
        assert listed == {
            expected[name],
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        # The descriptors themselves are served, so grpcurl can call the API.
        assert replies[1].file_descriptor_response.file_descriptor_proto


async def test_pending_methods_answer_unimplemented_naming_the_method(
    start_host: HostFactory, make_settings: SettingsFactory, channel_to: ChannelTo
) -> None:
    settings = make_settings()
    host = await start_host(pending_speech(), settings)
    stub = speech_pb2_grpc.SpeechStub(channel_to(host))
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await stub.Recognize(speech_pb2.RecognizeRequest(), timeout=5)
    assert excinfo.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "percept.v1.Speech/Recognize is not implemented yet" in (excinfo.value.details() or "")

    # no request to send: a send racing the server's refusal fails as INTERNAL client side
    stream = stub.StreamingRecognize(timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await stream.read()
    assert excinfo.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "StreamingRecognize" in (excinfo.value.details() or "")


async def test_api_keys_guard_every_method_but_health(
    start_host: HostFactory, make_settings: SettingsFactory, channel_to: ChannelTo
) -> None:
    settings = make_settings(api_keys=[API_KEY, "z" * 20])
    host = await start_host(pending_speech(), settings)
    channel = channel_to(host)
    stub = speech_pb2_grpc.SpeechStub(channel)

    async def recognize_code(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
        try:
            await stub.Recognize(speech_pb2.RecognizeRequest(), metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    assert await recognize_code(()) is grpc.StatusCode.UNAUTHENTICATED
    assert await recognize_code((("authorization", "Bearer wrong-key-wrong-key"),)) is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert await recognize_code((("authorization", f"Basic {API_KEY}"),)) is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # A valid key passes auth and reaches the (pending) method.
    assert await recognize_code((("authorization", f"Bearer {API_KEY}"),)) is (
        grpc.StatusCode.UNIMPLEMENTED
    )
    assert await recognize_code((("authorization", "bearer " + "z" * 20),)) is (
        grpc.StatusCode.UNIMPLEMENTED
    )

    # no request to send: a send racing the server's refusal fails as INTERNAL client side
    stream = stub.StreamingRecognize(timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await stream.read()
    assert excinfo.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in (excinfo.value.details() or "")

    await asyncio.wait_for(host.ready.wait(), 10)
    assert await health_status(channel) == SERVING  # no key needed

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for _ in reflection.ServerReflectionInfo(iter([request]), timeout=5):
            pass
    assert excinfo.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_oversize_message_is_resource_exhausted(
    start_host: HostFactory, make_settings: SettingsFactory, channel_to: ChannelTo
) -> None:
    settings = make_settings(max_message_bytes=64 * 1024)
    host = await start_host(pending_speech(), settings)
    stub = speech_pb2_grpc.SpeechStub(channel_to(host))
    request = speech_pb2.RecognizeRequest(audio_content=b"\x00" * (100 * 1024))
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await stub.Recognize(request, timeout=5)
    assert excinfo.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (excinfo.value.details() or "")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_endpoint_counts_calls_by_method_and_code(
    start_host: HostFactory, make_settings: SettingsFactory, channel_to: ChannelTo
) -> None:
    settings = make_settings(api_keys=[API_KEY])
    host = await start_host(pending_speech(), settings)
    assert host.metrics_endpoint is not None
    stub = speech_pb2_grpc.SpeechStub(channel_to(host))
    auth = (("authorization", f"Bearer {API_KEY}"),)
    for metadata in (auth, auth, auth, ()):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Recognize(speech_pb2.RecognizeRequest(), metadata=metadata, timeout=5)

    labels = {"grpc_service": "percept.v1.Speech", "grpc_method": "Recognize", "grpc_type": "unary"}

    def value(name: str, **extra: str) -> float:
        return samples.get((name, tuple(sorted({**labels, **extra}.items()))), 0.0)

    # the server counts a call once its status is out, which can be just after the
    # client has it: scrape until the last call is counted (or give up after 5 s)
    for _ in range(50):
        samples = await asyncio.to_thread(_scrape, host.metrics_endpoint.port)
        if value("grpc_server_handled_total", grpc_code="UNAUTHENTICATED") >= 1:
            break
        await asyncio.sleep(0.1)

    assert value("grpc_server_started_total") == 4
    assert value("grpc_server_handled_total", grpc_code="UNIMPLEMENTED") == 3
    assert value("grpc_server_handled_total", grpc_code="UNAUTHENTICATED") == 1
    assert value("grpc_server_handling_seconds_count", grpc_code="UNIMPLEMENTED") == 3
    assert value("percept_grpc_in_flight") == 0


async def test_every_call_is_logged_with_method_status_and_duration(
    start_host: HostFactory,
    make_settings: SettingsFactory,
    channel_to: ChannelTo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    host = await start_host(pending_speech(), settings)
    caplog.set_level(logging.INFO, logger="percept.calls")
    stub = speech_pb2_grpc.SpeechStub(channel_to(host))
    with pytest.raises(grpc.aio.AioRpcError):
        # It answers at once; the deadline only bounds a hang (5 s once ran out under CI load).
        await stub.Recognize(speech_pb2.RecognizeRequest(), timeout=30)
    records = [r for r in caplog.records if r.name == "percept.calls"]
    assert len(records) == 1
    record = records[0]
    assert record.__dict__["method"] == "percept.v1.Speech/Recognize"
    assert record.__dict__["code"] == "UNIMPLEMENTED"
    assert record.__dict__["duration_ms"] >= 0
    assert "127.0.0.1" in record.__dict__["peer"]


async def test_second_server_on_a_taken_port_fails_with_a_clear_error(
    start_host: HostFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    first = await start_host(build_service("nlp", settings), settings)
    taken = make_settings(nlp_port=first.bound_port)
    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:\d+.*PERCEPT_NLP_PORT"):
        await start_host(build_service("nlp", taken), taken)
