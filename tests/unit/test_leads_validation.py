from __future__ import annotations

from datetime import timedelta

import pytest
from leads_signals import NOW, signal

from percept.leads.identity import InvalidIdentityError, normalize_email, normalize_phone
from percept.leads.validation import InvalidSignalError, validate
from percept.v1 import common_pb2


def test_phone_numbers_normalise_to_e164() -> None:
    assert normalize_phone("+1 (415) 555-2671") == "+14155552671"
    assert normalize_phone("415 555 2671", "US") == "+14155552671"
    assert normalize_phone("+34 612 34 56 78") == "+34612345678"


@pytest.mark.parametrize("raw", ["12", "call me", "+1 555"])
def test_bad_phone_numbers_are_named(raw: str) -> None:
    with pytest.raises(InvalidIdentityError, match=r"identity\.phone"):
        normalize_phone(raw)


def test_national_number_without_region_is_rejected() -> None:
    with pytest.raises(InvalidIdentityError, match=r"identity\.phone"):
        normalize_phone("415 555 2671")


def test_emails_normalise_and_bad_ones_are_named() -> None:
    assert normalize_email(" Ana.Garcia@Example.COM") == "ana.garcia@example.com"
    with pytest.raises(InvalidIdentityError, match=r"identity\.email"):
        normalize_email("ana@")


def test_valid_signal_keeps_normalised_keys() -> None:
    valid = validate(signal(phone="+1 415 555 2671", email="A@Example.com"), now=NOW)
    assert [(k.key_type, k.value) for k in valid.keys] == [
        ("phone", "+14155552671"),
        ("email", "a@example.com"),
    ]
    assert len(valid.content_hash) == 64


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (signal(signal_id=" ", phone="+14155552671"), r"signal_id: required"),
        (signal(), r"identity: at least one key"),
        (signal(source=0, phone="+14155552671"), r"source: unknown or unspecified \(0\)"),
        (signal(source=99, phone="+14155552671"), r"source: unknown or unspecified \(99\)"),
        (signal(kind=0, phone="+14155552671"), r"kind: unknown or unspecified"),
        (signal(confidence=1.5, phone="+14155552671"), r"confidence: 1\.5 is outside \[0, 1\]"),
        (signal(confidence=-0.1, phone="+14155552671"), r"confidence: .* is outside"),
        (signal(confidence=float("nan"), phone="+14155552671"), r"confidence: nan"),
        (signal(name="", phone="+14155552671"), r"name: required for SIGNAL_KIND_INTENT"),
        (
            signal(kind=common_pb2.SIGNAL_KIND_OUTCOME, value="maybe", phone="+14155552671"),
            r"value: an OUTCOME is 'won' or 'lost'",
        ),
        (signal(minutes=60 * 24, phone="+14155552671"), r"occurred_at: .* is in the future"),
        (signal(phone="not a phone"), r"identity\.phone"),
        (signal(chat_session_id="x" * 500), r"identity\.chat_session_id: must be printable"),
        (
            signal(numeric_value=float("inf"), phone="+14155552671"),
            r"numeric_value: must be a finite number",
        ),
    ],
)
def test_bad_signals_are_rejected_naming_the_field(
    message: common_pb2.Signal, expected: str
) -> None:
    with pytest.raises(InvalidSignalError, match=expected):
        validate(message, now=NOW)


def test_missing_timestamp_is_rejected() -> None:
    message = signal(phone="+14155552671")
    message.ClearField("occurred_at")
    with pytest.raises(InvalidSignalError, match=r"occurred_at: required"):
        validate(message, now=NOW)


def test_small_clock_skew_is_tolerated() -> None:
    validate(signal(minutes=2, phone="+14155552671"), now=NOW, max_clock_skew=timedelta(minutes=5))
