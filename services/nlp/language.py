"""Which language a text is in, and how sure that is (lingua, models shipped in its wheel).

A text is *reliable* only when the best language beats the next by lingua's
minimum relative distance: "ok", "hello hola" or "Quiero el iPhone, thanks"
come back unreliable, with their candidates, never as a confident guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from percept.runtime.settings import NLP_LANGUAGES

MIN_RELATIVE_DISTANCE = 0.1  # chosen on short customer sentences (tests/unit/test_nlp_language.py)


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
    candidates: tuple[tuple[str, float], ...]


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
        candidates = tuple(
            (v.language.iso_code_639_1.name.lower(), round(float(v.value), 4))
            for v in values[:3]
            if v.value > 0
        )
        best = self._detector.detect_language_of(text)
        if best is None or not candidates:
            return Detection("", candidates[0][1] if candidates else 0.0, False, candidates)
        code = best.iso_code_639_1.name.lower()
        confidence = dict(candidates).get(code, 0.0)
        return Detection(code, confidence, True, candidates)
