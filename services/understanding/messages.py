"""Intents and entities as protobuf messages (speech finals, chat replies)."""

from __future__ import annotations

from percept.understanding.entities import EntityMatch
from percept.understanding.intents import IntentMatch
from percept.v1 import common_pb2

METHODS = {
    "rule": common_pb2.Intent.METHOD_RULE,
    "classifier": common_pb2.Intent.METHOD_CLASSIFIER,
}


def intent_messages(intents: list[IntentMatch]) -> list[common_pb2.Intent]:
    return [
        common_pb2.Intent(name=i.name, confidence=i.confidence, method=METHODS[i.method])
        for i in intents
    ]


def entity_messages(entities: list[EntityMatch]) -> list[common_pb2.Entity]:
    return [
        common_pb2.Entity(
            type=e.type,
            text=e.text,
            normalized_value=e.normalized,
            start_char=e.start,
            end_char=e.end,
            confidence=e.confidence,
        )
        for e in entities
    ]
