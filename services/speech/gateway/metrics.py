"""The gateway's Prometheus series, in the speech service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

GATEWAYS = ("twilio", "audiohook", "audiosocket")


@dataclass
class GatewayMetrics:
    calls: Counter  # by gateway and outcome: completed, dropped, refused, error, ...
    active: Gauge
    frames: Counter
    decode_errors: Counter
    gaps: Counter
    gap_seconds: Counter
    unknown_events: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> GatewayMetrics:
        labels = ("gateway",)
        metrics = cls(
            calls=Counter(
                "percept_gateway_calls_total",
                "Gateway calls, by how they ended.",
                ("gateway", "outcome"),
                registry=registry,
            ),
            active=Gauge(
                "percept_gateway_active_calls", "Gateway calls now.", labels, registry=registry
            ),
            frames=Counter(
                "percept_gateway_frames_total", "Audio frames received.", labels, registry=registry
            ),
            decode_errors=Counter(
                "percept_gateway_decode_errors_total",
                "Frames or messages that did not decode (the call was closed).",
                labels,
                registry=registry,
            ),
            gaps=Counter(
                "percept_gateway_gaps_total",
                "Holes in a track's timeline, filled with silence.",
                labels,
                registry=registry,
            ),
            unknown_events=Counter(
                "percept_gateway_unknown_events_total",
                "Messages of a kind this gateway does not know (skipped).",
                labels,
                registry=registry,
            ),
            gap_seconds=Counter(
                "percept_gateway_gap_seconds_total",
                "Audio missing from tracks (filled with silence).",
                labels,
                registry=registry,
            ),
        )
        for gateway in GATEWAYS:  # every series exists from the start, at zero
            for m in (
                metrics.active,
                metrics.frames,
                metrics.decode_errors,
                metrics.gaps,
                metrics.unknown_events,
            ):
                m.labels(gateway)
            metrics.gap_seconds.labels(gateway)
        return metrics
