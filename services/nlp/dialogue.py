"""The chat assistant: one visitor message in, one grounded reply out.

A turn: detect the language, translate the message to English, read intents and
entities with the understanding shared with speech, fill qualification slots,
answer from the knowledge base when a match is confident (otherwise ask to
clarify, and after repeated misses offer a human), and ask the next qualifying
question. Each piece of the reply is said in the visitor's language as the
company wrote it (knowledge answers and prompts per language); only a piece
with no text in that language is machine-translated, and the reply says which
happened. Replies only ever quote the company's knowledge or its prompts:
nothing is invented.

Any replica may run any turn, and two may run turns of one chat at once (a visitor's
message on one, a salesperson's claim or another message on another). A turn reads
the session and the chat's owner, works out its reply, and then records the session,
the visitor's message and the reply in one transaction that locks the chat first and
writes the session only if it is as the turn read it. When another replica changed
either meanwhile, nothing is written and the turn runs again on what is there now: a
chat claimed meanwhile gets the visitor's message for the salesperson and no reply
from the assistant; a chat released meanwhile gets the assistant's answer; another
turn's slots are kept.
"""

from __future__ import annotations

import re
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import Connection

from percept.nlp.inbox import ASSISTANT, BOT, CLAIMED, VISITOR, ChatInbox, Said, Takeover
from percept.nlp.knowledge import Hit, KnowledgeBase, knowledge_file
from percept.nlp.language import Detection, chat_language, telling_words, without_addresses
from percept.nlp.language_tags import primary
from percept.nlp.prompts import PromptBook, Prompts, load_prompts
from percept.nlp.qualification import SLOTS, Qualification, Slot
from percept.nlp.sessions import SessionStore, Stored
from percept.nlp.translation import Translator, UnsupportedPairError
from percept.understanding.classifier import Understanding
from percept.understanding.entities import EntityMatch, extract_entities
from percept.understanding.intents import IntentMatch

if TYPE_CHECKING:
    from percept.nlp.language import LanguageDetector
    from percept.runtime.settings import Settings

ENGLISH = "en"
CLARIFY_BAND = 0.1  # below the threshold by less than this: "do you mean ...?"
AMBIGUOUS_MARGIN = 0.03  # two entries this close: ask which one
MISSES_BEFORE_HANDOFF = 2
QUESTION_INTENTS = {"price_inquiry", "product_question", "support_request"}
_QUESTION = re.compile(
    r"\?|^\s*(what|which|how|when|where|who|why|is|are|do|does|can|could|would|will|should)\b",
    re.IGNORECASE,
)
_WANTS_HUMAN = re.compile(
    r"\b(human|real person|a person|an agent|sales ?(?:rep|representative|person|team)|"
    r"representative|someone (?:real|from sales)|talk to someone|speak to someone|"
    r"speak with someone|operator)\b",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|hola|bonjour|hallo|ciao|ol[aá]|good (?:morning|afternoon|evening))\b"
    r"[\s!.,]*$",
    re.IGNORECASE,
)

# Slots whose value is the visitor's free text: kept in their words too ("directora de compras")
WORDED_SLOTS = ("need", "decision_role", "timeline")
_CLAUSE = re.compile(r",\s|;\s|\s(?:and|y|e|et|und|mais|but|pero)\s", re.IGNORECASE)
NATIVE, MACHINE, MIXED = "native", "machine_translation", "mixed"
# A turn that finds its chat changed by another replica when it records runs again, this
# many times at most (each time, another turn of the same chat or a claim got in first).
ATTEMPTS = 8
# Placeholders filled with a person's name: said as written, never machine-translated
# ("Rose" is not "La rosa"). The others ({title}, {first}, {second}) are English text.
NAME_FIELDS = frozenset({"name", "salesperson"})
# Stand-ins for the placeholders while a prompt is machine-translated: names Apertium
# knows as names, so it keeps them and the grammar around them (tests/integration/
# test_nlp_chat.py checks them on the installed pairs).
STAND_INS = ("David", "Laura", "Peter", "Maria", "Alex")


