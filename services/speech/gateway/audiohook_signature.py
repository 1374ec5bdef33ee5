"""AudioHook's request signature: HTTP Message Signatures (RFC 9421), hmac-sha256.

Genesys signs the WebSocket upgrade with the integration's client secret:
`Signature-Input` lists the covered components and the parameters
(keyid = the X-API-KEY, a nonce, created/expires), `Signature` holds the
HMAC of the signature base. The base is rebuilt here from the parsed input
(never from the raw header), every component Genesys covers must be
covered, and a signature lives 10 s (3 s clock skew).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item

from percept.speech.gateway.errors import AuthError

REQUIRED = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
MAX_AGE_S = 10
CLOCK_SKEW_S = 3
MIN_NONCE = 22
PARAMETERS = {"alg", "created", "expires", "keyid", "nonce"}


def _field(headers: Callable[[str], list[str]], name: str) -> str | None:
    """A header's value as RFC 9421 covers it: values trimmed, repeats joined."""
    values = [v.strip() for v in headers(name)]
    return ", ".join(values) if values else None


def _parse(value: str, name: str) -> Dictionary:
    parsed = Dictionary()
    try:
        parsed.parse(value.encode())
    except ValueError:
        raise AuthError(f"the {name} header is not a structured dictionary") from None
    return parsed


def verify(
    headers: Callable[[str], list[str]],
    request_target: str,
    secret: bytes,
    api_key: str,
    *,
    now: float | None = None,
) -> None:
    """Raises AuthError saying what is wrong with the upgrade request's signature.

    `headers(name)` gives every value of a header (case-insensitive);
    `request_target` is the path with its query, as the request line has it."""
    given_input = _field(headers, "signature-input")
    given_signature = _field(headers, "signature")
    if not given_input or not given_signature:
        raise AuthError("the request is not signed (Signature-Input and Signature headers)")
    inputs = _parse(given_input, "Signature-Input")
    signatures = _parse(given_signature, "Signature")
    if len(inputs) == 0:
        raise AuthError("Signature-Input holds no signature")
    label = next(iter(inputs))
    signed = inputs[label]
    signature = signatures.get(label)
    if not isinstance(signed, InnerList):
        raise AuthError("Signature-Input: a signature's components are not an inner list")
    if not isinstance(signature, Item) or not isinstance(signature.value, bytes):
        raise AuthError(f"Signature holds no byte sequence for {label!r}")
    params = dict(signed.params)
    unknown = set(params) - PARAMETERS
    if unknown:
        raise AuthError(f"Signature-Input: unknown parameter {sorted(unknown)[0]!r}")
    if params.get("alg", "hmac-sha256") != "hmac-sha256":
        raise AuthError("Signature-Input: alg must be hmac-sha256")
    if params.get("keyid") != api_key:
        raise AuthError("Signature-Input: keyid is not the X-API-KEY")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE:
        raise AuthError(f"Signature-Input: nonce is missing or under {MIN_NONCE} characters")
    _check_time(params, time.time() if now is None else now)
    lines = []
    covered = set()
    for component in signed:
        name = component.value
        if not isinstance(name, str) or len(component.params):
            raise AuthError("Signature-Input: a component is not a plain name")
        if name in covered or name == "@signature-params":
            raise AuthError(f"Signature-Input: {name!r} is covered twice or may not be")
        if name == "@request-target":
            value: str | None = request_target
        elif name == "@authority":
            value = (_field(headers, "host") or "").lower() or None
        elif name.startswith("@"):
            raise AuthError(f"Signature-Input: derived component {name!r} is not taken here")
        else:
            value = _field(headers, name)
        if value is None:
            raise AuthError(f"Signature-Input covers {name!r}, which the request lacks")
        covered.add(name)
        lines.append(f'"{name}": {value}')
    missing = [name for name in REQUIRED if name not in covered]
    if missing:
        raise AuthError(f"the signature does not cover {missing[0]!r}")
    lines.append(f'"@signature-params": {signed}')
    expected = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature.value):
        raise AuthError("the signature does not match the client secret")


def _check_time(params: dict[str, object], now: float) -> None:
    created, expires = params.get("created"), params.get("expires")
    if not isinstance(created, int) or isinstance(created, bool):
        raise AuthError("Signature-Input: created is missing")
    if created > now + CLOCK_SKEW_S:
        raise AuthError("Signature-Input: created is in the future")
    if created + MAX_AGE_S + CLOCK_SKEW_S < now:
        raise AuthError(f"the signature is older than {MAX_AGE_S} s")
    if isinstance(expires, int) and expires + CLOCK_SKEW_S < now:
        raise AuthError("the signature has expired")


def sign(
    headers: dict[str, str],
    request_target: str,
    secret: bytes,
    api_key: str,
    *,
    nonce: str,
    created: int,
    label: str = "sig1",
) -> dict[str, str]:
    """The Signature-Input and Signature headers Genesys would add (for tests and
    the `percept` client that replays calls)."""
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    components = InnerList([Item(name) for name in REQUIRED])
    components.params.update(
        keyid=api_key, nonce=nonce, alg="hmac-sha256", created=created, expires=created + 10
    )
    lines = []
    for name in REQUIRED:
        if name == "@request-target":
            value = request_target
        elif name == "@authority":
            value = lower["host"].lower()
        else:
            value = lower[name]
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {components}')
    digest = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).digest()
    return {
        "Signature-Input": f"{label}={components}",
        "Signature": f"{label}=:{base64.b64encode(digest).decode()}:",
    }
