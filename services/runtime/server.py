"""Server bootstrap shared by every service.

A `ServiceHost` runs one service on its own `grpc.aio` server: interceptors,
message-size and keepalive limits, the standard health service (NOT_SERVING
until the service's models are loaded), server reflection and a Prometheus
endpoint. `serve()` runs one or more hosts until SIGTERM/SIGINT, then drains
in-flight calls for the grace period; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from percept.runtime.auth import KeyRing
from percept.runtime.interceptors import (
    ApiKeyAuthInterceptor,
    MalformedRequestInterceptor,
    ObservabilityInterceptor,
)
from percept.runtime.metrics import GrpcMetrics, MetricsEndpoint
from percept.runtime.settings import Settings
from percept.runtime.tls import server_credentials

log = logging.getLogger("percept.server")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_SERVICE = reflection.SERVICE_NAME


class Service(Protocol):
    """What a percept service gives the runtime: servicers to mount and models to load."""

    @property
    def name(self) -> str: ...

    @property
    def grpc_service_names(self) -> Sequence[str]: ...

    def add_to_server(self, server: grpc.aio.Server) -> None: ...

    async def load(self) -> None:
        """Loads models and opens stores; health turns SERVING when it returns."""

    async def close(self) -> None:
        """Releases what load() acquired, after in-flight calls have drained."""

    # Optional: `async listen()` opens ports of the service's own once gRPC listens, and
    # `async drain(grace)` ends their calls when the host stops (speech's gateway).


def server_options(settings: Settings) -> list[tuple[str, int]]:
    ms = 1000
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * ms)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5 * ms),
        ("grpc.http2.max_pings_without_data", 0),
        # A second server on a taken port must fail, not silently share it.
        ("grpc.so_reuseport", 0),
    ]


class ServiceHost:
    """One service on one gRPC server, with health, reflection and metrics."""

    def __init__(
        self,
        service: Service,
        settings: Settings,
        *,
        port: int | None = None,
        metrics_port: int | None = None,
        host: str | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self._host = host or settings.host
        self._port = settings.port_for(service.name) if port is None else port
        self._metrics_port = (
            settings.metrics_port_for(service.name) if metrics_port is None else metrics_port
        )
        # A service with metrics of its own exposes them on the same endpoint.
        self.metrics = GrpcMetrics.create(getattr(service, "registry", None))
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.bound_port: int | None = None
        self.health_server: grpc.aio.Server | None = None
        self.health_port: int | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.ready = asyncio.Event()
        self._load_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self._host}:{self.bound_port}"

    async def start(self) -> None:
        """Starts serving at once; models load in the background (health tells when)."""
        interceptors: list[grpc.aio.ServerInterceptor] = [
            ObservabilityInterceptor(self.metrics, self.service.name)
        ]
        if self.settings.api_keys:
            interceptors.append(
                ApiKeyAuthInterceptor(
                    KeyRing(self.settings.api_keys), self.settings.max_streams_per_key
                )
            )
        interceptors.append(MalformedRequestInterceptor())  # innermost: next to the handler
        server = grpc.aio.server(
            interceptors=interceptors,
            options=server_options(self.settings),
            maximum_concurrent_rpcs=self.settings.max_concurrent_rpcs,
        )
        self.service.add_to_server(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in ("", *self.service.grpc_service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            (*self.service.grpc_service_names, HEALTH_SERVICE, REFLECTION_SERVICE), server
        )
        credentials = server_credentials(self.settings)
        address = f"{self._host}:{self._port}"
        try:
            if credentials is None:
                self.bound_port = server.add_insecure_port(address)
            else:
                self.bound_port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise OSError(
                f"{self.service.name}: cannot listen on {self._host}:{self._port} "
                f"(in use or not a local address); set PERCEPT_{self.service.name.upper()}_PORT"
            ) from exc
        await server.start()
        self.server = server
        listen = getattr(self.service, "listen", None)
        if listen is not None:  # ports of the service's own (speech's telephony gateway)
            try:
                await listen()
            except OSError:
                await server.stop(None)
                raise
        await self._start_health_port()
        if self.settings.metrics_enabled:
            self.metrics_endpoint = MetricsEndpoint(
                self.metrics.registry, self.settings.metrics_host, self._metrics_port
            )
        log.info(
            "service listening",
            extra={
                "service": self.service.name,
                "address": self.address,
                "metrics_port": self.metrics_endpoint.port if self.metrics_endpoint else None,
            },
        )
        self._load_task = asyncio.create_task(self._load(), name=f"load-{self.service.name}")

    async def _start_health_port(self) -> None:
        """A plain-text port with only the health service, for probes that cannot speak TLS."""
        port = self.settings.health_port_for(self.service.name)
        if not port:
            return
        health_server = grpc.aio.server(options=server_options(self.settings))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, health_server)
        try:
            self.health_port = health_server.add_insecure_port(f"{self._host}:{port}")
        except RuntimeError as exc:
            raise OSError(
                f"{self.service.name}: cannot listen on {self._host}:{port}; "
                f"set PERCEPT_{self.service.name.upper()}_HEALTH_PORT"
            ) from exc
        await health_server.start()
        self.health_server = health_server

    async def _load(self) -> None:
        try:
            await self.service.load()
        except Exception:
            log.exception(
                "service failed to load; health stays NOT_SERVING",
                extra={"service": self.service.name},
            )
            return
        # Models, stores and modules live as long as the process: moved out of the cyclic
        # collector's reach, so its full passes stop re-scanning them (they cost leads' ingest
        # ~10 % even without the perception models beside it).
        gc.freeze()
        for name in ("", *self.service.grpc_service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.ready.set()
        log.info("service ready", extra={"service": self.service.name})

    async def stop(self, grace: float | None) -> None:
        """Turns health NOT_SERVING, drains in-flight calls for `grace` seconds, then closes."""
        if self._load_task and not self._load_task.done():
            self._load_task.cancel()
        await self.health.enter_graceful_shutdown()
        stops = []
        drain = getattr(self.service, "drain", None)
        if drain is not None:  # its own ports drain beside the gRPC calls, in the same grace
            stops.append(drain(grace))
        if self.server is not None:
            stops.append(self.server.stop(grace))
        await asyncio.gather(*stops)
        if self.health_server is not None:
            await self.health_server.stop(None)
        await self.service.close()
        gc.unfreeze()  # what the service held can be collected again (tests start many hosts)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        log.info("service stopped", extra={"service": self.service.name})


class Companion(Protocol):
    """Something served beside the gRPC hosts on their loop (the web console)."""

    async def start(self, hosts: Sequence[ServiceHost]) -> None: ...
    async def stop(self) -> None: ...


async def serve(
    hosts: Sequence[ServiceHost],
    grace_period_s: float,
    on_started: Callable[[Sequence[ServiceHost]], Awaitable[bool]] | None = None,
    companions: Sequence[Companion] = (),
) -> None:
    """Runs the hosts until SIGTERM or SIGINT, then stops them gracefully.

    `on_started` runs once every host (and companion) listens; when it returns
    True the hosts stop as if signalled (used by one-shot commands such as
    `demo --check-only`). Companions start after the hosts and stop before them.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    force = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop_requested.is_set():
            log.warning("second signal: stopping without waiting for in-flight calls")
            force.set()
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    started: list[ServiceHost] = []
    running: list[Companion] = []
    try:
        for host in hosts:
            await host.start()
            started.append(host)
        for companion in companions:
            await companion.start(started)
            running.append(companion)
        if on_started is not None and await _until_stopped(on_started(started), stop_requested):
            stop_requested.set()
        await stop_requested.wait()
        log.info("stopping: draining in-flight calls", extra={"grace_s": grace_period_s})
    finally:
        for companion in reversed(running):
            await companion.stop()
        await _stop_all(started, grace_period_s, force)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _until_stopped(work: Awaitable[bool], stop_requested: asyncio.Event) -> bool:
    """Runs `work` unless a stop is requested first (then cancels it and returns False)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    return False


async def _stop_all(hosts: Sequence[ServiceHost], grace: float, force: asyncio.Event) -> None:
    async def stop_gracefully() -> None:
        # Perception services first: their outboxes drain to leads while it still runs.
        senders = [h for h in hosts if h.service.name != "leads"]
        await asyncio.gather(*(h.stop(grace) for h in senders))
        await asyncio.gather(*(h.stop(grace) for h in hosts if h not in senders))

    graceful = asyncio.create_task(stop_gracefully())
    forced = asyncio.create_task(force.wait())
    done, _ = await asyncio.wait({graceful, forced}, return_when=asyncio.FIRST_COMPLETED)
    if forced in done and not graceful.done():
        for h in hosts:
            if h.server is not None:
                await h.server.stop(None)
        await graceful
    forced.cancel()
