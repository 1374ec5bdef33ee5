"""Turns a `Signal` message into a validated domain signal, or says precisely what is wrong."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from percept.leads.identity import IdentityKey, InvalidIdentityError, keys_of
from percept.v1 import common_pb2

MAX_SIGNAL_ID = 128
MAX_TEXT = 4000
# Kinds whose `name` says what they are about (an intent, a zone, a slot...).
NAMED_KINDS = {
    common_pb2.SIGNAL_KIND_INTENT,
    common_pb2.SIGNAL_KIND_ENTITY,
    common_pb2.SIGNAL_KIND_DWELL,
    common_pb2.SIGNAL_KIND_ZONE_VISIT,
    common_pb2.SIGNAL_KIND_QUALIFICATION_SLOT,
    common_pb2.SIGNAL_KIND_CROWDING,
    common_pb2.SIGNAL_KIND_CALL_CATEGORY,
    common_pb2.SIGNAL_KIND_CHAT_MESSAGE,
}
OUTCOMES = {"won", "lost"}
SOURCES = frozenset(common_pb2.Source.values()) - {common_pb2.SOURCE_UNSPECIFIED}
KINDS = frozenset(common_pb2.SignalKind.values()) - {common_pb2.SIGNAL_KIND_UNSPECIFIED}


class InvalidSignalError(ValueError):
    """The signal cannot be stored; the message names the field and the reason."""


class ValidSignal(NamedTuple):  # a tuple: a frozen dataclass's __init__ cost 5 % of ingest
    signal_id: str
    content_hash: str
    source: int
    kind: int
    name: str
    value: str
    numeric_value: float
    confidence: float
    evidence: str
    campaign_id: str
    keys: tuple[IdentityKey, ...]
    attributes: dict[str, str]
    occurred_at: datetime


def content_hash(signal: common_pb2.Signal) -> str:
    """Hash of everything a signal says; a replay with another hash is a conflict."""
    return hashlib.sha256(signal.SerializeToString(deterministic=True)).hexdigest()


def validate(
    signal: common_pb2.Signal,
    *,
    now: datetime,
    max_clock_skew: timedelta = timedelta(minutes=5),
    default_region: str | None = None,
) -> ValidSignal:
    sid = signal.signal_id.strip()
    if not sid:
        raise InvalidSignalError("signal_id: required (a UUID chosen by the sender)")
    if len(sid) > MAX_SIGNAL_ID or not sid.isprintable():
        raise InvalidSignalError(f"signal_id: must be printable and at most {MAX_SIGNAL_ID} chars")
    prefix = f"signal {sid}: "
    if signal.source not in SOURCES:
        raise InvalidSignalError(prefix + f"source: unknown or unspecified ({signal.source})")
    if signal.kind not in KINDS:
        raise InvalidSignalError(prefix + f"kind: unknown or unspecified ({signal.kind})")
    if not signal.HasField("occurred_at"):
        raise InvalidSignalError(prefix + "occurred_at: required")
    try:
        occurred = signal.occurred_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidSignalError(prefix + f"occurred_at: not a valid time ({exc})") from exc
    if occurred > now + max_clock_skew:
        raise InvalidSignalError(
            prefix + f"occurred_at: {occurred.isoformat()} is in the future (now {now.isoformat()})"
        )
    confidence = signal.confidence
    if math.isnan(confidence) or not 0.0 <= confidence <= 1.0:
        raise InvalidSignalError(prefix + f"confidence: {confidence} is outside [0, 1]")
    if not math.isfinite(signal.numeric_value):
        raise InvalidSignalError(prefix + "numeric_value: must be a finite number")
    if signal.kind in NAMED_KINDS and not signal.name.strip():
        kind = common_pb2.SignalKind.Name(signal.kind)
        raise InvalidSignalError(prefix + f"name: required for {kind}")
    if signal.kind == common_pb2.SIGNAL_KIND_OUTCOME and signal.value not in OUTCOMES:
        raise InvalidSignalError(
            prefix + f"value: an OUTCOME is 'won' or 'lost', not {signal.value!r}"
        )
    for field in ("name", "value", "evidence", "campaign_id"):
        if len(getattr(signal, field)) > MAX_TEXT:
            raise InvalidSignalError(prefix + f"{field}: longer than {MAX_TEXT} characters")
    try:
        keys = keys_of(signal.identity, default_region)
    except InvalidIdentityError as exc:
        raise InvalidSignalError(prefix + str(exc)) from exc
    if not keys:
        raise InvalidSignalError(
            prefix
            + "identity: at least one key (phone, email, chat session, visitor...) is required"
        )
    return ValidSignal(
        signal_id=sid,
        content_hash=content_hash(signal),
        source=signal.source,
        kind=signal.kind,
        name=signal.name.strip(),
        value=signal.value.strip(),
        numeric_value=signal.numeric_value,
        confidence=float(confidence),
        evidence=signal.evidence,
        campaign_id=signal.campaign_id,
        keys=tuple(keys),
        attributes=dict(signal.attributes),
        occurred_at=occurred,
    )
