"""Identity keys: normalised so that the same person's keys compare equal across channels."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from percept.v1 import common_pb2

# Proto field name -> key type stored in the identities table.
KEY_FIELDS: tuple[str, ...] = (
    "phone",
    "email",
    "chat_session_id",
    "visitor_id",
    "face_identity_id",
    "crm_id",
    "call_id",
)
MAX_OPAQUE_KEY = 200
# How surely a key says who someone is. A link through a key never joins two leads
# that hold different keys of a stronger EXCLUSIVE type: a person has one e-mail and
# one CRM id, so two of them are two people sharing a phone, a chat or a visit.
STRENGTH: dict[str, int] = {
    "crm_id": 6,
    "email": 5,
    "phone": 4,
    "face_identity_id": 3,
    "chat_session_id": 2,
    "call_id": 2,
    "visitor_id": 1,
}
EXCLUSIVE: tuple[str, ...] = ("crm_id", "email")


class InvalidIdentityError(ValueError):
    """A key that cannot be normalised; the message names the field. The services that
    take keys from their callers name the field their own way (`field`, `reason`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"identity.{field}: {reason}")
        self.field, self.reason = field, reason


class IdentityKey(NamedTuple):  # a tuple: hashed and compared in C, on every signal
    key_type: str
    value: str


@lru_cache(maxsize=65536)  # parsing costs ~0.2 ms; the same callers recur constantly
def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 form; numbers without a leading + need a default region."""
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentityError("phone", f"{raw!r} is not a phone number ({exc})") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidIdentityError("phone", f"{raw!r} is not a valid phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=65536)
def normalize_email(raw: str) -> str:
    try:
        info = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidIdentityError("email", f"{raw!r} is not an e-mail address ({exc})") from exc
    return str(info.normalized).lower()


def keys_of(
    identity: common_pb2.IdentityKeys, default_region: str | None = None
) -> list[IdentityKey]:
    """The normalised, non-empty keys of a message, in a stable order."""
    keys = []
    for field in KEY_FIELDS:
        raw = getattr(identity, field).strip()
        if not raw:
            continue
        if field == "phone":
            value = normalize_phone(raw, default_region)
        elif field == "email":
            value = normalize_email(raw)
        else:
            if len(raw) > MAX_OPAQUE_KEY or not raw.isprintable():
                raise InvalidIdentityError(
                    field, f"must be printable and at most {MAX_OPAQUE_KEY} characters"
                )
            value = raw
        keys.append(IdentityKey(field, value))
    return keys


def to_proto(keys: list[IdentityKey]) -> common_pb2.IdentityKeys:
    """The best-known key of each type (the first seen wins)."""
    message = common_pb2.IdentityKeys()
    for key in keys:
        if not getattr(message, key.key_type):
            setattr(message, key.key_type, key.value)
    return message
