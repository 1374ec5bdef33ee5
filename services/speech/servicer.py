"""gRPC face of the speech service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from percept.speech.audio import SAMPLE_RATE, AudioError, decode
from percept.speech.backends import Transcriber, Utterance
from percept.understanding.entities import extract_entities
from percept.understanding.intents import tag_intents
from percept.v1 import common_pb2, speech_pb2, speech_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
FINAL = speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def understand(text: str) -> tuple[list[common_pb2.Intent], list[common_pb2.Entity]]:
    """Intents and entities of a final utterance (shared with the nlp service)."""
    intents = [
        common_pb2.Intent(
            name=i.name, confidence=i.confidence, method=common_pb2.Intent.METHOD_RULE
        )
        for i in tag_intents(text)
    ]
    entities = [
        common_pb2.Entity(
            type=e.type,
            text=e.text,
            normalized_value=e.normalized,
            start_char=e.start,
            end_char=e.end,
            confidence=e.confidence,
        )
        for e in extract_entities(text)
    ]
    return intents, entities


def final_event(index: int, u: Utterance, language: str) -> speech_pb2.RecognitionEvent:
    intents, entities = understand(u.text)
    return speech_pb2.RecognitionEvent(
        intents=intents,
        entities=entities,
        type=FINAL,
        utterance_index=index,
        transcript=u.text,
        confidence=u.confidence,
        language_code=language,
        start_offset=_duration(u.start),
        end_offset=_duration(u.end),
        words=[
            speech_pb2.WordInfo(
                word=w.text,
                start_offset=_duration(w.start),
                end_offset=_duration(w.end),
                confidence=w.probability,
            )
            for w in u.words
        ],
    )


class SpeechServicer(speech_pb2_grpc.SpeechServicer):
    def __init__(self, transcriber: Transcriber | None = None) -> None:
        self.transcriber = transcriber  # set when the model has loaded

    async def Recognize(
        self, request: speech_pb2.RecognizeRequest, context: Context
    ) -> speech_pb2.RecognizeResponse:
        if self.transcriber is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the speech model is still loading")
        assert self.transcriber is not None
        config = request.config
        try:
            audio = await asyncio.to_thread(decode, config, request.audio_content)
        except AudioError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        language = config.language_code.strip()
        utterances, detected = await asyncio.to_thread(
            self.transcriber.transcribe, audio, None if language in ("", "auto") else language
        )
        results = await asyncio.to_thread(
            lambda: [final_event(i, u, detected) for i, u in enumerate(utterances)]
        )
        return speech_pb2.RecognizeResponse(
            results=results,
            language_code=detected,
            audio_duration=_duration(len(audio) / SAMPLE_RATE),
        )

    async def StreamingRecognize(
        self,
        request_iterator: AsyncIterator[speech_pb2.StreamingRecognizeRequest],
        context: Context,
    ) -> AsyncIterator[speech_pb2.RecognitionEvent]:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "percept.v1.Speech/StreamingRecognize is not implemented yet in this build; "
            "use Recognize for whole recordings",
        )
        yield speech_pb2.RecognitionEvent()  # type: ignore[unreachable]  # makes this a generator
