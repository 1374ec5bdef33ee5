"""Finding payment cards and personal data in a transcript, so it can be removed.

Speech recognisers write digits as they please: "4111 1111 1111 1111", "four one
one one ...", "41-11". Detection therefore runs on a *reading* of the text in which
number words (English, Spanish, French) are digits, with a map back to the
original characters, so a span found in the reading removes the words said.

What counts, by kind:
- card: any run of 13 digits or more, Luhn-valid or not (a card number passes Luhn,
  but a misheard digit must not leak the other 15); in a card
  context (the utterance names a card, or the channel gave one in the last minute)
  runs of 5 digits or more (half a card, said in two breaths),
  expiry dates (05/27, "oh five twenty seven", "May 2027") and 3-4 digit security
  codes.
- national_id: US SSN, Spanish DNI/NIE, French NIR, UK National Insurance numbers
  (check digits where the scheme has them), and digit runs named as an id.
- iban: IBANs that pass the mod-97 check, and digit runs named as an account number.
- phone, email: what the entity finder reads as one (spoken e-mails too), and an
  address half spoken ("ana.silva at example.com", as Whisper writes one).
- name: the words after "my name is", "this is", "me llamo", "je m'appelle"...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.us import ssn

from percept.understanding.entities import EMAIL_CANDIDATE, SPOKEN_EMAIL
from percept.understanding.redaction_kinds import (
    DEFAULT_KINDS,
    KINDS,
    RedactionKindError,
    parse_kinds,
)

__all__ = ["DEFAULT_KINDS", "KINDS", "RedactionKindError", "parse_kinds"]

# what each redaction says in the text in place of the value
PLACEHOLDERS = {
    "card_number": "[card number]",
    "digits": "[digits]",  # a partial's digits that may be the start of a card
    "card_expiry": "[card expiry]",
    "card_security_code": "[security code]",
    "national_id": "[national id]",
    "iban": "[iban]",
    "account_number": "[account number]",
    "phone": "[phone]",
    "email": "[email]",
    "name": "[name]",
}

_UNITS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "cero": "0", "uno": "1", "una": "1", "un": "1", "dos": "2", "tres": "3", "cuatro": "4",
    "cinco": "5", "seis": "6", "siete": "7", "ocho": "8", "nueve": "9",
    "zéro": "0", "deux": "2", "trois": "3", "quatre": "4", "cinq": "5",
    "sept": "7", "huit": "8", "neuf": "9",
}  # fmt: skip
_TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
    "diez": "10", "once": "11", "doce": "12", "trece": "13", "catorce": "14", "quince": "15",
    "dix": "10", "onze": "11", "douze": "12", "treize": "13", "quatorze": "14", "quinze": "15",
}  # fmt: skip
_TENS = {
    "twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7",
    "eighty": "8", "ninety": "9",
    "veinte": "2", "treinta": "3", "cuarenta": "4", "cincuenta": "5", "sesenta": "6",
    "setenta": "7", "ochenta": "8", "noventa": "9",
    "vingt": "2", "trente": "3", "quarante": "4", "cinquante": "5", "soixante": "6",
}  # fmt: skip
_TOKEN = re.compile(r"\w+(?:'\w+)?", re.UNICODE)
# digits, and the separators a transcript puts between spoken groups
_RUN = re.compile(r"\d(?:[ \t,.\-]{0,3}\d)*")
_CARD_WORDS = re.compile(
    r"(?i)\b(card|visa|master ?card|amex|american express|discover|debit|credit|"
    r"tarjeta|carte|bancaire|cb)\b"
)
_EXPIRY_WORDS = re.compile(
    r"(?i)\b(expir\w*|valid (?:thru|through|until)|vencimiento|vence|caduc\w*|"
    r"date d'expiration|fecha de)\b"
)
_SECURITY_WORDS = re.compile(
    r"(?i)\b(security code|cvv2?|cvc2?|csc|three digits?|four digits?|back of the card|"
    r"código de seguridad|codigo de seguridad|cryptogramme|code de sécurité)\b"
)
_ID_WORDS = re.compile(
    r"(?i)\b(social security|ssn|national insurance|national id|id number|passport|"
    r"dni|nie|nif|documento|pasaporte|sécurité sociale|securite sociale|numéro fiscal)\b"
)
_ACCOUNT_WORDS = re.compile(
    r"(?i)\b(iban|account number|bank account|routing number|sort code|cuenta|"
    r"numéro de compte|rib)\b"
)
# an address half spoken, as Whisper often writes it: "ana.silva at example.com"
_HALF_SPOKEN_EMAIL = re.compile(
    r"\b([a-z0-9][\w.+-]*)\s+at\s+([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})\b", re.IGNORECASE
)
_NOT_A_MAILBOX = {"me", "us", "him", "her", "them", "it", "that", "this", "is", "are", "was",
                  "not", "re", "home", "work", "look", "looking", "arrive", "arrived"}  # fmt: skip
_NAME_INTRO = re.compile(
    r"(?i)\b(?:my name is|my name's|this is|i am|i'm|me llamo|mi nombre es|soy|"
    r"je m'appelle|je suis|mon nom est)\s+"
)
_NAME_WORD = re.compile(r"[A-ZÀ-Ý][\w'-]+")
_EXPIRY = re.compile(r"\b(0?[1-9]|1[0-2])\s*[/\-.]\s*(\d{2}|20\d{2})\b")
_MONTH_YEAR = re.compile(
    r"(?i)\b(january|february|march|april|may|june|july|august|september|october|november|"
    r"december|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|"
    r"noviembre|diciembre)\s+(?:of\s+|de\s+|del\s+)?(20\d{2}|\d{2})\b"
)
_NINO = re.compile(r"\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b", re.IGNORECASE)
_DNI = re.compile(r"\b(\d{8})\s?-?\s?([A-Z])\b", re.IGNORECASE)
_NIE = re.compile(r"\b([XYZ])\s?-?\s?(\d{7})\s?-?\s?([A-Z])\b", re.IGNORECASE)
_SSN = re.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")
_IBAN_START = re.compile(r"\b[A-Z]{2}\s?\d{2}", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str  # a key of PLACEHOLDERS


@dataclass(frozen=True)
class Reading:
    """The text with number words as digits; each character of the reading comes
    from `starts[i]:ends[i]` of the original (a whole word for a digit read from it)."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, start: int, end: int, type: str) -> Span:
        return Span(self.starts[start], self.ends[end - 1], type)


