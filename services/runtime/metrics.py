"""Prometheus metrics of gRPC calls, one registry per service.

Each service gets its own registry and HTTP port so that `percept serve all`
(four services in one process) exposes the same series as four separate pods.
Names follow the grpc-ecosystem/go-grpc-prometheus conventions that existing
dashboards expect.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LABELS = ("grpc_service", "grpc_method", "grpc_type")


@dataclass
class GrpcMetrics:
    registry: CollectorRegistry
    started: Counter
    handled: Counter
    handling_seconds: Histogram
    in_flight: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> GrpcMetrics:
        """RPC metrics in `registry` (the service's own, so its metrics share the endpoint)."""
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            started=Counter(
                "grpc_server_started_total",
                "RPCs started on the server.",
                LABELS,
                registry=registry,
            ),
            handled=Counter(
                "grpc_server_handled_total",
                "RPCs completed on the server, by status code.",
                (*LABELS, "grpc_code"),
                registry=registry,
            ),
            handling_seconds=Histogram(
                "grpc_server_handling_seconds",
                "Time from the start of an RPC to its status, by status code.",
                (*LABELS, "grpc_code"),
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            in_flight=Gauge(
                "percept_grpc_in_flight",
                "RPCs being handled now (streams count while open); an autoscaling signal.",
                ("grpc_service", "grpc_method"),
                registry=registry,
            ),
        )


class MetricsEndpoint:
    """The HTTP server exposing one registry at /metrics."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
