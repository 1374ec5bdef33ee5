"""The chat assistant: one visitor message in, one grounded reply out.

A turn: detect the language, translate the message to English, read intents and
entities with the understanding shared with speech, fill qualification slots,
answer from the knowledge base when a match is confident (otherwise ask to
clarify, and after repeated misses offer a human), ask the next qualifying
question, and translate the reply back. Replies only ever quote the company's
knowledge or fixed phrasings: nothing is invented.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from percept.nlp.knowledge import Hit, KnowledgeBase
from percept.nlp.qualification import QUESTIONS, SLOTS, Qualification, Slot
from percept.nlp.sessions import SessionStore
from percept.nlp.translation import Translator, UnsupportedPairError
from percept.understanding.classifier import Understanding
from percept.understanding.entities import EntityMatch, extract_entities
from percept.understanding.intents import IntentMatch

if TYPE_CHECKING:
    from percept.nlp.language import LanguageDetector
    from percept.runtime.settings import Settings

ENGLISH = "en"
HISTORY = 20  # turns kept with the session, for the human who takes over
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

HANDOFF_REPLY = {
    "visitor_request": "Of course. A colleague from our sales team will talk to you now.",
    "complaint": "I am sorry about that. A colleague will help you now.",
    "low_confidence": "I am not sure about the answer. A colleague will help you now.",
}
LEAVE_CONTACT = "What is your e-mail or phone number, in case the chat is cut off?"


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
    history: list[dict[str, str]] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Session:
        q = state["qualification"]
        qualification = Qualification(
            slots={name: Slot(**q["slots"].get(name, {})) for name in SLOTS},
            asked=dict(q["asked"]),
            interested=bool(q["interested"]),
        )
        return cls(**{**state, "qualification": qualification})


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
    ) -> None:
        self.understanding, self.knowledge, self.store = understanding, knowledge, store
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
            reply = self._respond(session, turn)
            reply.new_session = new
            self.store.put(session_id, session.to_state())
            return reply

    def _respond(self, session: Session, turn: Turn) -> Reply:
        session.visitor.update({k: v for k, v in turn.visitor.items() if v})
        session.campaign_id = turn.campaign_id or session.campaign_id
        language = turn.language or self._language(turn.text) or session.language or ENGLISH
        english, language = self._to_english(turn.text, language)
        session.language = language
        intents = self.understanding.intents(english)
        entities = self._entities(english, turn.text)
        filled = session.qualification.update(english, intents, entities, session.asked)
        session.product = session.qualification.slots["product"].value or session.product
        names = {i.name for i in intents}
        # "Around 15000 dollars" answers the budget question; it is not a price inquiry
        answered = session.asked in filled or (
            session.asked == "contact" and bool({"email", "phone"} & set(filled))
        )
        asking = bool(_QUESTION.search(english)) or bool(names & QUESTION_INTENTS and not answered)

        parts: list[str] = []
        sources: list[Hit] = []
        confidence = 1.0
        reason = ""
        outcome = "acknowledged"
        if _WANTS_HUMAN.search(english):
            reason = "visitor_request"
        elif "complaint" in names:
            reason = "complaint"
        elif _GREETING.match(english) and not filled:
            parts.append("Hello! How can I help you today?")
            outcome = "greeting"
        elif asking:
            answer, sources, confidence = self._answer(english, session, entities)
            parts.append(answer)
            outcome = (
                "answered" if session.misses == 0 else "clarify" if sources else "not_understood"
            )
            if session.misses >= MISSES_BEFORE_HANDOFF:
                reason = "low_confidence"
        elif filled:
            name = session.qualification.slots["name"].value
            parts.append(f"Thank you, {name}." if "name" in filled else "Thank you.")
        else:
            parts.append("I see. What would you like to know about our products?")

        session.asked = None
        if reason:
            session.handoff_reason = reason
            outcome = "handoff"
            parts = [HANDOFF_REPLY[reason]]
            if not session.qualification.known("contact"):
                parts.append(LEAVE_CONTACT)
                session.asked = "contact"
        elif not session.handoff_reason:
            slot = session.qualification.next_question()
            if slot is not None:
                parts.append(QUESTIONS[slot])
                session.asked = slot
                session.qualification.asked[slot] = session.qualification.asked.get(slot, 0) + 1
        text = self._from_english(" ".join(parts), language)
        session.history = [
            *session.history,
            {"role": "visitor", "text": turn.text},
            {"role": "assistant", "text": text},
        ][-HISTORY:]
        return Reply(
            session=session,
            text=text,
            language=language,
            intents=intents,
            entities=entities,
            filled=filled,
            sources=sources,
            confidence=confidence,
            handoff_reason=session.handoff_reason,
            outcome=outcome,
        )

    def _answer(
        self, english: str, session: Session, entities: list[EntityMatch]
    ) -> tuple[str, list[Hit], float]:
        named = [e.normalized for e in entities if e.type == "product"]
        product = named[0] if named else session.product
        hits = self.knowledge.search(english, 3, product=product)
        best = hits[0]
        if best.score >= self.threshold and (
            len(hits) < 2 or best.score - hits[1].score >= AMBIGUOUS_MARGIN
        ):
            session.misses = 0
            phrased = self.phraser.phrase(english, best.entry.answer) if self.phraser else None
            return phrased or best.entry.answer, [best], best.score
        session.misses += 1
        if best.score >= self.threshold:
            first, second = best.entry.title, hits[1].entry.title
            return f"Do you mean {first}, or {second}?", hits[:2], best.score
        if best.score >= self.threshold - CLARIFY_BAND:
            return f"Are you asking about {best.entry.title}?", [best], best.score
        return (
            "I am not sure I understood. Could you put it another way?",
            [],
            max(best.score, 0.0),
        )

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

    def _from_english(self, text: str, language: str) -> str:
        if language == ENGLISH or self.translator is None:
            return text
        (done,) = self.translator.translate([text], ENGLISH, language)
        return done.text


def knowledge_file(settings: Settings) -> Path | None:
    """PERCEPT_NLP_KNOWLEDGE_FILE, else knowledge.yaml/.csv in the understanding dir (the
    Kubernetes ConfigMap), else None: the packaged demo knowledge."""
    if settings.nlp_knowledge_file is not None:
        return settings.nlp_knowledge_file
    if settings.understanding_dir is not None:
        for name in ("knowledge.yaml", "knowledge.csv"):
            if (settings.understanding_dir / name).is_file():
                return settings.understanding_dir / name
    return None


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
        SessionStore(url, settings.nlp_session_ttl_s),
        translator=translator,
        detect=detect,
        threshold=settings.nlp_answer_threshold,
        phone_region=settings.default_phone_region,
        phraser=phraser,
    )