def reading(text: str) -> Reading:
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    cursor = 0
    tokens = list(_TOKEN.finditer(text))

    def keep(upto: int) -> None:
        nonlocal cursor
        out.append(text[cursor:upto])
        starts.extend(range(cursor, upto))
        ends.extend(range(cursor + 1, upto + 1))
        cursor = upto

    i = 0
    while i < len(tokens):
        m = tokens[i]
        word = m.group(0).lower()
        digits, end = "", m.end()
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        following = nxt.group(0).lower() if nxt is not None else ""
        joined = nxt is not None and text[m.end() : nxt.start()].strip(" -") == ""
        if word in _TENS and following in _UNITS and following != "oh" and joined:
            assert nxt is not None
            digits, end = _TENS[word] + _UNITS[following], nxt.end()
            i += 1
        elif word in _TENS:
            digits = _TENS[word] + "0"
        elif word in _TEENS:
            digits = _TEENS[word]
        elif word in _UNITS and (word != "oh" or _digit_near(text, tokens, i)):
            digits = _UNITS[word]
        elif word in ("double", "triple") and following in _UNITS and nxt is not None:
            digits, end = _UNITS[following] * (2 if word == "double" else 3), nxt.end()
            i += 1
        if digits:
            keep(m.start())
            out.append(digits)
            starts.extend([m.start()] * len(digits))
            ends.extend([end] * len(digits))
            cursor = end
        i += 1
    keep(len(text))
    return Reading("".join(out), tuple(starts), tuple(ends))