@dataclass
class _Plan:
    """How a machine-translated prompt is put together (Assistant._translate_pieces)."""

    template: str
    stand_ins: dict[str, str]  # placeholder: the name standing in for it
    at: int  # the masked template's place among the texts translated
    values: dict[str, str] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # placeholder: its text's place


class SessionBusyError(RuntimeError):
    """Other turns of the session kept getting in first (ATTEMPTS times)."""


class _Changed(Exception):
    """The chat or its session changed since the turn read them: nothing was written."""


class Phraser(Protocol):
    def phrase(self, question: str, facts: str) -> str | None:
        """The facts reworded for the question, or None to send them as written."""
        ...


@dataclass
class Session:
    id: str
    language: str = ""
    # the language was decided (said by the widget, or detected with confidence), not
    # English for want of anything better: a chat that is sure switches only on a sentence
    language_sure: bool = False
    qualification: Qualification = field(default_factory=Qualification)
    asked: str | None = None  # the slot the last reply asked about
    misses: int = 0  # consecutive questions the knowledge could not answer
    handoff_reason: str = ""
    product: str = ""  # what the conversation is about, for follow-ups ("how much is it?")
    visitor: dict[str, str] = field(default_factory=dict)
    campaign_id: str = ""

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Session:
        q = state["qualification"]
        known = Slot.__dataclass_fields__
        qualification = Qualification(
            slots={
                name: Slot(**{k: v for k, v in q["slots"].get(name, {}).items() if k in known})
                for name in SLOTS
            },
            asked=dict(q["asked"]),
            interested=bool(q["interested"]),
        )
        fields = {k: v for k, v in state.items() if k in cls.__dataclass_fields__}
        fields.setdefault("language_sure", bool(state.get("language")))  # older sessions
        return cls(**{**fields, "qualification": qualification})


@dataclass(frozen=True)
class Turn:
    session_id: str
    text: str
    language: str = ""
    visitor: dict[str, str] = field(default_factory=dict)  # identity keys the widget knows
    campaign_id: str = ""


@dataclass
class Reply:
    session: Session
    text: str
    language: str
    intents: list[IntentMatch]
    entities: list[EntityMatch]
    filled: dict[str, Slot]  # slots this turn filled or changed
    sources: list[Hit]
    confidence: float
    handoff_reason: str = ""
    new_session: bool = False
    # answered, clarify, not_understood, handoff, greeting or acknowledged
    outcome: str = "acknowledged"
    text_source: str = NATIVE  # native, machine_translation or mixed
    status: str = ASSISTANT  # who has the chat after this turn (inbox.STATUSES)
    salesperson: str = ""
    visitor_seq: int = 0  # the visitor's message and the reply in the chat's transcript
    reply_seq: int = 0


@dataclass(frozen=True)
class Piece:
    """A piece of a reply: the English, and the visitor's language as written (or None).
    A prompt also keeps its English template and what fills it, so machine translation
    translates the template around its names and puts them in after."""

    english: str
    native: str | None
    template: str = ""
    # (placeholder, English value, value as written in the visitor's language or None)
    fills: tuple[tuple[str, str, str | None], ...] = ()


