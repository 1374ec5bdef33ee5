"""Builders of realistic lead signals, shared by the leads tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from percept.v1 import common_pb2

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def at(minutes: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(NOW + timedelta(minutes=minutes))
    return stamp


def signal(
    *,
    source: int = common_pb2.SOURCE_SPEECH,
    kind: int = common_pb2.SIGNAL_KIND_INTENT,
    name: str = "purchase_intent",
    value: str = "",
    numeric_value: float = 0.0,
    confidence: float = 0.9,
    minutes: float = 0.0,
    signal_id: str | None = None,
    evidence: str = "",
    **identity: str,
) -> common_pb2.Signal:
    return common_pb2.Signal(
        signal_id=signal_id or uuid.uuid4().hex,
        source=source,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        name=name,
        value=value,
        numeric_value=numeric_value,
        confidence=confidence,
        occurred_at=at(minutes),
        identity=common_pb2.IdentityKeys(**identity),
        evidence=evidence,
    )


def recent(**fields: Any) -> common_pb2.Signal:
    """`signal(...)` that occurred just now (scores decay: a fresh signal counts in full)."""
    message = signal(**fields)
    message.occurred_at.FromDatetime(datetime.now(UTC))
    return message
