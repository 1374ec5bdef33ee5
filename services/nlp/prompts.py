"""The assistant's own words, written per language.

A visitor in Spanish should read Spanish a person wrote, not English through
rule-based MT. `prompts/<tag>.yaml` holds every prompt the assistant says for
one language (the packaged English, Spanish and French; PERCEPT_NLP_PROMPTS_DIR
replaces them with a company's own). English must be complete: it is what MT
starts from for a language with no file. A file missing a prompt, or with a
placeholder the English does not have, is refused at start-up, naming both.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from percept.nlp.language_tags import LanguageTagError, check_tag, primary

ENGLISH = "en"
NAMES = (
    "greeting",
    "thanks",
    "thanks_name",
    "open_question",
    "not_understood",
    "do_you_mean",
    "asking_about",
    "handoff_visitor_request",
    "handoff_complaint",
    "handoff_low_confidence",
    "leave_contact",
    "ask_product",
    "ask_quantity",
    "ask_timeline",
    "ask_budget",
    "ask_decision_role",
    "ask_name",
    "ask_contact",
    "salesperson_joined",
    "salesperson_left",
    "salesperson_gone",
    "callback_promise",
)


class PromptsError(ValueError):
    """A prompts file is malformed; the message names the file and the prompt."""


@dataclass(frozen=True)
class Prompts:
    """One language's prompts and the lead-in words taken off a visitor's answer."""

    language: str
    texts: Mapping[str, str]
    lead_ins: tuple[str, ...] = ()
    _lead_in: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def say(self, prompt: str, /, **values: str) -> str:
        return self.texts[prompt].format(**values)

    def without_lead_in(self, text: str) -> str:
        """The visitor's words without "soy la", "I am"... in front, nor end punctuation."""
        words = text.strip().rstrip(".!?¡¿ ").lstrip("¡¿ ")
        if self._lead_in is not None:
            words = self._lead_in.sub("", words, count=1)
        return words.strip()


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def parse(text: str, name: str, language: str, english: Prompts | None = None) -> Prompts:
    """One file's prompts; with `english`, checked against it (every prompt, same fields)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptsError(f"{name}: not valid YAML: {exc}") from exc
    raw = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise PromptsError(f"{name}: expected a mapping with the prompts under 'prompts'")
    unknown = sorted(set(raw) - set(NAMES))
    if unknown:
        raise PromptsError(f"{name}: {unknown[0]!r} is not a prompt the assistant says")
    missing = [p for p in NAMES if p not in raw]
    if missing:
        raise PromptsError(
            f"{name}: prompt {missing[0]!r} is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    texts: dict[str, str] = {}
    for prompt in NAMES:
        value = raw[prompt]
        if not isinstance(value, str) or not value.strip():
            raise PromptsError(f"{name}: prompt {prompt!r} is empty or not text")
        try:
            fields = _placeholders(value)
        except ValueError as exc:
            raise PromptsError(f"{name}: prompt {prompt!r}: {exc}") from exc
        wanted = _placeholders(english.texts[prompt]) if english else fields
        if fields - wanted:
            raise PromptsError(
                f"{name}: prompt {prompt!r} uses {{{sorted(fields - wanted)[0]}}}, "
                f"which the English prompt does not fill"
            )
        texts[prompt] = value.strip()
    lead_ins = data.get("lead_ins") or []
    if not isinstance(lead_ins, list) or not all(isinstance(w, str) for w in lead_ins):
        raise PromptsError(f"{name}: 'lead_ins' must be a list of words")
    ordered = tuple(sorted({w.strip().lower() for w in lead_ins if w.strip()}, key=len)[::-1])
    pattern = (
        re.compile(r"^(?:" + "|".join(re.escape(w) for w in ordered) + r")\b\s*", re.IGNORECASE)
        if ordered
        else None
    )
    return Prompts(language, texts, ordered, pattern)


class PromptBook:
    """Every language's prompts; `get` falls back from 'es-MX' to 'es', else None (MT)."""

    def __init__(self, by_language: Mapping[str, Prompts]) -> None:
        if ENGLISH not in by_language:
            raise PromptsError("prompts: en.yaml is required (other languages fall back to it)")
        self.by_language = dict(by_language)
        self.english = self.by_language[ENGLISH]

    def get(self, language: str) -> Prompts | None:
        return self.by_language.get(language) or self.by_language.get(primary(language))

    def languages(self) -> list[str]:
        return sorted(self.by_language)


def load_prompts(folder: Path | None = None) -> PromptBook:
    """The packaged prompts, or every `<tag>.yaml` in `folder` (en.yaml among them)."""
    files: dict[str, tuple[str, str]] = {}
    if folder is None:
        packaged = resources.files("percept.nlp").joinpath("prompts")
        for item in packaged.iterdir():
            if item.name.endswith(".yaml"):
                tag = item.name.removesuffix(".yaml")
                files[tag] = (item.read_text(encoding="utf-8"), f"prompts/{item.name} (packaged)")
    else:
        if not folder.is_dir():
            raise PromptsError(f"{folder}: not a folder of prompts files (PERCEPT_NLP_PROMPTS_DIR)")
        for path in sorted(folder.glob("*.yaml")):
            try:
                files[path.stem] = (path.read_text(encoding="utf-8"), str(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise PromptsError(f"{path}: cannot read: {exc}") from exc
    if ENGLISH not in files:
        where = folder or "the packaged prompts"
        raise PromptsError(f"{where}: en.yaml is required (other languages fall back to it)")
    english = parse(*files[ENGLISH], ENGLISH)
    book: dict[str, Prompts] = {ENGLISH: english}
    for tag, (text, name) in sorted(files.items()):
        if tag == ENGLISH:
            continue
        try:
            language = check_tag(tag)
        except LanguageTagError as exc:
            raise PromptsError(f"{name}: the file name must be a language tag: {exc}") from exc
        book[language] = parse(text, name, language, english)
    return PromptBook(book)
