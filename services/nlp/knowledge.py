"""The company's knowledge the assistant answers from, and retrieval over it.

Entries come from YAML or CSV the company edits (PERCEPT_NLP_KNOWLEDGE_FILE;
the packaged knowledge.yaml otherwise). A title or an answer is English text,
or a mapping from BCP-47 tags to the text in each language (English required:
retrieval and machine translation start from it). A visitor's message is embedded with
all-MiniLM-L6-v2 and compared with each entry's title and questions; the best
cosine per entry is its score. Errors name the file and line at start-up.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from percept.nlp.language_tags import LanguageTagError, check_tag, primary
from percept.runtime.settings import Settings
from percept.runtime.yaml_lines import LINE, load_with_lines
from percept.understanding.classifier import Embedder

FIELDS = ("id", "title", "answer", "questions", "product")
OTHER_PRODUCT_PENALTY = 0.1
ENGLISH = "en"


class KnowledgeError(ValueError):
    """The knowledge file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    id: str
    title: str  # English
    answer: str  # English
    questions: tuple[str, ...] = ()
    product: str = ""
    titles: Mapping[str, str] = field(default_factory=dict)  # other languages, by tag
    answers: Mapping[str, str] = field(default_factory=dict)

    def title_in(self, language: str) -> str | None:
        """The title written in `language` ('es-MX' falls back to 'es'), None if not."""
        return _written_in(language, self.title, self.titles)

    def answer_in(self, language: str) -> str | None:
        return _written_in(language, self.answer, self.answers)


def _written_in(language: str, english: str, others: Mapping[str, str]) -> str | None:
    if language == ENGLISH or primary(language) == ENGLISH:
        return english
    found = others.get(language) or others.get(primary(language))
    if found is None:  # 'es' asked, only 'es-MX' written: a variant beats MT
        found = next((t for tag, t in others.items() if primary(tag) == primary(language)), None)
    return found


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float  # cosine similarity of the closest title or question


def _entry(raw: dict[str, Any], where: str, seen: set[str]) -> Entry:
    unknown = sorted(set(raw) - {*FIELDS, LINE})
    if unknown:
        raise KnowledgeError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    value = raw.get("id")
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeError(f"{where}: 'id' is missing or not text")
    title, titles = _texts(raw.get("title"), "title", where)
    answer, answers = _texts(raw.get("answer"), "answer", where)
    entry_id = raw["id"].strip()
    if entry_id in seen:
        raise KnowledgeError(f"{where}: id {entry_id!r} is used twice")
    seen.add(entry_id)
    questions = raw.get("questions") or []
    if isinstance(questions, str):
        questions = [q for q in questions.split("|")]
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise KnowledgeError(f"{where}: 'questions' must be a list of texts")
    product = raw.get("product") or ""
    if not isinstance(product, str):
        raise KnowledgeError(f"{where}: 'product' must be a product id from catalog.yaml")
    return Entry(
        entry_id,
        title,
        answer,
        tuple(q.strip() for q in questions if q.strip()),
        product.strip(),
        titles,
        answers,
    )


def _texts(value: Any, name: str, where: str) -> tuple[str, dict[str, str]]:
    """(English, {tag: text} of the other languages) of a title or an answer."""
    if isinstance(value, str) and value.strip():
        return value.strip(), {}
    if not isinstance(value, dict):
        raise KnowledgeError(f"{where}: {name!r} is missing or not text")
    line = value.pop(LINE, None)
    at = f"{where.rsplit(' line ', 1)[0]} line {line}" if line else where
    texts: dict[str, str] = {}
    for tag, text in value.items():
        try:
            language = check_tag(str(tag))
        except LanguageTagError as exc:
            raise KnowledgeError(f"{at}: {name}: {exc}") from exc
        if not isinstance(text, str) or not text.strip():
            raise KnowledgeError(f"{at}: {name} in {language!r} is empty or not text")
        if language in texts:
            raise KnowledgeError(f"{at}: {name} has {language!r} twice")
        texts[language] = text.strip()
    english = texts.pop(ENGLISH, None)
    if english is None:
        raise KnowledgeError(
            f"{at}: {name} has no English ('en') text (retrieval and translation start from it)"
        )
    return english, texts


