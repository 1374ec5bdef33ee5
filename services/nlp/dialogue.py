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
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from percept.nlp.inbox import ASSISTANT, BOT, CLAIMED, VISITOR, ChatInbox, Said, Takeover
from percept.nlp.knowledge import Hit, KnowledgeBase, knowledge_file
from percept.nlp.prompts import PromptBook, Prompts, load_prompts
from percept.nlp.qualification import SLOTS, Qualification, Slot
from percept.nlp.sessions import SessionStore
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


class Phraser(Protocol):
    def phrase(self, question: str, facts: str) -> str | None:
        """The facts reworded for the question, or None to send them as written."""
        ...


@dataclass
class Session:
    id: str
    language: str = ""
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
    """A piece of a reply: the English, and the visitor's language as written (or None)."""

    english: str
    native: str | None


class Assistant:
    def __init__(
        self,
        understanding: Understanding,
        knowledge: KnowledgeBase,
        store: SessionStore,
        *,
        translator: Translator | None = None,
        detect: Callable[[str], str] | None = None,
        threshold: float = 0.45,
        phone_region: str = "US",
        phraser: Phraser | None = None,
        prompts: PromptBook | None = None,
        inbox: ChatInbox | None = None,
    ) -> None:
        self.understanding, self.knowledge, self.store = understanding, knowledge, store
        self.prompts = prompts or load_prompts()
        self.inbox = inbox  # None: no takeover, no transcript (plain replies)
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
        """Raises SessionNotFoundError / SessionExpiredError for a session it cannot continue."""
        new = not turn.session_id
        session_id = turn.session_id or uuid.uuid4().hex
        with self._lock(session_id):
            session = Session(session_id) if new else Session.from_state(self.store.get(session_id))
            chat = Takeover(session_id)
            if self.inbox is not None and not new:
                chat = self.inbox.takeover(session_id)
            reply = self._respond(session, turn, chat)
            reply.new_session = new
            self.store.put(session_id, session.to_state())
            if self.inbox is not None:
                self._record(reply, turn, chat, self.inbox)
            return reply

    def _record(self, reply: Reply, turn: Turn, chat: Takeover, inbox: ChatInbox) -> None:
        """The turn into the chat's transcript, with the hand-off it may make."""
        said = [Said(VISITOR, turn.text, language=reply.language)]
        if reply.text:
            said.append(Said(BOT, reply.text, language=reply.language))
        session_id = reply.session.id
        if reply.outcome == "salesperson_gone":
            messages = inbox.salesperson_gone(session_id, chat.salesperson, said)
        elif reply.outcome == "handoff":
            messages = inbox.hand_off(session_id, reply.handoff_reason, said)
        else:
            messages = inbox.say(session_id, *said)
        reply.visitor_seq = messages[0].seq
        reply.reply_seq = messages[1].seq if len(messages) > 1 else 0
        reply.status, reply.salesperson = messages[-1].status, messages[-1].salesperson

    def _respond(self, session: Session, turn: Turn, chat: Takeover) -> Reply:
        session.visitor.update({k: v for k, v in turn.visitor.items() if v})
        session.campaign_id = turn.campaign_id or session.campaign_id
        language = turn.language or self._language(turn.text) or session.language or ENGLISH
        english, language = self._to_english(turn.text, language)
        session.language = language
        native = self.prompts.get(language)
        intents = self.understanding.intents(english)
        entities = self._entities(english, turn.text)
        filled = session.qualification.update(english, intents, entities, session.asked)
        if language != ENGLISH:
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
        if language == ENGLISH or self.translator is None:
            return " ".join(p.english for p in parts), NATIVE
        missing = [p.english for p in parts if p.native is None]
        translated = iter(self._from_english(missing, language))
        text = " ".join(p.native if p.native is not None else next(translated) for p in parts)
        source = NATIVE if not missing else MACHINE if len(missing) == len(parts) else MIXED
        return text, source

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
            if language == ENGLISH or written is None:  # the phraser rewords English only
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

    def _language(self, text: str) -> str:
        return self.detect(text) if self.detect else ""

    def _to_english(self, text: str, language: str) -> tuple[str, str]:
        """The text in English, and the language to reply in (English when no path back)."""
        if language == ENGLISH or self.translator is None:
            return text, ENGLISH if self.translator is None else language
        try:
            self.translator.route(ENGLISH, language)
            (done,) = self.translator.translate([text], language, ENGLISH)
        except UnsupportedPairError:
            return text, ENGLISH
        return done.text, language

    def _from_english(self, texts: list[str], language: str) -> list[str]:
        if not texts or language == ENGLISH or self.translator is None:
            return texts
        return [done.text for done in self.translator.translate(texts, ENGLISH, language)]


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
    return Piece(english.say(prompt, **values), written)


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

    def detect(text: str) -> str:
        return detector.detect(text).language if detector else ""

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
        detect=detect,
        threshold=settings.nlp_answer_threshold,
        phone_region=settings.default_phone_region,
        phraser=phraser,
        prompts=load_prompts(settings.nlp_prompts_dir),
        inbox=inbox,
    )
