"""gRPC face of the speech service."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from faster_whisper.tokenizer import _LANGUAGE_CODES
from google.protobuf.duration_pb2 import Duration

from percept.leads.identity import InvalidIdentityError, keys_of
from percept.leads.validation import MAX_TEXT
from percept.nlp.translation import Translator, UnsupportedPairError
from percept.runtime.streams import MalformedMessageError, refuse
from percept.speech.audio import SAMPLE_RATE, AudioError, AudioTooLong
from percept.speech.backends import Utterance
from percept.speech.call_analysis import CallAnalysis
from percept.speech.call_session import CallSession
from percept.speech.call_summary import CallSummarizer
from percept.speech.categorizing import SENTIMENT_NAMES
from percept.speech.engine import SpeechEngine
from percept.speech.live_calls import CallBoard, LiveCall, WatcherOverflowError
from percept.speech.redacting import CallRedaction, Contact
from percept.speech.signals import call_signals, caller_identity, utterance_signals
from percept.speech.stream_audio import decode_all, stream_decoder
from percept.speech.streaming import StreamOptions
from percept.understanding.call_categories import Categories
from percept.understanding.classifier import Understanding
from percept.understanding.messages import entity_messages, intent_messages
from percept.understanding.redaction import (
    DEFAULT_KINDS,
    RedactionKindError,
    Redactor,
    parse_kinds,
)
from percept.v1 import common_pb2, speech_pb2, speech_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
log = logging.getLogger("percept.speech")
FINAL = speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL
CALL_SUMMARY = speech_pb2.RecognitionEvent.EVENT_TYPE_CALL_SUMMARY
SENTIMENTS = {name: value for value, name in SENTIMENT_NAMES.items()}
CUSTOMER = speech_pb2.CHANNEL_ROLE_CUSTOMER
UNSPECIFIED = speech_pb2.CHANNEL_ROLE_UNSPECIFIED


@dataclass(frozen=True)
class StreamLimits:
    max_chunk_bytes: int = 1024 * 1024
    max_stream_s: float = 4 * 3600.0
    partial_interval_s: float = 0.6
    endpoint_silence_s: float = 0.5


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


class SpeechServicer(speech_pb2_grpc.SpeechServicer):
    def __init__(
        self,
        engine: SpeechEngine | None = None,
        limits: StreamLimits | None = None,
        understanding: Understanding | None = None,
        publish: Callable[[common_pb2.Signal], None] | None = None,
    ) -> None:
        self.engine = engine  # set when the model has loaded
        self.limits = limits or StreamLimits()
        self.understanding = understanding or Understanding(None)
        self.model_name = ""  # what config.model may name
        self.publish = publish
        self.translator: Translator | None = None  # set for a multilingual model
        self.calls = CallBoard()
        self.redact: frozenset[str] = frozenset(DEFAULT_KINDS)  # for configs that say nothing
        self.contacts_as_keys = True
        self.summary_silence_s = 2.0  # silences this long count as a call's non-talk time
        self.phone_region: str | None = None  # for callers' numbers without +country
        self.categories = Categories(())  # call_categories.yaml, once loaded

    def english(self, text: str, language: str) -> str:
        """The understanding code reads English (its taxonomy, catalog and examples
        are English), so a final in another language is read in translation, by the
        same in-process translator chat uses; a pair it lacks leaves the text as is."""
        if self.translator is None or language in ("", "en"):
            return text
        try:
            (done,) = self.translator.translate([text], language, "en")
        except UnsupportedPairError:
            return text
        return done.text

    def final_event(self, index: int, u: Utterance, language: str) -> speech_pb2.RecognitionEvent:
        read = self.english(u.text, language)
        intents, feeling = self.understanding.intents_and_sentiment(read)
        event = speech_pb2.RecognitionEvent(
            intents=intent_messages(intents),
            entities=entity_messages(self.understanding.entities(read)),
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
        if feeling is not None:
            event.sentiment = SENTIMENTS[feeling.label]
            event.sentiment_score = feeling.score
        return event

    def analysis(self, config: speech_pb2.RecognitionConfig, call_id: str) -> CallAnalysis:
        """A call's analysis: redaction of its config's kinds (checked already) or the
        server's, its summary and its categories."""
        kinds = parse_kinds(config.redact) if config.redact else self.redact
        return CallAnalysis(
            CallRedaction(Redactor(kinds), self.contacts_as_keys),
            CallSummarizer(call_id, self.summary_silence_s),
            self.categories.for_call(),
        )

    def _report(
        self,
        config: speech_pb2.RecognitionConfig,
        event: speech_pb2.RecognitionEvent,
        contacts: list[Contact],
    ) -> None:
        """Signals to leads, from the customer's words only: what an agent or an IVR
        says is not the caller's interest. Without a CUSTOMER channel (a mono call)
        the unnamed channels speak for the caller. A failure here is logged, never
        felt by the call."""
        if self.publish is None or event.type != FINAL:
            return
        named = CUSTOMER in config.channel_roles
        if event.role != CUSTOMER and (named or event.role != UNSPECIFIED):
            return
        try:
            for signal in utterance_signals(config, event, contacts):
                self.publish(signal)
        except Exception:
            log.exception("could not queue speech signals", extra={"call_id": config.call_id})

    def deliver(
        self,
        config: speech_pb2.RecognitionConfig,
        call: LiveCall,
        event: speech_pb2.RecognitionEvent,
    ) -> list[speech_pb2.RecognitionEvent]:
        """What every recognition event of a call goes through, whoever carries the
        call: it is redacted, its watchers hear it, and a customer's final becomes
        signals. The caller of the stream gets the same (redacted) event, then the
        CATEGORY events of the categories it completed, which are returned."""
        contacts, found = call.analysis.event(event)
        call.recognised(event)
        self._report(config, event, contacts)
        for category in found:
            call.recognised(category)
        return found

    def end_call(
        self,
        config: speech_pb2.RecognitionConfig,
        call: LiveCall,
        reason: str,
        heard_s: float,
    ) -> speech_pb2.CallSummary:
        """The call's summary, for its watchers (the ENDED update) and its caller."""
        summary = call.analysis.summary(heard_s)
        call.end(reason, summary)
        self._report_call(config, summary)
        return summary

    def _report_call(
        self, config: speech_pb2.RecognitionConfig, summary: speech_pb2.CallSummary
    ) -> None:
        if self.publish is None:
            return
        try:
            for signal in call_signals(config, summary):
                self.publish(signal)
        except Exception:
            log.exception("could not queue call signals", extra={"call_id": config.call_id})

    def begin_call(self, config: speech_pb2.RecognitionConfig, source: str) -> LiveCall:
        roles = list(config.channel_roles) if config.separate_channel_recognition else []
        call_id = config.call_id or f"{source}-{uuid.uuid4().hex[:12]}"
        return self.calls.begin(
            call_id,
            source,
            roles,
            config.campaign_id,
            analysis=self.analysis(config, call_id),
        )

    def options(self, config: speech_pb2.RecognitionConfig) -> StreamOptions:
        return StreamOptions(
            interim_results=config.interim_results,
            language=_language(config),
            partial_interval_s=self.limits.partial_interval_s,
            endpoint_silence_s=self.limits.endpoint_silence_s,
        )

    def check_config(self, config: speech_pb2.RecognitionConfig) -> None:
        """Raises AudioError naming what the engine cannot do for this config."""
        if self.engine is None:
            raise AudioError("the speech model is still loading")
        self._check_model(config, self.engine)

    def _check_model(self, config: speech_pb2.RecognitionConfig, engine: SpeechEngine) -> None:
        try:
            parse_kinds(config.redact, field="config.redact")
        except RedactionKindError as exc:
            raise AudioError(str(exc)) from None
        self._check_caller(config)
        if config.model and config.model != self.model_name:
            raise AudioError(
                f"config.model: {config.model!r} is not served here; this server runs "
                f"{self.model_name!r} (leave it empty for the default)"
            )
        code = config.language_code.strip()
        if code not in ("", "auto") and not BCP47.fullmatch(code):
            raise AudioError(f"config.language_code: {code!r} is not a BCP-47 code such as 'en'")
        language = _language(config)
        if language not in (None, "en") and engine.transcriber.english_only:
            raise AudioError(
                f"config.language_code: {code!r}, but {self.model_name} understands English "
                "only; send 'en' or 'auto', or serve a multilingual model"
            )
        if language is not None and language not in WHISPER_LANGUAGES:
            raise AudioError(
                f"config.language_code: {code!r} is not one of the {len(WHISPER_LANGUAGES)} "
                f"languages {self.model_name} speaks (Whisper's: {', '.join(WHISPER_LANGUAGES)})"
            )

    def _check_caller(self, config: speech_pb2.RecognitionConfig) -> None:
        """The keys and campaign the call's signals will carry: leads refuses a signal
        whose keys do not normalise, and with it every word of the call, after the
        caller has been told OK."""
        try:
            keys_of(caller_identity(config), self.phone_region)
        except InvalidIdentityError as exc:
            field = "call_id" if exc.field == "call_id" else f"caller.{exc.field}"
            raise AudioError(f"config.{field}: {exc.reason}") from None
        if len(config.campaign_id) > MAX_TEXT:
            raise AudioError(f"config.campaign_id: longer than {MAX_TEXT} characters")

    async def _engine(self, context: Context) -> SpeechEngine:
        if self.engine is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the speech model is still loading")
        assert self.engine is not None
        return self.engine

    async def Recognize(
        self, request: speech_pb2.RecognizeRequest, context: Context
    ) -> speech_pb2.RecognizeResponse:
        engine = await self._engine(context)
        config = request.config
        try:
            self._check_model(config, engine)
            audio = await asyncio.to_thread(
                decode_all, config, request.audio_content, self.limits.max_stream_s
            )
        except AudioTooLong as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except AudioError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        utterances, detected, _ = await engine.transcribe(audio, _language(config))
        results = await asyncio.to_thread(
            lambda: [self.final_event(i, u, detected) for i, u in enumerate(utterances)]
        )
        analysis = self.analysis(config, config.call_id)
        for event in results:
            contacts, _ = analysis.event(event)  # the categories are in the summary
            self._report(config, event, contacts)
        summary = analysis.summary(len(audio) / SAMPLE_RATE)
        self._report_call(config, summary)
        return speech_pb2.RecognizeResponse(
            results=results,
            language_code=detected,
            audio_duration=_duration(len(audio) / SAMPLE_RATE),
            summary=summary,
        )

    async def StreamingRecognize(
        self,
        request_iterator: AsyncIterator[speech_pb2.StreamingRecognizeRequest],
        context: Context,
    ) -> AsyncIterator[speech_pb2.RecognitionEvent]:
        engine = await self._engine(context)
        requests = aiter(request_iterator)
        try:
            first = await anext(requests, None)
        except MalformedMessageError as exc:
            await refuse(context, request_iterator, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if first is None or first.WhichOneof("request") != "config":
            got = (
                "nothing"
                if first is None
                else "audio_content"
                if first.WhichOneof("request")
                else "a message with neither config nor audio_content"
            )
            await refuse(
                context,
                requests,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the first message must carry config (got {got}); audio follows it",
            )
        assert first is not None
        config = first.config
        try:
            self._check_model(config, engine)
            decoder = stream_decoder(config)
        except AudioError as exc:
            await refuse(context, requests, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        options = self.options(config)
        session = CallSession(
            engine,
            decoder,
            options,
            self.final_event,
            roles=config.channel_roles,
            separate_channels=config.separate_channel_recognition,
        )
        call = self.begin_call(config, "grpc")
        ended = "dropped"
        try:
            chunks = 0
            async for request in requests:
                chunks += 1
                if request.WhichOneof("request") != "audio_content":
                    await refuse(
                        context,
                        requests,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"message {chunks + 1}: config may only be sent once, as the first "
                        "message; later messages carry audio_content",
                    )
                if len(request.audio_content) > self.limits.max_chunk_bytes:
                    await refuse(
                        context,
                        requests,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"message {chunks + 1}: audio_content of {len(request.audio_content)} "
                        f"bytes is over the {self.limits.max_chunk_bytes}-byte chunk limit; "
                        "send smaller chunks",
                    )
                if session.received_s > self.limits.max_stream_s:
                    await refuse(
                        context,
                        requests,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the stream is over {self.limits.max_stream_s:.0f} s of audio; "
                        "start a new stream",
                    )
                async for event in session.feed(request.audio_content):
                    found = self.deliver(config, call, event)
                    yield event
                    for category in found:
                        yield category
            if context.cancelled():  # the client went away: nothing to finish for
                return
            async for event in session.finish():
                found = self.deliver(config, call, event)
                yield event
                for category in found:
                    yield category
            ended = "completed"
            summary = self.end_call(config, call, ended, session.received_s)
            yield speech_pb2.RecognitionEvent(type=CALL_SUMMARY, summary=summary)
        except AudioError as exc:
            ended = "error"
            await refuse(context, requests, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except MalformedMessageError as exc:
            ended = "error"
            await refuse(context, request_iterator, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            session.close()
            if not call.ended:  # dropped or refused: the watchers still get what was heard
                self.end_call(config, call, ended, session.received_s)

    async def WatchCalls(
        self, request: speech_pb2.WatchCallsRequest, context: Context
    ) -> AsyncIterator[speech_pb2.CallUpdate]:
        if request.intent != request.intent.strip() or len(request.intent) > 64:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"intent: {request.intent[:80]!r} is not an intent name such as 'purchase_intent'",
            )
        if request.role not in speech_pb2.ChannelRole.values():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"role: {request.role} is not a ChannelRole "
                f"({', '.join(speech_pb2.ChannelRole.keys())})",
            )
        watcher = self.calls.watch(request)
        try:
            await context.send_initial_metadata(())  # watching: see WatchLeads
            async for update in watcher.updates():
                yield update
        except WatcherOverflowError:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"watcher fell more than {self.calls.capacity} updates behind; watch again",
            )
        finally:
            self.calls.unwatch(watcher)


# Whisper's languages (ISO 639-1 and a few others such as "haw", "yue").
WHISPER_LANGUAGES = tuple(sorted(_LANGUAGE_CODES))
BCP47 = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")


def _language(config: speech_pb2.RecognitionConfig) -> str | None:
    """Whisper's language: the primary subtag ("pt-BR" -> "pt"), or None to detect."""
    language = config.language_code.strip()
    return None if language in ("", "auto") else language.split("-")[0].lower()