def _digit_near(text: str, tokens: Sequence[re.Match[str]], i: int) -> bool:
    """ "oh" is a zero only said among digits ("five oh one"), not "one, oh I see"."""
    for j in (i - 1, i + 1):
        if 0 <= j < len(tokens):
            a, b = sorted((i, j))
            if text[tokens[a].end() : tokens[b].start()].strip(" -"):
                continue
            w = tokens[j].group(0).lower()
            if w.isdigit() or (w in _UNITS and w != "oh") or w in _TEENS or w in _TENS:
                return True
    return False


@dataclass(frozen=True)
class _Run:
    start: int  # in the reading
    end: int
    digits: str


def _runs(text: str) -> list[_Run]:
    return [_Run(m.start(), m.end(), re.sub(r"\D", "", m.group(0))) for m in _RUN.finditer(text)]


class Redactor:
    """Finds the spans of the kinds it was made for in a text."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = frozenset(kinds)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def find(self, text: str, *, card_context: bool = False, draft: bool = False) -> list[Span]:
        """Spans to remove, not overlapping, in order. `card_context`: the caller was
        giving a card shortly before. `draft`: a partial, still growing, in which a
        card number may not be whole yet: any run of 4 digits or more goes (a price
        or a year shows again in the final)."""
        if not self.kinds or not text:
            return []
        read = reading(text)
        runs = _runs(read.text)
        spans: list[Span] = []
        if "card" in self.kinds:
            spans += self._cards(read, runs, card_context, draft)
        if "national_id" in self.kinds:
            spans += self._national_ids(read, runs)
        if "iban" in self.kinds:
            spans += self._accounts(read, runs)
        if "phone" in self.kinds:
            spans += _phones(read)
        if "email" in self.kinds:
            spans += [Span(m.start(), m.end(), "email") for m in EMAIL_CANDIDATE.finditer(text)]
            spans += [Span(m.start(), m.end(), "email") for m in SPOKEN_EMAIL.finditer(text)]
            spans += [
                Span(m.start(), m.end(), "email")
                for m in _HALF_SPOKEN_EMAIL.finditer(text)
                if m.group(1).lower() not in _NOT_A_MAILBOX
            ]
        if "name" in self.kinds:
            spans += _names(text)
        return _disjoint(spans)

    def mentions_card(self, text: str) -> bool:
        return "card" in self.kinds and bool(_CARD_WORDS.search(text))

    def _cards(self, read: Reading, runs: list[_Run], context: bool, draft: bool) -> list[Span]:
        text = read.text
        named = context or bool(_CARD_WORDS.search(text))
        spans = []
        for run in runs:
            # A run as long as a card goes whether it passes Luhn or not: recognisers
            # mishear a digit ("4539, 1-4880, 0-3-4-3" for 4539 1488 0343), and the
            # other fifteen are still the card; the whole run, as digits said around a
            # card belong to it (the expiry said straight after). In a card context
            # any run of 5 or more is part of one: a card read out in two breaths is
            # two finals of 8 digits (3-4 digits are a security code).
            size = len(run.digits)
            if size >= 13 or (size >= 5 and named):
                spans.append(read.span(run.start, run.end, "card_number"))
            elif size >= 4 and draft:
                spans.append(read.span(run.start, run.end, "digits"))
        expiry_named = bool(_EXPIRY_WORDS.search(text))
        if named or expiry_named:
            for m in (*_EXPIRY.finditer(text), *_MONTH_YEAR.finditer(text)):
                spans.append(read.span(m.start(), m.end(), "card_expiry"))
        if expiry_named:  # "oh five twenty seven": MMYY
            spans += [
                read.span(run.start, run.end, "card_expiry")
                for run in runs
                if len(run.digits) == 4 and 1 <= int(run.digits[:2]) <= 12
            ]
        if named or _SECURITY_WORDS.search(text):
            spans += [
                read.span(run.start, run.end, "card_security_code")
                for run in runs
                if len(run.digits) in (3, 4)
            ]
        return spans

    def _national_ids(self, read: Reading, runs: list[_Run]) -> list[Span]:
        text = read.text
        spans = [
            read.span(m.start(), m.end(), "national_id")
            for m in _SSN.finditer(text)
            if ssn.is_valid(m.group(0))
        ]
        spans += [
            read.span(m.start(), m.end(), "national_id")
            for m in _DNI.finditer(text)
            if dni.is_valid(m.group(1) + m.group(2))
        ]
        spans += [
            read.span(m.start(), m.end(), "national_id")
            for m in _NIE.finditer(text)
            if nie.is_valid("".join(m.groups()))
        ]
        spans += [read.span(m.start(), m.end(), "national_id") for m in _NINO.finditer(text)]
        named = bool(_ID_WORDS.search(text))
        for run in runs:
            if (len(run.digits) == 15 and nir.is_valid(run.digits)) or (
                named and len(run.digits) >= 6
            ):
                spans.append(read.span(run.start, run.end, "national_id"))
        return spans

    def _accounts(self, read: Reading, runs: list[_Run]) -> list[Span]:
        text = read.text
        spans = []
        for m in _IBAN_START.finditer(text):
            # the longest stretch of letters, digits and spaces from here that is an IBAN
            rest = re.match(r"[A-Z0-9 ]{0,50}", text[m.start() :], re.IGNORECASE)
            assert rest is not None
            chunk = rest.group(0)
            for end in range(len(chunk), 14, -1):
                candidate = chunk[:end]
                if candidate.endswith(" "):
                    continue
                if stdnum_iban.is_valid(candidate.replace(" ", "")):
                    spans.append(read.span(m.start(), m.start() + end, "iban"))
                    break
        if _ACCOUNT_WORDS.search(text):
            spans += [
                read.span(r.start, r.end, "account_number") for r in runs if len(r.digits) >= 6
            ]
        return spans


def _phones(read: Reading) -> list[Span]:
    found = []
    for match in phonenumbers.PhoneNumberMatcher(
        read.text, "US", leniency=phonenumbers.Leniency.POSSIBLE
    ):
        found.append(read.span(match.start, match.end, "phone"))
    return found


def _names(text: str) -> list[Span]:
    spans = []
    for intro in _NAME_INTRO.finditer(text):
        cursor, end = intro.end(), None
        for _ in range(3):  # a first name and up to two surnames
            m = _NAME_WORD.match(text, cursor)
            if m is None:
                break
            end = m.end()
            cursor = end + 1 if text[end : end + 1] == " " else end
        if end is not None:
            spans.append(Span(intro.end(), end, "name"))
    return spans


def _disjoint(spans: list[Span]) -> list[Span]:
    """Overlapping spans merged; the earlier or longer one names the result."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if out and s.start < out[-1].end:
            last = out[-1]
            out[-1] = Span(last.start, max(last.end, s.end), last.type)
        else:
            out.append(s)
    return out


@dataclass(frozen=True)
class Redacted:
    text: str
    spans: tuple[Span, ...]  # in the redacted text: where each placeholder stands
    originals: tuple[Span, ...]  # the same, in the original text

    def position(self, old: int) -> int:
        """Where an index of the original text landed (inside a span: its start)."""
        shift = 0
        for was, now in zip(self.originals, self.spans, strict=True):
            if old < was.start:
                break
            if old < was.end:
                return now.start
            shift = now.end - was.end
        return old + shift


def apply(text: str, spans: Sequence[Span]) -> Redacted:
    """The text with each span replaced by its placeholder."""
    parts: list[str] = []
    placed: list[Span] = []
    cursor = length = 0
    for s in spans:
        parts.append(text[cursor : s.start])
        length += s.start - cursor
        mark = PLACEHOLDERS[s.type]
        placed.append(Span(length, length + len(mark), s.type))
        parts.append(mark)
        length += len(mark)
        cursor = s.end
    parts.append(text[cursor:])
    return Redacted("".join(parts), tuple(placed), tuple(spans))