def parse_yaml(text: str, name: str) -> list[Entry]:
    try:
        data = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name} line {mark.line + 1}, column {mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise KnowledgeError(f"{where}: not valid YAML: {problem}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise KnowledgeError(f"{name}: expected a mapping with a list under 'entries'")
    seen: set[str] = set()
    entries = []
    for i, raw in enumerate(data["entries"]):
        if not isinstance(raw, dict):
            raise KnowledgeError(f"{name}: entry #{i + 1} is not a mapping")
        entries.append(_entry(raw, f"{name} line {raw[LINE]}", seen))
    if not entries:
        raise KnowledgeError(f"{name}: no entries")
    return entries


def parse_csv(text: str, name: str) -> list[Entry]:
    reader = csv.DictReader(text.splitlines())
    missing = {"id", "title", "answer"} - {c.partition(".")[0] for c in reader.fieldnames or ()}
    if missing:
        raise KnowledgeError(f"{name} line 1: missing column(s) {', '.join(sorted(missing))}")
    seen: set[str] = set()
    entries = []
    for row in reader:
        if None in row:
            raise KnowledgeError(f"{name} line {reader.line_num}: more values than columns")
        values: dict[str, Any] = {}
        for column, value in row.items():
            if not value:
                continue
            field_name, dot, tag = column.partition(".")  # answer.es: the answer in Spanish
            if dot and field_name in ("title", "answer"):
                values.setdefault(f"{field_name}.", {})[tag] = value
            else:
                values[column] = value  # an unknown column is refused by _entry
        for field_name in ("title", "answer"):
            translated = values.pop(f"{field_name}.", None)
            if translated is not None:
                english = {"en": values[field_name]} if values.get(field_name) else {}
                values[field_name] = {**english, **translated}
        entries.append(_entry(values, f"{name} line {reader.line_num}", seen))
    if not entries:
        raise KnowledgeError(f"{name}: no entries")
    return entries


def load_entries(path: Path | None = None) -> list[Entry]:
    if path is None:
        packaged = resources.files("percept.nlp").joinpath("knowledge.yaml")
        return parse_yaml(packaged.read_text(encoding="utf-8"), "knowledge.yaml (packaged)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{path}: cannot read: {exc}") from exc
    if path.suffix.lower() == ".csv":
        return parse_csv(text, str(path))
    return parse_yaml(text, str(path))


class KnowledgeBase:
    def __init__(self, entries: Sequence[Entry], embedder: Embedder) -> None:
        self.entries = list(entries)
        self._embedder = embedder
        owners, texts = [], []
        for i, entry in enumerate(self.entries):
            for text in (entry.title, *entry.questions):
                owners.append(i)
                texts.append(_plain(text))
        self._owner = np.array(owners)
        self._products = np.array([e.product for e in self.entries])
        self._vectors = embedder.embed(texts)

    def search(self, text: str, k: int = 3, product: str = "") -> list[Hit]:
        """The k closest entries; with `product` (named or under discussion), entries
        about another product rank lower: "battery life of the headphones" is not
        the phone's battery."""
        query = self._embedder.embed([_plain(text)])[0]
        similarity = self._vectors @ query
        best = np.full(len(self.entries), -1.0)
        np.maximum.at(best, self._owner, similarity)
        if product:
            best = best - OTHER_PRODUCT_PENALTY * self._other_product(product)
        order = np.argsort(-best)[:k]
        return [Hit(self.entries[i], float(best[i])) for i in order]

    def _other_product(self, product: str) -> Any:
        return (self._products != "") & (self._products != product)


def _plain(text: str) -> str:
    """Without end punctuation, which moves MiniLM's cosines by up to 0.07."""
    return text.strip().rstrip("?!.¿¡ ").strip()


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
