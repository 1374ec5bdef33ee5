"""API keys with scopes: which key may call which method.

`PERCEPT_API_KEYS` lists keys, each optionally with its scopes after a colon
(`KEY` has every scope, `KEY:ingest` may only send signals, `KEY:read+admin`...).
A perception service's key needs `ingest` on leads; the console's needs `read`
(and `admin` to erase, `respond` for salespeople to answer chats and complete
follow-ups); a
call-center system's needs `perceive`. Every method of
every service has a scope here, and a method that has none (a new RPC someone
forgot to classify) needs `admin`: closed by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

SCOPES = ("perceive", "ingest", "read", "respond", "admin")
MIN_KEY_LENGTH = 16
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)  # load balancers and kubelets need no key

_BY_SERVICE: dict[str, dict[str, tuple[str, ...]]] = {
    "percept.v1.Speech": {
        "perceive": ("StreamingRecognize", "Recognize"),
        "read": ("WatchCalls",),  # live transcripts: what an agent-assist panel shows
    },
    "percept.v1.Vision": {
        "perceive": ("Detect", "StreamFrames"),
        "read": ("ListCameras", "GetCameraView", "GetFootfall"),
        "admin": ("Enroll", "ForgetVisitor"),  # biometric data of consenting visitors
    },
    "percept.v1.Nlp": {
        "perceive": ("DetectLanguage", "Translate", "ListLanguagePairs", "Chat", "ChatStream"),
        "read": ("ListChats", "GetChat", "WatchChats"),
        # a salesperson answering chats in the assistant's place
        "respond": ("ClaimChat", "ReleaseChat", "SendSalespersonMessage"),
    },
    "percept.v1.Leads": {
        "ingest": ("Ingest", "IngestBatch"),
        "read": (
            "GetLead",
            "ListLeads",
            "WatchLeads",
            "ExplainScore",
            "ListSegments",
            "CampaignReport",
            "ListMergeSuggestions",
            "ListFollowUps",
            "SuggestMessage",
            "ListOpportunities",
            "FollowUpBacklog",
        ),
        # a salesperson working through the day's follow-ups
        "respond": ("CompleteFollowUp", "SnoozeFollowUp"),
        "admin": ("MergeLeads", "SplitLead", "ForgetLead", "DismissMergeSuggestion"),
    },
    "grpc.reflection.v1alpha.ServerReflection": {"read": ("ServerReflectionInfo",)},
    "grpc.reflection.v1.ServerReflection": {"read": ("ServerReflectionInfo",)},
}
METHOD_SCOPES: dict[str, str] = {
    f"/{service}/{method}": scope
    for service, scopes in _BY_SERVICE.items()
    for scope, methods in scopes.items()
    for method in methods
}


def required_scope(method: str) -> str | None:
    """The scope a full method name needs; None for the open ones (health)."""
    if method.startswith(OPEN_METHOD_PREFIXES):
        return None
    return METHOD_SCOPES.get(method, "admin")


@dataclass(frozen=True)
class ApiKey:
    secret: str
    scopes: frozenset[str]


def parse_api_key(entry: str, number: int = 1) -> ApiKey:
    """`KEY` or `KEY:scope+scope`; errors name the key by its position, never its text."""
    secret, colon, listed = entry.strip().partition(":")
    if len(secret) < MIN_KEY_LENGTH:
        raise ValueError(
            f"API keys must be at least {MIN_KEY_LENGTH} characters (key #{number} is not)"
        )
    if not colon:
        return ApiKey(secret, frozenset(SCOPES))
    scopes = frozenset(s.strip() for s in listed.split("+") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(
            f"API key #{number}: scopes {listed!r} are not a '+'-separated list of "
            f"{', '.join(SCOPES)}"
        )
    return ApiKey(secret, scopes)


def bearer_token(authorization: str) -> str | None:
    """The key in an `authorization: Bearer <key>` value; None for any other scheme."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def own_key(entries: Sequence[str]) -> str | None:
    """The key this process presents when it calls another service: the first one."""
    return parse_api_key(entries[0]).secret if entries else None


class KeyRing:
    """The configured keys; a lookup compares with every key, so timing reveals none."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.keys = [parse_api_key(e, i + 1) for i, e in enumerate(entries)]
        self._secrets = [k.secret.encode() for k in self.keys]

    def __bool__(self) -> bool:
        return bool(self.keys)

    def find(self, given: str) -> ApiKey | None:
        secret = given.encode()
        matches = [hmac.compare_digest(secret, candidate) for candidate in self._secrets]
        return next((k for k, hit in zip(self.keys, matches, strict=True) if hit), None)
