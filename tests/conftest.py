"""Fixtures shared by every test: isolated settings and in-process service hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import local_servers
import pytest
import pytest_asyncio
from local_servers import local_settings
from pg_cluster import ThrowawayCluster

from percept.runtime.server import Service, ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import vision_pb2_grpc

if TYPE_CHECKING:
    from percept.speech.service import SpeechService
    from percept.v1 import common_pb2
    from percept.vision.service import VisionService

# Imported lazily: most tests never load the vision stack.
VisionHost = tuple["VisionService", ServiceHost]

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's PERCEPT_* variables or writes outside tmp_path."""
    import os

    for var in list(os.environ):
        if var.startswith("PERCEPT_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("PERCEPT_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A port free on loopback now (for servers in subprocesses, which must be told one)."""
    return local_servers.free_port


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings for in-process servers: every port chosen by the OS, data in tmp_path."""

    def make(**overrides: object) -> Settings:
        data_dir = cast(Path, overrides.pop("data_dir", tmp_path / "data"))
        return local_settings(data_dir, **overrides)

    return make


HostFactory = Callable[[Service, Settings], Awaitable[ServiceHost]]


@pytest.fixture
async def start_host() -> AsyncIterator[HostFactory]:
    """Starts services on real gRPC servers on loopback; stops them after the test."""
    hosts: list[ServiceHost] = []

    async def start(service: Service, settings: Settings) -> ServiceHost:
        host = ServiceHost(service, settings)
        await host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        await host.stop(grace=None)


@pytest.fixture
async def channel_to() -> AsyncIterator[Callable[[ServiceHost], grpc.aio.Channel]]:
    channels: list[grpc.aio.Channel] = []

    def open_channel(host: ServiceHost) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(host.address)
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vision(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[VisionHost]:
    """One vision service per test module, on the real models (NanoDet, MTCNN, dlib)."""
    from vision_harness import start_vision, vision_settings

    started = await start_vision(vision_settings(tmp_path_factory.mktemp("vision")))
    yield started
    await started[1].stop(grace=1)


@pytest_asyncio.fixture(loop_scope="module")
async def vision_stub(vision: VisionHost) -> AsyncIterator[vision_pb2_grpc.VisionAsyncStub]:
    async with grpc.aio.insecure_channel(vision[1].address) as channel:
        yield vision_pb2_grpc.VisionStub(channel)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[ThrowawayCluster]:
    cluster = ThrowawayCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each leads store test runs on the embedded default and on real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leads.db'}"
    cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


def record_published(service: SpeechService) -> list[common_pb2.Signal]:
    """The signals a speech service publishes from now on, as it publishes them
    (they still go to its outbox)."""
    published: list[common_pb2.Signal] = []
    forward = service.servicer.publish
    assert forward is not None

    def record(signal: common_pb2.Signal) -> None:
        published.append(signal)
        forward(signal)

    service.servicer.publish = record
    return published