class Assistant:
    def __init__(
        self,
        understanding: Understanding,
        knowledge: KnowledgeBase,
        store: SessionStore,
        *,
        translator: Translator | None = None,
        detect: Callable[[str], Detection] | None = None,
        threshold: float = 0.45,
        phone_region: str = "US",
        phraser: Phraser | None = None,
        prompts: PromptBook | None = None,
        inbox: ChatInbox | None = None,
    ) -> None:
        self.understanding, self.knowledge, self.store = understanding, knowledge, store
        self.prompts = prompts or load_prompts()
        self.inbox = inbox  # None: no takeover, no transcript (plain replies)
        if inbox is not None and inbox.engine is not store.engine:
            raise ValueError("the chat inbox must use the session store's database")
        self.translator, self.detect = translator, detect
        self.threshold, self.phone_region = threshold, phone_region or "US"
        self.phraser = phraser
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, session_id: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10_000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(session_id, threading.Lock())

    def respond(self, turn: Turn) -> Reply:
        """Raises SessionNotFoundError / SessionExpiredError for a session it cannot continue,
        SessionBusyError when other turns of the session kept getting in first."""
        new = not turn.session_id
        session_id = turn.session_id or uuid.uuid4().hex
        with self._lock(session_id):  # this replica's turns of a chat wait; others retry
            for _ in range(ATTEMPTS):
                stored = None if new else self.store.read(session_id)
                session = Session.from_state(stored.state) if stored else Session(session_id)
                chat = Takeover(session_id)
                if self.inbox is not None and not new:
                    chat = self.inbox.takeover(session_id)
                reply = self._respond(session, turn, chat)
                reply.new_session = new
                if self._commit(reply, turn, chat, stored):
                    self.store.purge()
                    return reply
        raise SessionBusyError(
            f"session_id: {session_id!r} changed under {ATTEMPTS} tries of this message"
        )

    def _commit(self, reply: Reply, turn: Turn, chat: Takeover, stored: Stored | None) -> bool:
        """The session, the visitor's message and the reply, in one transaction that first
        locks the chat; False, with nothing written, when the chat's owner is no longer
        `chat` (a claim or a release got in) or the session is no longer `stored`."""
        session_id = reply.session.id
        try:
            with self.store.engine.begin() as conn:
                current = None
                if self.inbox is not None:
                    current = self.inbox.lock(conn, session_id)
                    if (current.status, current.salesperson) != (chat.status, chat.salesperson):
                        raise _Changed
                expected = stored.text if stored is not None else None
                if not self.store.write(conn, session_id, reply.session.to_state(), expected):
                    raise _Changed
                if current is not None:
                    self._record(conn, reply, turn, current)
        except _Changed:
            return False
        return True

    def _record(self, conn: Connection, reply: Reply, turn: Turn, current: Takeover) -> None:
        """The turn into the chat's transcript, with the hand-off it may make."""
        assert self.inbox is not None
        said = [Said(VISITOR, turn.text, language=reply.language)]
        if reply.text:
            said.append(Said(BOT, reply.text, language=reply.language))
        messages = self.inbox.record_turn(
            conn,
            current,
            said,
            handoff=reply.handoff_reason if reply.outcome == "handoff" else "",
            gone=current.salesperson if reply.outcome == "salesperson_gone" else "",
        )
        reply.visitor_seq = messages[0].seq
        reply.reply_seq = messages[1].seq if len(messages) > 1 else 0
        reply.status, reply.salesperson = messages[-1].status, messages[-1].salesperson

    def _respond(self, session: Session, turn: Turn, chat: Takeover) -> Reply:
        session.visitor.update({k: v for k, v in turn.visitor.items() if v})
        session.campaign_id = turn.campaign_id or session.campaign_id
        language, sure = self._reply_language(turn, session)
        english, language = self._to_english(turn.text, language)
        session.language, session.language_sure = language, sure
        native = self.prompts.get(language)
        intents = self.understanding.intents(english)
        entities = self._entities(english, turn.text)
        filled = session.qualification.update(english, intents, entities, session.asked)
        if primary(language) != ENGLISH:
            self._keep_visitor_words(filled, turn.text, native)
        session.product = session.qualification.slots["product"].value or session.product
        names = {i.name for i in intents}
        # "Around 15000 dollars" answers the budget question; it is not a price inquiry
        answered = session.asked in filled or (
            session.asked == "contact" and bool({"email", "phone"} & set(filled))
        )
        asking = bool(_QUESTION.search(english)) or bool(names & QUESTION_INTENTS and not answered)

        def say(prompt: str, **values: str) -> Piece:
            return _prompt(self.prompts.english, native, prompt, values)

        def reply(parts: list[Piece], outcome: str, **extra: Any) -> Reply:
            text, source = self.in_language(parts, language)
            return Reply(
                session=session,
                text=text,
                language=language,
                intents=intents,
                entities=entities,
                filled=filled,
                handoff_reason=session.handoff_reason,
                outcome=outcome,
                text_source=source,
                **extra,
            )

        if chat.status == CLAIMED:  # the salesperson answers, if their inbox is still open
            assert self.inbox is not None
            gone = not self.inbox.connected(chat.salesperson)
            pieces = [say("salesperson_gone", salesperson=chat.salesperson)] if gone else []
            outcome = "salesperson_gone" if gone else "with_salesperson"
            return reply(
                pieces,
                outcome,
                sources=[],
                confidence=1.0,
                status=CLAIMED,
                salesperson=chat.salesperson,
            )

        parts: list[Piece] = []
        sources: list[Hit] = []
        confidence = 1.0
        reason = ""
        outcome = "acknowledged"
        if _WANTS_HUMAN.search(english):
            reason = "visitor_request"
        elif "complaint" in names:
            reason = "complaint"
        elif _GREETING.match(english) and not filled:
            parts.append(say("greeting"))
            outcome = "greeting"
        elif asking:
            answer, sources, confidence = self._answer(english, session, entities, native)
            parts.append(answer)
            outcome = (
                "answered" if session.misses == 0 else "clarify" if sources else "not_understood"
            )
            if session.misses >= MISSES_BEFORE_HANDOFF:
                reason = "low_confidence"
        elif filled:
            name = session.qualification.slots["name"].value
            parts.append(say("thanks_name", name=name) if "name" in filled else say("thanks"))
        else:
            parts.append(say("open_question"))

        session.asked = None
        if reason:
            session.handoff_reason = reason
            outcome = "handoff"
            parts = [say(f"handoff_{reason}")]
            if not session.qualification.known("contact"):
                parts.append(say("leave_contact"))
                session.asked = "contact"
        elif not session.handoff_reason:
            slot = session.qualification.next_question()
            if slot is not None:
                parts.append(say(f"ask_{slot}"))
                session.asked = slot
                session.qualification.asked[slot] = session.qualification.asked.get(slot, 0) + 1
        return reply(parts, outcome, sources=sources, confidence=confidence)

    def in_language(self, parts: list[Piece], language: str) -> tuple[str, str]:
        """The reply in `language`: each piece as written there, the others translated."""
        if primary(language) == ENGLISH or self.translator is None:
            return " ".join(p.english for p in parts), NATIVE
        missing = [p for p in parts if p.native is None]
        translated = iter(self._translate_pieces(missing, language))
        text = " ".join(p.native if p.native is not None else next(translated) for p in parts)
        source = NATIVE if not missing else MACHINE if len(missing) == len(parts) else MIXED
        return text, source

    def _translate_pieces(self, pieces: list[Piece], language: str) -> list[str]:
        """Pieces machine-translated from English. A prompt's template is translated with
        a stand-in name for each placeholder, and the values go in after: names as they
        are, English text (a title) as written in the language or translated on its own."""
        jobs: list[str] = []  # every text for one call to the translator
        plans: list[_Plan] = []
        for piece in pieces:
            masked, stand_ins = _mask(piece.template, [f[0] for f in piece.fills])
            plan = _Plan(piece.template, stand_ins, len(jobs))
            plans.append(plan)
            jobs.append(masked if stand_ins else piece.english)
            for name, english, written in piece.fills if stand_ins else ():
                if name in NAME_FIELDS:
                    plan.values[name] = english
                elif written is not None:
                    plan.values[name] = written
                else:  # English text with nothing written: translated on its own
                    plan.pending[name] = len(jobs)
                    jobs.append(english)
        done = self._from_english(jobs, language)
        out: list[str] = []
        for plan in plans:
            if not plan.stand_ins:
                out.append(done[plan.at])
                continue
            values = {**plan.values, **{n: done[i] for n, i in plan.pending.items()}}
            filled = _unmask(done[plan.at], plan.stand_ins, values)
            if filled is None:  # the translation lost a stand-in: translate around the values
                filled = self._translate_around(plan.template, values, language)
            out.append(filled)
        return out

    def _translate_around(self, template: str, values: dict[str, str], language: str) -> str:
        """The template's text between its placeholders translated piece by piece, with
        the values between (a last resort: each piece loses the sentence around it)."""
        parsed = [(text, name) for text, name, _, _ in string.Formatter().parse(template)]
        texts = [text for text, _ in parsed if text.strip()]
        translated = iter(self._from_english(texts, language))
        out = []
        for text, name in parsed:
            if text.strip():
                lead = text[: len(text) - len(text.lstrip())]
                trail = text[len(text.rstrip()) :]
                out.append(lead + next(translated).strip() + trail)
            else:
                out.append(text)
            if name:
                out.append(values.get(name, ""))
        return "".join(out)

    def say(self, prompt: str, language: str, **values: str) -> tuple[str, str]:
        """One prompt in `language` (as written, else translated) and how it was made."""
        said = _prompt(self.prompts.english, self.prompts.get(language), prompt, values)
        return self.in_language([said], language)

    def _keep_visitor_words(
        self, filled: dict[str, Slot], original: str, native: Prompts | None
    ) -> None:
        """A free-text slot read from a translation keeps the visitor's own words beside it."""
        for name in WORDED_SLOTS:
            if name in filled:
                words = native.without_lead_in(original) if native else original.strip()
                if name == "decision_role":  # "directora de compras y yo tomo la decisión"
                    words = _CLAUSE.split(words, maxsplit=1)[0]
                filled[name].original = words[:200]

    def _answer(
        self,
        english: str,
        session: Session,
        entities: list[EntityMatch],
        native: Prompts | None,
    ) -> tuple[Piece, list[Hit], float]:
        named = [e.normalized for e in entities if e.type == "product"]
        product = named[0] if named else session.product
        hits = self.knowledge.search(english, 3, product=product)
        best = hits[0]
        language = session.language
        if best.score >= self.threshold and (
            len(hits) < 2 or best.score - hits[1].score >= AMBIGUOUS_MARGIN
        ):
            session.misses = 0
            written = best.entry.answer_in(language)
            if primary(language) == ENGLISH or written is None:  # the phraser rewords English only
                phrased = self.phraser.phrase(english, best.entry.answer) if self.phraser else None
                return Piece(phrased or best.entry.answer, written), [best], best.score
            return Piece(best.entry.answer, written), [best], best.score
        session.misses += 1
        english_prompts = self.prompts.english
        if best.score >= self.threshold:
            first, second = best.entry, hits[1].entry
            said = _prompt(
                english_prompts,
                native,
                "do_you_mean",
                {"first": first.title, "second": second.title},
                {"first": first.title_in(language), "second": second.title_in(language)},
            )
            return said, hits[:2], best.score
        if best.score >= self.threshold - CLARIFY_BAND:
            said = _prompt(
                english_prompts,
                native,
                "asking_about",
                {"title": best.entry.title},
                {"title": best.entry.title_in(language)},
            )
            return said, [best], best.score
        return _prompt(english_prompts, native, "not_understood", {}), [], max(best.score, 0.0)

    def _entities(self, english: str, original: str) -> list[EntityMatch]:
        """Entities of the English text, plus contacts as written (MT may mangle them)."""
        found = extract_entities(english, region=self.phone_region)
        if original != english:
            kinds = {e.type for e in found}
            found += [
                e
                for e in extract_entities(original, region=self.phone_region)
                if e.type in ("email", "phone") and e.type not in kinds
            ]
        return found

    def _reply_language(self, turn: Turn, session: Session) -> tuple[str, bool]:
        """The language to read and answer this message in, and whether it is decided: the
        widget's, else the chat's unless the message is enough to tell another (see
        language.chat_language), else English for now."""
        if turn.language:
            return turn.language, True
        current = session.language if session.language_sure else None
        words = telling_words(turn.text)
        if self.detect is not None and words:
            found = self.detect(without_addresses(turn.text))
            chosen = chat_language(found, words, current, self._usable)
            if chosen is not None:
                return chosen, True
        return session.language or ENGLISH, session.language_sure

    def _usable(self, language: str) -> bool:
        """A language the assistant can read and answer: English, or one MT goes both ways."""
        base = primary(language)
        if base == ENGLISH:
            return True
        if self.translator is None:
            return False
        try:
            self.translator.route(base, ENGLISH)
            self.translator.route(ENGLISH, base)
        except UnsupportedPairError:
            return False
        return True

    def _to_english(self, text: str, language: str) -> tuple[str, str]:
        """The text in English, and the language to reply in (English when no path back).
        A regional tag ('es-MX') is translated as its language and kept for the reply."""
        base = primary(language)
        if base == ENGLISH:
            return text, language
        if self.translator is None:
            return text, ENGLISH
        try:
            self.translator.route(ENGLISH, base)
            (done,) = self.translator.translate([text], base, ENGLISH)
        except UnsupportedPairError:
            return text, ENGLISH
        return done.text, language

    def _from_english(self, texts: list[str], language: str) -> list[str]:
        base = primary(language)
        if not texts or base == ENGLISH or self.translator is None:
            return texts
        return [done.text for done in self.translator.translate(texts, ENGLISH, base)]


