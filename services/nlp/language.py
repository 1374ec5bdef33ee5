"""Which language a text is in, and how sure that is (lingua, models shipped in its wheel).

A text is *reliable* only when the best language beats the next by lingua's
minimum relative distance: "ok", "hello hola" or "Quiero el iPhone, thanks"
come back unreliable, with their candidates, never as a confident guess.

A chat decides its language with `chat_language`: a short message ("sí",
"100 unidades", "thx", a link, an address) is too little to go on, even when
lingua calls it reliable ("sí" comes back Czech, "50 units" Catalan).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from percept.nlp.language_tags import primary
from percept.runtime.settings import NLP_LANGUAGES

MIN_RELATIVE_DISTANCE = 0.1  # chosen on short customer sentences (tests/unit/test_nlp_language.py)
# A chat's language changes only on a message of at least this many telling words
# (below), in which the new language is reliable and at least CLEAR_LEAD times as likely
# as the chat's: a sentence, not a word that several languages share.
MIN_WORDS_TO_SWITCH = 3
CLEAR_LEAD = 2.0
# While a chat has no language yet, a shorter message decides it when lingua is this sure
# of its best language and that language leads the next by CLEAR_LEAD ("gracias",
# "bonjour"; not "hola", which Catalan says too, nor "thx").
FIRST_CONFIDENCE = 0.5

_NOT_WORDS = re.compile(
    r"(?i:https?://|www\.)\S+"  # links
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|info|biz|io|[a-z]{2})(?:/\S*)?(?!\w)"
)  # and bare domains: example.com/pricing
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")  # it's, l'offre
_SENTENCE_END = re.compile(r"[.!?¿¡:;]\s*$")
# scripts written without spaces between words: each character counts as a word
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]")


def iso_639_1(code: str) -> str | None:
    """An ISO 639-1 or 639-3 code ('es', 'spa') as ISO 639-1, if lingua knows the language."""
    from lingua import IsoCode639_1, IsoCode639_3, Language

    code = code.strip().upper()
    if len(code) == 2 and hasattr(IsoCode639_1, code):
        return code.lower()
    if len(code) == 3 and hasattr(IsoCode639_3, code):
        language = Language.from_iso_code_639_3(getattr(IsoCode639_3, code))
        return str(language.iso_code_639_1.name.lower())
    return None


@dataclass(frozen=True)
class Detection:
    language: str  # ISO 639-1, empty when not reliable
    confidence: float
    reliable: bool
    candidates: tuple[tuple[str, float], ...]  # the best three
    scores: tuple[tuple[str, float], ...] = ()  # every language lingua gave a chance

    def score(self, code: str) -> float:
        return dict(self.scores or self.candidates).get(code, 0.0)


def without_addresses(text: str) -> str:
    """The text without links and e-mail addresses (lingua reads them as English)."""
    return _NOT_WORDS.sub(" ", text)


def telling_words(text: str) -> int:
    """How many words say what language a text is in: not links, addresses, numbers or
    emoji, nor one-letter words, nor a capitalised word inside a sentence (a name or a
    product: "el Percept Laptop", "Hi Ana"), unless the whole text is in capitals."""
    cleaned = without_addresses(text)
    shouting = sum(c.isupper() for c in cleaned) > sum(c.islower() for c in cleaned)
    count, previous = 0, 0  # previous: where the last word ended
    for match in _WORD.finditer(cleaned):
        word = match.group()
        gap = cleaned[previous : match.start()]  # only what lies between: linear in the text
        starts = (previous == 0 and not gap.strip()) or bool(_SENTENCE_END.search(gap))
        previous = match.end()
        unspaced = len(_UNSPACED.findall(word))
        if unspaced:
            count += unspaced
            continue
        if len(word) < 2:
            continue
        if word[0].isupper() and not starts and not shouting:
            continue
        count += 1
    return count


def chat_language(
    detection: Detection, words: int, current: str | None, usable: Callable[[str], bool]
) -> str | None:
    """The language a chat's message switches it to, or None to keep the chat's.

    `current` is the chat's language (a BCP-47 tag), None while it has none yet; `words`
    the message's telling words; `usable` says whether a language can be read and
    answered (a translation route both ways). A chat switches on a message of
    MIN_WORDS_TO_SWITCH telling words in which lingua is reliable and the new language
    leads the chat's by CLEAR_LEAD; a chat with no language yet is decided by such a
    message too, or by a shorter one lingua is FIRST_CONFIDENCE sure of."""
    best = detection.language
    if not best or not detection.reliable or not words or not usable(best):
        return None
    if current is None:
        if words >= MIN_WORDS_TO_SWITCH:
            return best
        others = [value for code, value in detection.scores or detection.candidates if code != best]
        second = max(others, default=0.0)
        clear = detection.confidence >= FIRST_CONFIDENCE
        return best if clear and detection.confidence >= CLEAR_LEAD * second else None
    language = primary(current)
    if best == language or words < MIN_WORDS_TO_SWITCH:
        return None
    if detection.confidence < CLEAR_LEAD * detection.score(language):
        return None
    return best


class LanguageDetector:
    def __init__(self, languages: tuple[str, ...] = NLP_LANGUAGES) -> None:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        unknown = [c for c in languages if not hasattr(IsoCode639_1, c.upper())]
        if unknown:
            raise ValueError(f"nlp_languages: unknown ISO 639-1 code(s): {', '.join(unknown)}")
        chosen = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in languages]
        if len(chosen) < 2:
            raise ValueError("nlp_languages: at least two languages are needed")
        self.languages = tuple(sorted(set(languages)))
        self._detector: Any = (
            LanguageDetectorBuilder.from_languages(*chosen)
            .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
            .with_preloaded_language_models()
            .build()
        )

    def detect(self, text: str) -> Detection:
        values = self._detector.compute_language_confidence_values(text)
        scores = tuple(
            (v.language.iso_code_639_1.name.lower(), round(float(v.value), 4))
            for v in values
            if v.value > 0
        )
        candidates = scores[:3]
        best = self._detector.detect_language_of(text)
        if best is None or not candidates:
            first = candidates[0][1] if candidates else 0.0
            return Detection("", first, False, candidates, scores)
        code = best.iso_code_639_1.name.lower()
        confidence = dict(scores).get(code, 0.0)
        return Detection(code, confidence, True, candidates, scores)
