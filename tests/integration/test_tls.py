"""TLS and mutual TLS on every percept server, and between services."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pending_services import pending_speech
from tls_ca import ThrowawayCA

from percept.leads.service import LeadsService
from percept.runtime.clients import service_channel
from percept.runtime.server import Service, ServiceHost
from percept.runtime.settings import Settings, SettingsError, load_settings
from percept.runtime.tls import channel_credentials
from percept.v1 import leads_pb2, leads_pb2_grpc, speech_pb2, speech_pb2_grpc

HostFactory = Callable[[Service, Settings], Awaitable[ServiceHost]]


async def recognize_code(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await speech_pb2_grpc.SpeechStub(channel).Recognize(
            speech_pb2.RecognizeRequest(), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_mutual_tls_admits_only_certified_callers(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    free_port: Callable[[], int],
) -> None:
    ca = ThrowawayCA(tmp_path / "ca")
    server = ca.issue("speech", server=True)
    client = ca.issue("caller", server=False)
    stranger = ThrowawayCA(tmp_path / "other", "other CA").issue("stranger", server=False)
    settings = make_settings(
        tls_cert_file=server.cert,
        tls_key_file=server.key,
        tls_client_ca_file=ca.bundle,
        speech_health_port=free_port(),
    )
    host = await start_host(pending_speech(), settings)
    address = f"localhost:{host.bound_port}"

    def creds(who: object | None, root: Path = ca.bundle) -> grpc.ChannelCredentials:
        key = who.key.read_bytes() if who else None  # type: ignore[attr-defined]
        cert = who.cert.read_bytes() if who else None  # type: ignore[attr-defined]
        return grpc.ssl_channel_credentials(root.read_bytes(), key, cert)

    async with grpc.aio.secure_channel(address, creds(client)) as channel:
        # Through TLS and client-certificate checks to the (pending) method itself.
        assert await recognize_code(channel) is grpc.StatusCode.UNIMPLEMENTED
    async with grpc.aio.secure_channel(address, creds(None)) as channel:
        assert await recognize_code(channel) is grpc.StatusCode.UNAVAILABLE  # no client cert
    async with grpc.aio.secure_channel(address, creds(stranger)) as channel:
        assert await recognize_code(channel) is grpc.StatusCode.UNAVAILABLE  # foreign CA
    async with grpc.aio.insecure_channel(address) as channel:
        assert await recognize_code(channel) is grpc.StatusCode.UNAVAILABLE  # plain text
    async with grpc.aio.secure_channel(
        address, creds(client, ThrowawayCA(tmp_path / "x", "x CA").bundle)
    ) as channel:
        assert await recognize_code(channel) is grpc.StatusCode.UNAVAILABLE  # server not trusted

    await asyncio.wait_for(host.ready.wait(), 10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.health_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:  # only health is there
            await speech_pb2_grpc.SpeechStub(channel).Recognize(speech_pb2.RecognizeRequest())
        assert excinfo.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_services_call_each_other_over_mutual_tls(
    tmp_path: Path, make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    ca = ThrowawayCA(tmp_path / "ca")
    leads_cert = ca.issue("leads", server=True)
    vision_cert = ca.issue("vision", server=False)
    leads_settings = make_settings(
        tls_cert_file=leads_cert.cert,
        tls_key_file=leads_cert.key,
        tls_client_ca_file=ca.bundle,
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
    )
    host = await start_host(LeadsService(leads_settings), leads_settings)
    await asyncio.wait_for(host.ready.wait(), 30)
    caller = make_settings(
        tls_cert_file=vision_cert.cert, tls_key_file=vision_cert.key, tls_ca_file=ca.bundle
    )
    async with service_channel(
        f"localhost:{host.bound_port}", channel_credentials(caller)
    ) as channel:
        page = await leads_pb2_grpc.LeadsStub(channel).ListLeads(
            leads_pb2.ListLeadsRequest(), timeout=5
        )
    assert list(page.leads) == []


def test_tls_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = ThrowawayCA(tmp_path).issue("x", server=True)
    monkeypatch.setenv("PERCEPT_TLS_CERT_FILE", str(cert.cert))
    with pytest.raises(SettingsError, match="tls_cert_file and tls_key_file go together"):
        load_settings()
    monkeypatch.setenv("PERCEPT_TLS_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(SettingsError, match="tls_key_file: no file at"):
        load_settings()
    monkeypatch.delenv("PERCEPT_TLS_CERT_FILE")
    monkeypatch.delenv("PERCEPT_TLS_KEY_FILE")
    monkeypatch.setenv("PERCEPT_TLS_CLIENT_CA_FILE", str(cert.cert))
    with pytest.raises(SettingsError, match="mutual TLS"):
        load_settings()
