"""Store rows and times as protobuf messages: what every part of the leads servicer
answers with, and how it checks a time a caller sent."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from percept.leads.identity import to_proto
from percept.leads.store import utc
from percept.v1 import leads_pb2


def timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(utc(value))
    return stamp


def lead_message(row: dict[str, Any], keys: Any) -> leads_pb2.Lead:
    return leads_pb2.Lead(
        lead_id=row["lead_id"],
        identity=to_proto(list(keys)),
        score=row["score"],
        lead_class=row["lead_class"],
        stage=row["stage"],
        product_interest=row["product_interest"],
        channels=row["channels"],
        qualification=row["qualification"],
        signal_count=row["signal_count"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        last_signal_at=timestamp(row["last_signal_at"]),
    )


def time_problem(stamp: Timestamp, name: str) -> str:
    """What is wrong with a time a caller sent (outside 0001-9999), or ''."""
    try:
        stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        return f"{name}: not a valid time ({exc})"
    return ""