def _prompt(
    english: Prompts,
    native: Prompts | None,
    prompt: str,
    values: dict[str, str],
    native_values: dict[str, str | None] | None = None,
) -> Piece:
    """A prompt in English, and as written in the visitor's language when every part is."""
    written = None
    there = {k: v for k, v in (native_values or values).items() if v is not None}
    if native is not None and len(there) == len(native_values or values):
        written = native.say(prompt, **there)
    in_language = native_values or {}
    fills = tuple((k, v, v if k in NAME_FIELDS else in_language.get(k)) for k, v in values.items())
    return Piece(english.say(prompt, **values), written, english.texts[prompt], fills)


def _mask(template: str, names: list[str]) -> tuple[str, dict[str, str]]:
    """The template with a stand-in name for each placeholder, and which stands for which."""
    free = [n for n in STAND_INS if n not in template]
    stand_ins = dict(zip(names, free, strict=False))
    if len(stand_ins) < len(names):  # more placeholders than stand-ins: no masking
        return template, {}
    return template.format(**stand_ins), stand_ins


def _unmask(translated: str, stand_ins: dict[str, str], values: dict[str, str]) -> str | None:
    """The translation with the values where their stand-ins are; None when a stand-in
    is not there exactly once (the translation changed it)."""
    if not stand_ins:
        return None
    if any(len(re.findall(rf"\b{s}\b", translated)) != 1 for s in stand_ins.values()):
        return None
    by_stand_in = {stand_in: values[name] for name, stand_in in stand_ins.items()}
    pattern = re.compile(r"\b(" + "|".join(by_stand_in) + r")\b")
    return pattern.sub(lambda m: by_stand_in[m.group(1)], translated)


