"""gRPC face of the nlp service."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from percept.nlp.language import LanguageDetector
from percept.v1 import nlp_pb2, nlp_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
MAX_TEXT_CHARS = 10_000


async def _not_built(context: Context, method: str) -> None:
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        f"percept.v1.Nlp/{method} is not implemented yet in this build",
    )


def check_text(text: str, field: str = "text") -> str | None:
    """The problem with a text, or None: empty, too long or control characters."""
    if not text.strip():
        return f"{field}: empty (send the visitor's words)"
    if len(text) > MAX_TEXT_CHARS:
        return f"{field}: {len(text)} characters is over the {MAX_TEXT_CHARS}-character limit"
    bad = next((c for c in text if ord(c) < 32 and c not in "\t\n\r"), None)
    if bad is not None:
        return f"{field}: control character U+{ord(bad):04X} at {text.index(bad)}"
    return None


class NlpServicer(nlp_pb2_grpc.NlpServicer):
    def __init__(self) -> None:
        self.detector: LanguageDetector | None = None  # set when loaded

    async def DetectLanguage(
        self, request: nlp_pb2.DetectLanguageRequest, context: Context
    ) -> nlp_pb2.DetectLanguageResponse:
        if self.detector is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "language models are still loading")
        assert self.detector is not None
        problem = check_text(request.text)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        found = await asyncio.to_thread(self.detector.detect, request.text)
        return nlp_pb2.DetectLanguageResponse(
            language_code=found.language,
            confidence=found.confidence,
            reliable=found.reliable,
            candidates=[
                nlp_pb2.LanguageCandidate(language_code=code, confidence=value)
                for code, value in found.candidates
            ],
        )

    async def Translate(
        self, request: nlp_pb2.TranslateRequest, context: Context
    ) -> nlp_pb2.TranslateResponse:
        await _not_built(context, "Translate")
        raise AssertionError  # unreachable: abort raises

    async def ListLanguagePairs(
        self, request: nlp_pb2.ListLanguagePairsRequest, context: Context
    ) -> nlp_pb2.ListLanguagePairsResponse:
        await _not_built(context, "ListLanguagePairs")
        raise AssertionError

    async def Chat(self, request: nlp_pb2.ChatTurn, context: Context) -> nlp_pb2.ChatReply:
        await _not_built(context, "Chat")
        raise AssertionError

    async def ChatStream(self, request: nlp_pb2.ChatTurn, context: Context) -> Any:
        await _not_built(context, "ChatStream")
        yield nlp_pb2.ChatReplyChunk()  # unreachable; makes this a stream handler
