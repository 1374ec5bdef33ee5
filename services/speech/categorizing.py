"""A call's finals as the category rules read them, and a match as an event.

Live calls are categorised as their finals come; a past call (the JSON events
`percept transcribe --json` prints, or any list of RecognitionEvent in protobuf's
JSON mapping) is read back into the same finals for `percept calls categorize`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf.json_format import ParseDict, ParseError

from percept.understanding.call_categories import Final, Match
from percept.v1 import common_pb2, speech_pb2

FINAL = speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL
CATEGORY = speech_pb2.RecognitionEvent.EVENT_TYPE_CATEGORY
ROLE_NAMES = {
    speech_pb2.CHANNEL_ROLE_CUSTOMER: "customer",
    speech_pb2.CHANNEL_ROLE_AGENT: "agent",
    speech_pb2.CHANNEL_ROLE_UNSPECIFIED: "unspecified",
}
SENTIMENT_NAMES = {
    common_pb2.SENTIMENT_POSITIVE: "positive",
    common_pb2.SENTIMENT_NEUTRAL: "neutral",
    common_pb2.SENTIMENT_NEGATIVE: "negative",
}


def final_of(event: speech_pb2.RecognitionEvent) -> Final:
    return Final(
        index=event.utterance_index,
        channel=event.channel,
        role=ROLE_NAMES.get(event.role, "unspecified"),
        text=event.transcript,
        start=event.start_offset.ToNanoseconds() / 1e9,
        end=event.end_offset.ToNanoseconds() / 1e9,
        intents=frozenset(i.name for i in event.intents),
        sentiment=SENTIMENT_NAMES.get(event.sentiment, ""),
    )


def category_event(match: Match, final: speech_pb2.RecognitionEvent) -> speech_pb2.RecognitionEvent:
    found = speech_pb2.CategoryMatch(
        name=match.category.name,
        description=match.category.description,
        utterance_index=final.utterance_index,
        channel=final.channel,
        role=final.role,
    )
    found.offset.CopyFrom(final.start_offset)
    return speech_pb2.RecognitionEvent(
        type=CATEGORY,
        utterance_index=final.utterance_index,
        channel=final.channel,
        role=final.role,
        start_offset=final.start_offset,
        end_offset=final.end_offset,
        category=found,
    )


class CallFileError(ValueError):
    """A past call's file that is not a list of recognition events; says where."""


def finals_from_json(text: str, source: str) -> list[Final]:
    """The finals of a call kept as JSON: one array of events, or one event a line."""
    stripped = text.strip()
    try:
        if stripped.startswith("["):
            items: Iterable[Any] = json.loads(stripped)
            numbered = list(enumerate(items, 1))
        else:
            numbered = [
                (n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()
            ]
    except json.JSONDecodeError as exc:
        raise CallFileError(f"{source}: not JSON ({exc})") from None
    finals = []
    for number, item in numbered:
        if not isinstance(item, dict):
            raise CallFileError(f"{source}: event {number} is not an object")
        if isinstance(item.get("role"), str) and not item["role"].startswith("CHANNEL_ROLE_"):
            item = {**item, "role": "CHANNEL_ROLE_" + item["role"].upper()}
        try:
            event = ParseDict(item, speech_pb2.RecognitionEvent(), ignore_unknown_fields=True)
        except ParseError as exc:
            raise CallFileError(f"{source}: event {number}: {exc}") from None
        if event.type == FINAL:
            finals.append(final_of(event))
    if not finals:
        raise CallFileError(f"{source}: no FINAL events in it")
    return finals
