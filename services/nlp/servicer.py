"""gRPC face of the nlp service."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from percept.nlp.apertium import ApertiumError
from percept.nlp.language import LanguageDetector, iso_639_1
from percept.nlp.translation import Translated, Translator, UnsupportedPairError
from percept.v1 import nlp_pb2, nlp_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
MAX_TEXT_CHARS = 10_000
MAX_TEXTS = 512  # per Translate call
AUTO = ("", "auto")


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


def language_code(code: str, field: str, known: set[str]) -> tuple[str, str | None]:
    """(ISO 639-1 code, problem): 'ES', 'spa' and 'es' are all 'es'."""
    normalised = iso_639_1(code) or code.strip().lower()
    if normalised in known or iso_639_1(code):
        return normalised, None
    return normalised, (
        f"{field}: unknown language code {code!r} (use ISO 639-1, e.g. 'es' or 'fr')"
    )


class NlpServicer(nlp_pb2_grpc.NlpServicer):
    def __init__(self) -> None:
        self.detector: LanguageDetector | None = None  # set when loaded
        self.translator: Translator | None = None

    async def _translator(self, context: Context) -> Translator:
        if self.translator is None or self.detector is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "translation is still loading")
        assert self.translator is not None
        return self.translator

    def _detect_source(self, text: str) -> str:
        """The best language for translating from: lingua's first candidate, reliable or not."""
        assert self.detector is not None
        found = self.detector.detect(text)
        return found.language or (found.candidates[0][0] if found.candidates else "")

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
        translator = await self._translator(context)
        texts = list(request.texts)
        if not texts:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "texts: empty (send one or more)")
        if len(texts) > MAX_TEXTS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"texts: {len(texts)} is over the {MAX_TEXTS}-text limit per call",
            )
        for i, text in enumerate(texts):
            problem = check_text(text, f"texts[{i}]")
            if problem:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        known = translator.languages()
        if not request.target_language.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "target_language: empty")
        target, problem = language_code(request.target_language, "target_language", known)
        source = ""
        if not problem and request.source_language.strip().lower() not in AUTO:
            source, problem = language_code(request.source_language, "source_language", known)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            if source:
                done = await asyncio.to_thread(translator.translate, texts, source, target)
                results = [(source, t) for t in done]
            else:
                results = await asyncio.to_thread(
                    translator.translate_detected, texts, target, self._detect_source
                )
        except UnsupportedPairError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except ApertiumError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return nlp_pb2.TranslateResponse(translations=[_translation(src, t) for src, t in results])

    async def ListLanguagePairs(
        self, request: nlp_pb2.ListLanguagePairsRequest, context: Context
    ) -> nlp_pb2.ListLanguagePairsResponse:
        translator = await self._translator(context)
        return nlp_pb2.ListLanguagePairsResponse(
            pairs=[
                nlp_pb2.LanguagePair(source_language=s, target_language=t, backend=b)
                for s, t, b in translator.pairs()
            ]
        )

    async def Chat(self, request: nlp_pb2.ChatTurn, context: Context) -> nlp_pb2.ChatReply:
        await _not_built(context, "Chat")
        raise AssertionError

    async def ChatStream(self, request: nlp_pb2.ChatTurn, context: Context) -> Any:
        await _not_built(context, "ChatStream")
        yield nlp_pb2.ChatReplyChunk()  # unreachable; makes this a stream handler


def _translation(source: str, done: Translated) -> nlp_pb2.Translation:
    return nlp_pb2.Translation(
        text=done.text, source_language=source, backend=done.backend, pivot_language=done.pivot
    )
