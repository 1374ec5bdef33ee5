"""Suggested messages: what to say to a lead a follow-up is for, in their language.

Drafted from the company's templates (`messages.yaml`, per action and product, per
language), the lead's own words (its qualification slots) and the company's facts
(the nlp knowledge file). A line whose slot the lead never filled is left out. A
language the templates lack is drafted in English and machine-translated (the nlp
service); a fact without text in the language is translated alone. Last, the grounding
check the chat has: a line stating a number neither the facts nor the lead's words hold
(a translation that changed one) is left out, and the draft says so.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from percept.nlp.knowledge import Entry
from percept.nlp.language_tags import LanguageTagError, check_tag, primary
from percept.runtime.yaml_lines import LINE, first_error, line_of, load_with_lines, strip_lines

ACTIONS = ("call", "email", "send_quote", "support_call", "retention_call")
SLOTS = ("name", "product", "quantity", "budget", "timeline", "need", "decision_role")
OTHER_FIELDS = ("owner", "product_facts")
CHANNELS = ("email", "phone", "chat")
CHANNEL_KEYS = {"email": "email", "phone": "phone", "chat": "chat_session_id"}
WRITTEN, SPOKEN = ("email", "phone", "chat"), ("phone", "email", "chat")  # by preference
ENGLISH = "en"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # 1,299 and 1.299 are one number
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Translate = Callable[[list[str], str], Awaitable[list[str]]]  # (English texts, target tag)


class MessageTemplatesError(ValueError):
    """The templates file is wrong; the message names the file, the line and the field."""


class Phrases(BaseModel):
    model_config = ConfigDict(extra="forbid")
    greeting: str
    greeting_anonymous: str
    sign_off: str
    team: str  # who signs when the follow-up has no owner


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)
    action: str
    product: str | None = None
    subject: dict[str, str]
    lines: dict[str, list[str]]


@dataclass(frozen=True)
class MessageTemplates:
    templates: tuple[Template, ...]
    phrases: Mapping[str, Phrases]
    products: Mapping[str, Mapping[str, str]]

    def pick(self, action: str, product: str) -> Template | None:
        """The template for this action: one naming the lead's product first."""
        fitting = [t for t in self.templates if t.action == action]
        return next((t for t in fitting if t.product == product), None) or next(
            (t for t in fitting if t.product is None), None
        )

    def language_of(self, template: Template, language: str) -> str | None:
        """The tag the template is written in for `language` ('es-MX' finds 'es'), or None."""
        for tag in (language, primary(language)):
            if tag in template.lines and tag in self.phrases:
                return tag
        return None


@dataclass
class LeadWords:
    """What the lead told us and how to reach them."""

    slots: Mapping[str, str]  # qualification: name, product, quantity, budget...
    product: str  # the product interest (a catalog id), or ''
    owner: str
    language: str  # BCP-47, 'en' when unknown
    keys: Mapping[str, str]  # email, phone, chat_session_id...


@dataclass
class Draft:
    channel: str
    language: str
    subject: str
    text: str
    source: str  # template, machine_translation, mixed
    template: str
    left_out: list[str] = field(default_factory=list)  # lines dropped by the grounding check


def channel_for(action: str, keys: Mapping[str, str]) -> str:
    """E-mail for written actions and a phone script for calls, when the lead can be
    reached so; else whatever reaches them."""
    preferred = WRITTEN if action in ("email", "send_quote") else SPOKEN
    return next((c for c in preferred if keys.get(CHANNEL_KEYS[c])), preferred[0])


