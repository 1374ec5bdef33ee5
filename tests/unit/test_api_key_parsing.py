"""API-key scopes: parsing, and a scope for every method of every service."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from percept.runtime.auth import (
    METHOD_SCOPES,
    SCOPES,
    KeyRing,
    own_key,
    parse_api_key,
    required_scope,
)
from percept.runtime.settings import Settings
from percept.v1 import leads_pb2, nlp_pb2, speech_pb2, vision_pb2

SECRET = "s" * 24


def test_every_method_of_every_service_has_a_scope() -> None:
    for module in (speech_pb2, vision_pb2, nlp_pb2, leads_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                name = f"/{service.full_name}/{method.name}"
                assert name in METHOD_SCOPES, f"{name} has no scope in percept.runtime.auth"
    assert set(METHOD_SCOPES.values()) == set(SCOPES)


def test_scopes_of_some_methods_and_the_closed_default() -> None:
    assert required_scope("/percept.v1.Leads/IngestBatch") == "ingest"
    assert required_scope("/percept.v1.Leads/ForgetLead") == "admin"
    assert required_scope("/percept.v1.Vision/GetCameraView") == "read"
    assert required_scope("/percept.v1.Speech/Recognize") == "perceive"
    assert required_scope("/grpc.health.v1.Health/Check") is None
    assert required_scope("/percept.v1.Leads/SomethingNew") == "admin"


def test_keys_with_and_without_scopes() -> None:
    assert parse_api_key(SECRET).scopes == frozenset(SCOPES)
    assert parse_api_key(f"{SECRET}:ingest").scopes == {"ingest"}
    assert parse_api_key(f"{SECRET}:read+admin").scopes == {"read", "admin"}
    assert own_key([f"{SECRET}:ingest", "t" * 20]) == SECRET
    assert own_key([]) is None
    ring = KeyRing([f"{SECRET}:ingest", "t" * 20])
    found = ring.find(SECRET)
    assert found is not None and found.scopes == {"ingest"}
    assert ring.find("t" * 20) is not None
    assert ring.find("u" * 20) is None and ring.find("") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("short:read", "at least 16 characters (key #2 is not)"),
        (f"{SECRET}:reed", "API key #2: scopes 'reed' are not"),
        (f"{SECRET}:", "API key #2: scopes '' are not"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(entry: str, message: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        Settings(api_keys=["k" * 20, entry])
    assert message in str(excinfo.value)
    assert SECRET not in str(excinfo.value)
