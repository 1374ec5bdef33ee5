"""A lead that changed in a write, and how changes travel between replicas (NOTIFY
payloads: PostgreSQL allows 8000 bytes a notification, so many changes take several)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from percept.v1 import leads_pb2

MAX_PAYLOAD = 7000


@dataclass(frozen=True)
class Change:
    """A lead that changed in a write, with its class and stage before the write."""

    lead_id: str
    type: leads_pb2.LeadChange.ChangeType.ValueType
    previous_class: int = leads_pb2.LEAD_CLASS_UNSPECIFIED
    previous_stage: int = leads_pb2.LEAD_STAGE_UNSPECIFIED


def payloads(changes: Sequence[Change]) -> list[str]:
    """The changes as notification payloads, each under PostgreSQL's size limit."""
    out: list[str] = []
    chunk: list[list[object]] = []
    size = 2
    for c in changes:
        item: list[object] = [c.lead_id, int(c.type), c.previous_class, c.previous_stage]
        length = len(json.dumps(item, separators=(",", ":"))) + 1
        if chunk and size + length > MAX_PAYLOAD:
            out.append(json.dumps(chunk, separators=(",", ":")))
            chunk, size = [], 2
        chunk.append(item)
        size += length
    if chunk:
        out.append(json.dumps(chunk, separators=(",", ":")))
    return out


def decode(payload: str) -> list[Change]:
    """The changes of one payload; ValueError if it is not one `payloads` made."""
    kinds = set(leads_pb2.LeadChange.ChangeType.values())
    changes = []
    for lead_id, kind, previous_class, previous_stage in json.loads(payload):
        if kind not in kinds:
            raise ValueError(f"change type {kind!r}")
        changes.append(
            Change(
                str(lead_id),
                leads_pb2.LeadChange.ChangeType.ValueType(kind),
                int(previous_class),
                int(previous_stage),
            )
        )
    return changes
