"""Lead signals out of a perception service: built here, queued durably, sent to leads.

`publish` writes to the service's outbox and returns: a call, a camera frame or a
chat message never waits for leads, and signals survive a leads outage or a
restart of the sender (DESIGN.md §1).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
from prometheus_client import CollectorRegistry

from percept.runtime.clients import bearer_of, service_channel
from percept.runtime.outbox import Outbox, leads_sender
from percept.runtime.settings import Settings
from percept.runtime.tls import channel_credentials
from percept.v1 import common_pb2


def new_signal(
    source: common_pb2.Source.ValueType,
    kind: common_pb2.SignalKind.ValueType,
    identity: common_pb2.IdentityKeys,
    *,
    name: str = "",
    value: str = "",
    numeric_value: float = 0.0,
    confidence: float = 1.0,
    evidence: str = "",
    campaign_id: str = "",
    attributes: dict[str, str] | None = None,
    occurred_at: datetime | None = None,
) -> common_pb2.Signal:
    signal = common_pb2.Signal(
        signal_id=str(uuid.uuid4()),
        source=source,
        kind=kind,
        identity=identity,
        name=name,
        value=value,
        numeric_value=numeric_value,
        confidence=confidence,
        evidence=evidence[:500],
        campaign_id=campaign_id,
        attributes=attributes or {},
    )
    signal.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    return signal


def leading_number(value: str) -> float:
    """The amount of a normalised value ("15000.00 USD", "10"), 0 when there is none."""
    try:
        return float(value.split()[0])
    except (ValueError, IndexError):
        return 0.0


class SignalPublisher:
    def __init__(self, settings: Settings, service: str, registry: CollectorRegistry) -> None:
        self.channel: grpc.aio.Channel | None = None
        self.settings, self.service, self.registry = settings, service, registry
        self.outbox: Outbox | None = None

    def start(self) -> None:
        """Opens the outbox and starts delivery (call on the event loop)."""
        settings = self.settings
        self.channel = service_channel(settings.leads_address, channel_credentials(settings))
        metadata = bearer_of(settings.api_keys)
        self.outbox = Outbox(
            settings.data_dir / "outbox" / f"{self.service}.db",
            leads_sender(self.channel, metadata=metadata),
            registry=self.registry,
        )
        self.outbox.start()

    def publish(self, signal: common_pb2.Signal) -> None:
        if self.outbox is None:
            raise RuntimeError("SignalPublisher.publish before start")
        self.outbox.publish(signal)

    async def close(self, drain_timeout_s: float = 2.0) -> None:
        if self.outbox is not None:
            await self.outbox.close(drain_timeout_s)
        if self.channel is not None:
            await self.channel.close()
