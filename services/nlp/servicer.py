"""gRPC face of the nlp service."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from percept.leads.identity import InvalidIdentityError, keys_of
from percept.leads.validation import MAX_TEXT
from percept.nlp.apertium import ApertiumError
from percept.nlp.chat_messages import (
    STATUS,
    STATUS_OF,
    ChatStates,
    changed_chat,
    chat_message,
    live_chat,
    qualification,
)
from percept.nlp.dialogue import Assistant, Reply, SessionBusyError, Turn
from percept.nlp.inbox import CLAIMED, SALESPERSON, WAITING, TakeoverError
from percept.nlp.language import LanguageDetector, iso_639_1
from percept.nlp.language_tags import LanguageTagError, check_tag, primary
from percept.nlp.metrics import NlpMetrics
from percept.nlp.sessions import SessionExpiredError, SessionNotFoundError
from percept.nlp.signals import chat_message_signal, chat_signals
from percept.nlp.takeover import Takeovers
from percept.nlp.translation import Translated, Translator, UnsupportedPairError
from percept.runtime.ratelimit import RateLimiter
from percept.understanding.messages import entity_messages, intent_messages
from percept.v1 import common_pb2, nlp_pb2, nlp_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TEXT_CHARS = 10_000
MAX_TEXTS = 512  # per Translate call
AUTO = ("", "auto")
MAX_NAME = 100  # a salesperson's name
WATCH_POLL_S = 0.5  # how often a watch reads the transcript (other replicas' messages)
WATCH_GRACE_S = 5.0  # a message may commit this long after a later one (PostgreSQL)
PRESENCE_EVERY_S = 5.0  # a salesperson's open watch says they are connected this often


def _check_salesperson(name: str) -> str | None:
    if not name.strip():
        return "salesperson: required (the name the visitor sees)"
    if len(name) > MAX_NAME or not name.isprintable():
        return f"salesperson: at most {MAX_NAME} printable characters"
    return None


def _check_session_id(session_id: str) -> str | None:
    if session_id and not _SESSION_ID.fullmatch(session_id):
        return (
            "session_id: expected up to 64 letters, digits, '-' or '_' "
            "(the id a previous reply gave)"
        )
    return None


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


def check_visitor(request: nlp_pb2.ChatTurn, phone_region: str | None) -> str | None:
    """The problem with the keys and campaign the chat's signals will carry, or None:
    leads refuses a signal whose keys do not normalise, and with it the whole chat's
    signals, after the widget has been answered."""
    try:
        keys_of(request.visitor, phone_region)
    except InvalidIdentityError as exc:
        return f"visitor.{exc.field}: {exc.reason}"
    if len(request.campaign_id) > MAX_TEXT:
        return f"campaign_id: longer than {MAX_TEXT} characters"
    return None


def language_code(code: str, field: str, known: set[str]) -> tuple[str, str | None]:
    """(ISO 639-1 code, problem): 'ES', 'spa' and 'es' are all 'es'."""
    standard = iso_639_1(code)
    normalised = standard or code.strip().lower()
    if standard or normalised in known:
        return normalised, None
    return normalised, (
        f"{field}: unknown language code {code!r} (use ISO 639-1, e.g. 'es' or 'fr')"
    )


MAX_TAG = 35  # characters of a chat's language tag (the transcript's column)


def chat_language_code(code: str, known: set[str]) -> tuple[str, str | None]:
    """(language, problem) for a chat turn's language_code: an ISO 639 code as
    `language_code` takes it ('ES', 'spa' are 'es'), or a BCP-47 tag whose language is
    known, kept with its region ('es-mx' is 'es-MX'): the visitor is answered in that
    language, with the text written for the region where the company wrote one."""
    text = code.strip()
    if "-" not in text and "_" not in text:
        return language_code(code, "language_code", known)
    try:
        tag = check_tag(text)
    except LanguageTagError as exc:
        return text, f"language_code: {exc}"
    base = primary(tag)
    standard = iso_639_1(base) or (base if base in known else None)
    if standard is None:
        return tag, (
            f"language_code: unknown language {base!r} in {code!r} "
            "(use ISO 639-1 or a BCP-47 tag, e.g. 'es' or 'es-MX')"
        )
    tag = standard + tag[len(base) :]
    if len(tag) > MAX_TAG:
        return tag, f"language_code: longer than {MAX_TAG} characters"
    return tag, None


class NlpServicer(nlp_pb2_grpc.NlpServicer):
    def __init__(self, metrics: NlpMetrics, per_session: RateLimiter) -> None:
        self.metrics = metrics
        # A chat session may not flood the assistant (each turn costs model time).
        self.per_session = per_session
        self.detector: LanguageDetector | None = None  # set when loaded
        self.translator: Translator | None = None
        self.assistant: Assistant | None = None
        self.takeovers: Takeovers | None = None
        self.publish: Callable[[common_pb2.Signal], None] | None = None
        self.phone_region: str | None = None  # for visitors' numbers without +country
        self.wrote = asyncio.Event()  # wakes this replica's watches at once

    def wake_watches(self) -> None:
        """Something was written to the transcript: this replica's watches read it now."""
        self.wrote.set()
        self.wrote = asyncio.Event()

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
        for _, translated in results:
            if translated.backend:
                self.metrics.translated.labels(translated.backend).inc()
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

    async def _chat(self, request: nlp_pb2.ChatTurn, context: Context) -> nlp_pb2.ChatReply:
        if self.assistant is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the assistant is still loading")
        assert self.assistant is not None
        problem = (
            check_text(request.text)
            or _check_session_id(request.session_id)
            or check_visitor(request, self.phone_region)
        )
        language = ""
        if not problem and request.language_code.strip():
            known = self.translator.languages() if self.translator else set()
            language, problem = chat_language_code(request.language_code, known)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        wait = self.per_session.allow(request.session_id) if request.session_id else 0.0
        if wait > 0:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"session_id: {request.session_id!r} sends more than "
                f"{self.per_session.per_minute:g} messages a minute "
                f"(PERCEPT_NLP_CHAT_PER_MINUTE); try again in {wait:.0f} s",
            )
        visitor = {f.name: v for f, v in request.visitor.ListFields() if isinstance(v, str)}
        turn = Turn(request.session_id, request.text, language, visitor, request.campaign_id)
        try:
            reply = await asyncio.to_thread(self.assistant.respond, turn)
        except SessionNotFoundError:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"session_id: no session {request.session_id!r}; send an empty session_id "
                "to start one",
            )
        except SessionExpiredError:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"session_id: session {request.session_id!r} expired after "
                f"{_duration(self.assistant.store.ttl_s)} without a message; "
                "send an empty session_id to start a new one",
            )
        except SessionBusyError as exc:
            await context.abort(grpc.StatusCode.ABORTED, f"{exc}; send it again")
        except ApertiumError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if not request.session_id:  # the opening message counts against its session
            self.per_session.allow(reply.session.id)
        self.metrics.chat_turns.labels(reply.outcome).inc()
        if reply.outcome == "handoff":
            self.metrics.handoffs.labels(reply.handoff_reason).inc()
        if self.publish is not None:
            for signal in chat_signals(reply, request.text, request.page_url):
                self.publish(signal)
        self.wake_watches()
        return chat_reply(reply)

    async def Chat(self, request: nlp_pb2.ChatTurn, context: Context) -> nlp_pb2.ChatReply:
        return await self._chat(request, context)

    async def ChatStream(
        self, request: nlp_pb2.ChatTurn, context: Context
    ) -> AsyncIterator[nlp_pb2.ChatReplyChunk]:
        """The reply's sentences as they are ready, then the whole reply."""
        reply = await self._chat(request, context)
        for piece in re.findall(r"[^.!?]+[.!?]*\s*", reply.text):
            yield nlp_pb2.ChatReplyChunk(text_delta=piece)
        yield nlp_pb2.ChatReplyChunk(reply=reply)

    # -- live takeover -------------------------------------------------------------

    async def _takeovers(self, context: Context) -> Takeovers:
        if self.takeovers is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the assistant is still loading")
        assert self.takeovers is not None
        return self.takeovers

    async def _chat_call(self, context: Context, session_id: str, salesperson: str | None) -> None:
        problem = _check_session_id(session_id) or (
            "session_id: required" if not session_id else None
        )
        if problem is None and salesperson is not None:
            problem = _check_salesperson(salesperson)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    async def _run(self, context: Context, session_id: str, work: Callable[[], Any]) -> Any:
        """A takeover step off the loop, its refusals as statuses that say why."""
        try:
            return await asyncio.to_thread(work)
        except SessionNotFoundError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session_id: no chat {session_id!r}")
        except SessionExpiredError:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session_id: chat {session_id!r} has ended (the visitor left)",
            )
        except TakeoverError as exc:  # claimed by another, or not by this salesperson
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))

    async def ListChats(
        self, request: nlp_pb2.ListChatsRequest, context: Context
    ) -> nlp_pb2.ListChatsResponse:
        takeovers = await self._takeovers(context)
        unknown = [s for s in request.statuses if s not in STATUS_OF]
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"statuses: {unknown[0]} is not a chat status"
            )
        if not 0 <= request.limit <= 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit: from 0 to 1000")
        statuses = [STATUS_OF[s] for s in request.statuses] or [WAITING, CLAIMED]
        views = await asyncio.to_thread(takeovers.chats, statuses, request.limit or 100)
        return nlp_pb2.ListChatsResponse(chats=[live_chat(v) for v in views])

    async def GetChat(self, request: nlp_pb2.GetChatRequest, context: Context) -> nlp_pb2.LiveChat:
        takeovers = await self._takeovers(context)
        await self._chat_call(context, request.session_id, None)
        view = await self._run(
            context, request.session_id, lambda: takeovers.view(request.session_id)
        )
        return live_chat(view)

    async def ClaimChat(
        self, request: nlp_pb2.ClaimChatRequest, context: Context
    ) -> nlp_pb2.LiveChat:
        return await self._hand_over(request, context, "claim")

    async def ReleaseChat(
        self, request: nlp_pb2.ReleaseChatRequest, context: Context
    ) -> nlp_pb2.LiveChat:
        return await self._hand_over(request, context, "release")

    async def _hand_over(
        self,
        request: nlp_pb2.ClaimChatRequest | nlp_pb2.ReleaseChatRequest,
        context: Context,
        step: str,
    ) -> nlp_pb2.LiveChat:
        """A salesperson takes the chat (`claim`) or gives it back (`release`)."""
        takeovers = await self._takeovers(context)
        await self._chat_call(context, request.session_id, request.salesperson)
        act = takeovers.claim if step == "claim" else takeovers.release
        view = await self._run(
            context,
            request.session_id,
            lambda: act(request.session_id, request.salesperson.strip()),
        )
        self.wake_watches()
        return live_chat(view)

    async def SendSalespersonMessage(
        self, request: nlp_pb2.SalespersonMessage, context: Context
    ) -> nlp_pb2.ChatMessage:
        takeovers = await self._takeovers(context)
        await self._chat_call(context, request.session_id, request.salesperson)
        problem = check_text(request.text)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        salesperson = request.salesperson.strip()
        session, line = await self._run(
            context,
            request.session_id,
            lambda: takeovers.send(request.session_id, salesperson, request.text),
        )
        if self.publish is not None:
            self.publish(chat_message_signal(session, SALESPERSON, request.text, salesperson))
        self.wake_watches()
        return chat_message(line)

    async def WatchChats(
        self, request: nlp_pb2.WatchChatsRequest, context: Context
    ) -> AsyncIterator[nlp_pb2.ChatEvent]:
        """Follows the transcript table: this replica's writes wake it at once, other
        replicas' are read every WATCH_POLL_S. A message that commits after a later one
        (PostgreSQL sequences) is still sent: the watch reads WATCH_GRACE_S back."""
        takeovers = await self._takeovers(context)
        session_id, salesperson = request.session_id, request.salesperson.strip()
        problem = _check_session_id(session_id) or (
            _check_salesperson(salesperson) if request.salesperson else None
        )
        if request.after_seq < 0:
            problem = "after_seq: negative"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        inbox = takeovers.inbox
        floor = request.after_seq
        if not floor and not session_id:  # every chat: from now (and the last moments again)
            floor = await asyncio.to_thread(inbox.settled_seq, WATCH_GRACE_S)
        sent: set[int] = set()
        states = ChatStates()
        if session_id:  # one chat: NOT_FOUND before the stream begins for a chat there is not
            try:
                view = await asyncio.to_thread(takeovers.view, session_id, transcript=False)
            except LookupError:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"session_id: no chat {session_id!r}"
                )
        await context.send_initial_metadata(())
        if session_id and not await asyncio.to_thread(inbox.since, floor, session_id, 1):
            # nothing to replay: the chat's state now; a replay carries its own states
            states.changed(session_id, (view.takeover.status, view.takeover.salesperson))
            yield nlp_pb2.ChatEvent(chat=live_chat(view))
        present_at = 0.0
        every = min(PRESENCE_EVERY_S, inbox.presence_s / 3)
        loop = asyncio.get_running_loop()
        while True:
            wake = self.wrote
            if salesperson and loop.time() - present_at >= every:
                await asyncio.to_thread(inbox.seen, salesperson)
                present_at = loop.time()
            lines = await asyncio.to_thread(inbox.since, floor, session_id)
            settled = inbox.clock() - WATCH_GRACE_S
            for line in lines:
                if line.seq in sent:
                    continue
                sent.add(line.seq)
                # a chat's first message, or a change
                if states.changed(line.session_id, (line.status, line.salesperson)):
                    yield nlp_pb2.ChatEvent(chat=changed_chat(line))
                yield nlp_pb2.ChatEvent(message=chat_message(line))
            old = [line.seq for line in lines if line.sent_at < settled]
            if len(lines) >= 500:  # a backlog: move on whatever its age
                old = [lines[-1].seq]
            if old:
                floor = max(floor, max(old))
                sent = {seq for seq in sent if seq > floor}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), WATCH_POLL_S)


def _translation(source: str, done: Translated) -> nlp_pb2.Translation:
    return nlp_pb2.Translation(
        text=done.text, source_language=source, backend=done.backend, pivot_language=done.pivot
    )


def chat_reply(reply: Reply) -> nlp_pb2.ChatReply:
    return nlp_pb2.ChatReply(
        session_id=reply.session.id,
        text=reply.text,
        language_code=reply.language,
        intents=intent_messages(reply.intents),
        entities=entity_messages(reply.entities),
        qualification=qualification(reply.session),
        handoff=bool(reply.handoff_reason),
        handoff_reason=reply.handoff_reason,
        sources=[
            nlp_pb2.KnowledgeSource(id=h.entry.id, title=h.entry.title, score=h.score)
            for h in reply.sources
        ],
        confidence=reply.confidence,
        text_source=reply.text_source,
        status=STATUS[reply.status],
        salesperson=reply.salesperson,
        visitor_seq=reply.visitor_seq,
        reply_seq=reply.reply_seq,
    )


def _duration(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:.0f} minutes"