def load_assistant(
    settings: Settings,
    understanding: Understanding,
    translator: Translator | None,
    detector: LanguageDetector | None,
) -> Assistant:
    """The knowledge (checked and embedded), the session store, and the shared models."""
    from percept.models import model_store
    from percept.nlp.knowledge import load_entries
    from percept.understanding.embeddings import MiniLMEmbedder
    from percept.understanding.loading import EMBEDDINGS

    entries = load_entries(knowledge_file(settings))
    shared = understanding.classifier  # one copy of MiniLM for intents and knowledge
    embedder = (
        shared.embedder
        if shared is not None
        else MiniLMEmbedder(model_store(settings).resolve(EMBEDDINGS).path)
    )
    url = settings.nlp_session_store or f"sqlite:///{settings.data_dir / 'chat-sessions.db'}"
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    store = SessionStore(url, settings.nlp_session_ttl_s)
    inbox = ChatInbox(
        store.engine,
        presence_s=settings.nlp_salesperson_presence_s,
        webhook_urls=settings.nlp_handoff_webhook_urls,
    )

    phraser = None
    if settings.nlp_generator_model:
        from percept.nlp.generation import CausalLMPhraser

        folder = settings.resolved_model_dir / settings.nlp_generator_model
        phraser = CausalLMPhraser(folder, settings.nlp_device)
    return Assistant(
        understanding,
        KnowledgeBase(entries, embedder),
        store,
        translator=translator,
        detect=detector.detect if detector is not None else None,
        threshold=settings.nlp_answer_threshold,
        phone_region=settings.default_phone_region,
        phraser=phraser,
        prompts=load_prompts(settings.nlp_prompts_dir),
        inbox=inbox,
    )
