"""Lead qualification as slot filling: what a visitor's message tells, what to ask next.

Slots are read from the entities the shared understanding finds (product,
quantity, money, datetime, phone and e-mail — validated by phonenumbers and
email-validator) and from a few phrasings of need, role and name. An answer to
the question just asked is read more leniently ("around 2k" fills the budget
only when the budget was asked; the currency is then USD unless named). Amounts
are read as understanding/money.py explains (a range is its upper bound). Digits
of a phone number, an address, a date, a time or an amount are never a count.
A slot is asked only once the visitor shows buying interest, at most twice, and
never once it is known.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from percept.understanding.entities import EMAIL_CANDIDATE, EntityMatch
from percept.understanding.intents import IntentMatch
from percept.understanding.money import NUMBER_WORDS, amounts

SLOTS = (
    "need",
    "product",
    "quantity",
    "budget",
    "timeline",
    "decision_role",
    "name",
    "email",
    "phone",
)
# The order questions come in; "contact" asks for an e-mail or a phone number.
ASK_ORDER = ("product", "quantity", "timeline", "budget", "decision_role", "name", "contact")
INTEREST = {"purchase_intent", "price_inquiry", "product_question", "demo_or_meeting_request"}
MAX_ASKS = 2

_NEED = re.compile(
    r"\b(?:we|i)\s+(?:need|are looking for|am looking for|want|would like)\s+(?:to\s+)?"
    r"([^.!?,;]{3,80})",
    re.IGNORECASE,
)
_NAME = re.compile(
    r"\b(?i:my name is|my name's|i am called|i'm called|i call me|call me|this is)\s+"
    r"([A-ZÀ-Ý][\w'À-ÿ-]+(?:\s+[A-ZÀ-Ý][\w'À-ÿ-]+){0,2})"
)
_BARE_NAME = re.compile(
    r"^\s*(?i:it's\s+|i'm\s+|i am\s+)?([A-ZÀ-Ý][\w'À-ÿ-]+(?:\s+[A-ZÀ-Ý][\w'À-ÿ-]+){0,2})[.!]?\s*$"
)
ROLES = (
    "ceo|cto|cfo|coo|cio|owner|founder|co-founder|president|director|manager|head|"
    "buyer|purchaser|procurement|vp|vice president|partner|administrator|lead"
)
_ROLE = re.compile(
    rf"\b(?:i'm|i am|as)\s+(?:the|a|an|our)?\s*"
    rf"((?:[\w-]+\s+){{0,3}}?(?:{ROLES})(?:\s+of\s+(?!and\b)[\w-]+)?)\b",
    re.IGNORECASE,
)
_DECIDER = re.compile(
    r"\b(?:i (?:make|take|sign off on) the (?:final )?decision|i decide|it's my decision|"
    r"i'm the decision maker|i am the decision maker)\b",
    re.IGNORECASE,
)
_INFLUENCER = re.compile(
    r"\b(?:my (?:boss|manager|director|ceo|team) (?:decides|approves|signs)|"
    r"need (?:approval|sign-off|to ask)|not my decision)\b",
    re.IGNORECASE,
)
_COUNT_WORDS = [w for w in NUMBER_WORDS if w not in ("a", "an")]  # "a few" is no count
_SPAN_WORDS = "|".join(sorted((*_COUNT_WORDS, "a", "an", "a couple of", "a few"), key=len)[::-1])
# "in 2 weeks", "within a month", "in about three months", "over the next 6 months"
# (and MT's "in roughly three month"): kept as said.
_TIMELINE = re.compile(
    r"\b(asap|as soon as possible|right away|immediately|urgently|this week|next week|"
    r"this month|next month|(?:the )?coming (?:weeks?|months?)|this quarter|next quarter|"
    r"this year|next year|"
    r"(?:in|within|over the next|in the next)\s+(?:about\s+|around\s+|roughly\s+|"
    rf"approximately\s+|some\s+)?(?:\d+|{_SPAN_WORDS})\s+(?:days?|weeks?|months?|years?))\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(rf"\b(\d+|{'|'.join(_COUNT_WORDS)})\b", re.IGNORECASE)
# Digits that are no count: a phone number however grouped ("415 555 0134",
# "+34 612 345 678", "06 12 34 56 78"), a time, a date.
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
_TIME_OR_DATE = re.compile(
    r"\b\d{1,2}[:h]\d{2}\b|\b\d{1,2}\s?(?:am|pm|a\.m\.|p\.m\.)|"
    r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|\b\d{4}-\d{1,2}-\d{1,2}\b|"
    r"\b\d{1,2}[.-]\d{1,2}[.-]\d{2,4}\b|\b\d{1,2}(?:st|nd|rd|th)\b",
    re.IGNORECASE,
)
_BUDGET_WORDS = re.compile(r"\b(budget|estimate|spend|afford)\b", re.IGNORECASE)


@dataclass
class Slot:
    value: str = ""  # in English (normalised where the slot has a form: money, dates)
    confidence: float = 0.0
    original: str = ""  # the visitor's own words, when they wrote in another language

    @property
    def filled(self) -> bool:
        return bool(self.value)


@dataclass
class Qualification:
    slots: dict[str, Slot] = field(default_factory=lambda: {name: Slot() for name in SLOTS})
    asked: dict[str, int] = field(default_factory=dict)
    interested: bool = False

    def known(self, slot: str) -> bool:
        if slot == "contact":
            return self.slots["email"].filled or self.slots["phone"].filled
        if slot == "product":  # a stated need covers what they want
            return self.slots["product"].filled or self.slots["need"].filled
        return self.slots[slot].filled

    def next_question(self) -> str | None:
        """The slot to ask about now, or None: no interest yet, or nothing left to ask."""
        if not self.interested:
            return None
        for slot in ASK_ORDER:
            if not self.known(slot) and self.asked.get(slot, 0) < MAX_ASKS:
                return slot
        return None

    def update(
        self,
        text: str,
        intents: Sequence[IntentMatch],
        entities: Sequence[EntityMatch],
        asked: str | None,
    ) -> dict[str, Slot]:
        """Fills what the message tells; returns the slots newly filled or changed."""
        found = read_slots(text, intents, entities, asked)
        changed = {}
        for name, slot in found.items():
            if self.slots[name].value != slot.value:
                self.slots[name] = slot
                changed[name] = slot
        if any(i.name in INTEREST for i in intents) or any(
            self.slots[s].filled for s in ("need", "product", "quantity", "budget")
        ):
            self.interested = True
        return changed


def read_slots(
    text: str,
    intents: Sequence[IntentMatch],
    entities: Sequence[EntityMatch],
    asked: str | None = None,
) -> dict[str, Slot]:
    found: dict[str, Slot] = {}
    by_type: dict[str, EntityMatch] = {}
    for entity in entities:
        by_type.setdefault(entity.type, entity)
    for kind in ("product", "quantity", "email", "phone"):
        if kind in by_type:
            found[kind] = Slot(by_type[kind].normalized, by_type[kind].confidence)
    taken = _not_counts(text, entities)
    if "money" in by_type and (asked == "budget" or _BUDGET_WORDS.search(text)):
        found["budget"] = Slot(by_type["money"].normalized, by_type["money"].confidence)
    elif asked == "budget":  # an answer may leave the currency out: "around 2k"
        free = [a for a in amounts(text) if not any(_within(a.start, a.end, s) for s in taken)]
        if free:
            found["budget"] = Slot(free[0].normalized, 0.6)
    timeline = _TIMELINE.search(text)
    if timeline:
        found["timeline"] = Slot(timeline.group(1).lower(), 0.8)
    elif "datetime" in by_type and (asked == "timeline" or "purchase_intent" in _names(intents)):
        found["timeline"] = Slot(by_type["datetime"].normalized, by_type["datetime"].confidence)
    if asked == "quantity" and "quantity" not in found:
        money = [(a.start, a.end) for a in amounts(text) if a.currency or a.scaled]
        for number in _NUMBER.finditer(text):
            if any(_within(number.start(), number.end(), s) for s in (*taken, *money)):
                continue
            word = number.group(1).lower()
            count = int(word) if word.isdigit() else NUMBER_WORDS[word]
            found["quantity"] = Slot(str(count), 0.7)
            break
    need = _NEED.search(text)
    if need and ("product" in found or _names(intents) & INTEREST):
        found["need"] = Slot(need.group(1).strip().lower(), 0.7)
    name = _NAME.search(text) or (_BARE_NAME.match(text) if asked == "name" else None)
    if name and not _ROLE.search(text):
        found["name"] = Slot(name.group(1).strip(), 0.8 if asked == "name" else 0.7)
    role = _ROLE.search(text)
    title = role.group(1).strip().lower() if role else ""
    decides = "decision maker" if _DECIDER.search(text) else ""
    decides = decides or ("influencer" if _INFLUENCER.search(text) else "")
    if decides:
        value = f"{title} ({decides})" if title else decides
        found["decision_role"] = Slot(value, 0.8)
    elif title:
        found["decision_role"] = Slot(title, 0.75)
    return found


def _not_counts(text: str, entities: Sequence[EntityMatch]) -> list[tuple[int, int]]:
    """Where the text holds a phone number, an address, a date or a time: digits there are
    neither a count nor an amount. An entity found in another text (the visitor's own words,
    when this is their translation) is looked for by its words."""
    spans = []
    for e in entities:
        if e.type not in ("phone", "email", "datetime"):
            continue
        if text[e.start : e.end] == e.text:
            spans.append((e.start, e.end))
        elif (at := text.find(e.text)) >= 0:
            spans.append((at, at + len(e.text)))
    for pattern in (_PHONE_LIKE, _TIME_OR_DATE, EMAIL_CANDIDATE):
        for m in pattern.finditer(text):
            if pattern is not _PHONE_LIKE or sum(c.isdigit() for c in m.group(0)) >= 7:
                spans.append(m.span())
    return spans


def _within(start: int, end: int, span: tuple[int, int]) -> bool:
    return start < span[1] and span[0] < end


def _names(intents: Sequence[IntentMatch]) -> set[str]:
    return {i.name for i in intents}