def _fields(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def _fill(text: str, values: Mapping[str, str]) -> str | None:
    """The text with its placeholders filled, or None when one has no value."""
    if any(f not in values for f in _fields(text)):
        return None
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _numbers(text: str) -> set[str]:
    return {re.sub(r"[.,]", "", n) for n in _NUMBER.findall(text)}


async def draft(
    templates: MessageTemplates,
    action: str,
    lead: LeadWords,
    facts: Mapping[str, Entry],
    translate: Translate | None,
    channel: str = "",
) -> Draft | None:
    """The message for a follow-up, or None when no template has the action."""
    template = templates.pick(action, lead.product)
    if template is None:
        return None
    channel = channel or channel_for(action, lead.keys)
    native = templates.language_of(template, lead.language)
    tag = native or ENGLISH
    product_facts = (
        next((e for e in facts.values() if e.product == lead.product), None)
        if lead.product
        else None
    )
    entries = {**{f"fact:{k}": v for k, v in facts.items()}, "product_facts": product_facts}
    values = {k: v for k, v in lead.slots.items() if v}
    names = templates.products.get(lead.product, {})
    if lead.product:
        values["product"] = names.get(tag) or names.get(ENGLISH) or lead.product
    phrases = templates.phrases[tag]
    values["owner"] = lead.owner or phrases.team

    # Each line in the template's language; a fact with no text in the language the
    # draft is in is translated alone, below.
    lines: list[str] = []
    foreign: list[int] = []
    for line in template.lines[tag]:
        filled = dict(values)
        untranslated = False  # a fact with no text in the draft's language
        fact = next((f for f in _fields(line) if f in entries), None)
        if fact is not None:
            entry = entries[fact]
            if entry is None:
                continue
            written = entry.answer_in(lead.language) if native else entry.answer
            untranslated = written is None
            filled[fact] = entry.answer if written is None else written
        text = _fill(line, filled)
        if text is None:  # a slot the lead never filled
            continue
        if untranslated:
            foreign.append(len(lines))
        lines.append(text)
    subject = _fill(template.subject.get(tag, template.subject[ENGLISH]), values) or ""
    greeting = _fill(phrases.greeting, values) or phrases.greeting_anonymous
    sign_off = _fill(phrases.sign_off, values) or ""

    source = "template"
    language = tag
    if native is None and lead.language != ENGLISH and translate is not None:
        whole = [subject, greeting, *lines, sign_off]
        translated = await _translate(translate, whole, lead.language)
        if translated is not None:
            subject, greeting, *lines, sign_off = translated
            source, language = "machine_translation", lead.language
    elif foreign and translate is not None:
        translated = await _translate(translate, [lines[i] for i in foreign], lead.language)
        if translated is not None:
            for i, text in zip(foreign, translated, strict=True):
                lines[i] = text
            source = "mixed"

    known = _numbers(" | ".join([*_fact_texts(entries.values()), *values.values()]))
    left_out = [line for line in [subject, *lines] if line and not _numbers(line) <= known]
    body = [line for line in lines if line not in left_out]
    return Draft(
        channel=channel,
        language=language,
        subject=subject if channel == "email" and subject not in left_out else "",
        text=_layout(channel, greeting, body, sign_off),
        source=source,
        template=template.id,
        left_out=left_out,
    )


async def _translate(translate: Translate, texts: list[str], language: str) -> list[str] | None:
    try:
        return await translate(texts, language)
    except Exception:
        return None


def _fact_texts(entries: Iterable[Entry | None]) -> Iterable[str]:
    for entry in entries:
        if entry is not None:
            yield entry.answer
            yield from entry.answers.values()


def _layout(channel: str, greeting: str, body: Sequence[str], sign_off: str) -> str:
    if channel == "email":
        return "\n\n".join([greeting, " ".join(body), sign_off])
    if channel == "phone":  # talking points for the call
        return "\n".join([greeting, *(f"• {line}" for line in body)])
    return " ".join([greeting, *body])


def parse_templates(
    text: str,
    source: str = "messages.yaml",
    fact_ids: Iterable[str] = (),
    products: Iterable[str] = (),
) -> MessageTemplates:
    """The templates of a file; `fact_ids`: the knowledge entries {fact:ID} may name,
    `products`: the catalog's product ids."""
    try:
        content = load_with_lines(text)
    except yaml.YAMLError as exc:
        raise MessageTemplatesError(f"{source}: not YAML: {exc}") from None
    if not isinstance(content, dict) or not isinstance(content.get("templates"), list):
        raise MessageTemplatesError(f"{source}: a 'templates' list is required")
    unknown = sorted(set(content) - {"phrases", "products", "templates", LINE})
    if unknown:
        raise MessageTemplatesError(
            f"{source}: {unknown[0]!r} is not phrases, products or templates"
        )
    phrases: dict[str, Phrases] = {}
    for tag, raw in (content.get("phrases") or {}).items():
        if tag == LINE:
            continue
        where = f"{source}:{line_of(raw)}: phrases.{tag}"
        _check_tag(tag, where)
        try:
            phrases[tag] = Phrases.model_validate(strip_lines(raw))
        except ValidationError as exc:
            raise MessageTemplatesError(f"{where}: {first_error(exc)}") from None
    if ENGLISH not in phrases:
        raise MessageTemplatesError(
            f"{source}: phrases.en is required (the machine-translated drafts)"
        )
    known_facts = set(fact_ids)
    allowed = {*SLOTS, *OTHER_FIELDS}
    templates: list[Template] = []
    for number, raw in enumerate(content["templates"], 1):
        where = f"{source}:{line_of(raw)}: templates[{number}]"
        try:
            template = Template.model_validate(strip_lines(raw))
        except ValidationError as exc:
            raise MessageTemplatesError(f"{where}: {first_error(exc)}") from None
        where = f"{where} ({template.id})"
        if template.action not in ACTIONS:
            raise MessageTemplatesError(
                f"{where}: action: {template.action!r} is not one of {', '.join(ACTIONS)}"
            )
        if template.product is not None and products and template.product not in set(products):
            raise MessageTemplatesError(
                f"{where}: product: {template.product!r} is not in the catalog"
            )
        texts = [(f"subject.{t}", s) for t, s in template.subject.items()]
        texts += [
            (f"lines.{t}[{i}]", s) for t, ls in template.lines.items() for i, s in enumerate(ls, 1)
        ]
        for tag in sorted({*template.subject, *template.lines}):
            _check_tag(tag, f"{where}: {tag}")
        if ENGLISH not in template.lines or ENGLISH not in template.subject:
            raise MessageTemplatesError(f"{where}: lines.en and subject.en are required")
        for name, line in texts:
            for f in _fields(line):
                fact = f.removeprefix("fact:")
                if f.startswith("fact:") and known_facts and fact not in known_facts:
                    raise MessageTemplatesError(
                        f"{where}: {name}: {{{f}}} names no knowledge entry "
                        f"(ids: {', '.join(sorted(known_facts))})"
                    )
                if not f.startswith("fact:") and f not in allowed:
                    raise MessageTemplatesError(
                        f"{where}: {name}: {{{f}}} is not a slot ({', '.join(SLOTS)}), "
                        "owner, product_facts or fact:ID"
                    )
            if sum(f.startswith("fact:") or f == "product_facts" for f in _fields(line)) > 1:
                raise MessageTemplatesError(f"{where}: {name}: one fact a line")
        if any(t.id == template.id for t in templates):
            raise MessageTemplatesError(f"{where}: id {template.id!r} is used twice")
        templates.append(template)
    products_map = {
        str(k): {t: str(n) for t, n in v.items() if t != LINE}
        for k, v in (content.get("products") or {}).items()
        if k != LINE
    }
    return MessageTemplates(tuple(templates), phrases, products_map)


def _check_tag(tag: str, where: str) -> None:
    try:
        check_tag(tag)
    except LanguageTagError as exc:
        raise MessageTemplatesError(f"{where}: {exc}") from None


def load_templates(
    understanding_dir: Path | None = None,
    fact_ids: Iterable[str] = (),
    products: Iterable[str] = (),
) -> MessageTemplates:
    """The operator's messages.yaml in the understanding dir, else the packaged one."""
    if understanding_dir is not None and (understanding_dir / "messages.yaml").is_file():
        path = understanding_dir / "messages.yaml"
        return parse_templates(path.read_text(encoding="utf-8"), str(path), fact_ids, products)
    packaged = resources.files("percept.leads").joinpath("messages.yaml")
    return parse_templates(
        packaged.read_text(encoding="utf-8"), "messages.yaml (packaged)", fact_ids, products
    )


@dataclass
class Drafting:
    """What the leads service drafts with: the templates, the company's facts by id, and
    nlp's translation (None: languages without templates get English)."""

    templates: MessageTemplates
    facts: Mapping[str, Entry]
    translate: Translate | None = None

    async def draft(self, action: str, lead: LeadWords, channel: str = "") -> Draft | None:
        return await draft(self.templates, action, lead, self.facts, self.translate, channel)
