"""Suggested messages from templates, the lead's words and the company's facts."""

from __future__ import annotations

import re

import pytest

from percept.leads.drafting import (
    LeadWords,
    MessageTemplatesError,
    channel_for,
    draft,
    load_templates,
    parse_templates,
)
from percept.nlp.knowledge import Entry, load_entries

FACTS = {e.id: e for e in load_entries()}
PRODUCTS = ("phone", "laptop", "tablet", "tv", "headphones", "watch")
TEMPLATES = load_templates(None, FACTS, PRODUCTS)


def numbers(text: str) -> set[str]:
    return {n.replace(",", "").replace(".", "") for n in re.findall(r"\d+(?:[.,]\d+)*", text)}


def grounded_numbers(lead: LeadWords) -> set[str]:
    facts = " ".join(t for e in FACTS.values() for t in (e.answer, *e.answers.values()))
    return numbers(facts) | numbers(" ".join(lead.slots.values()))


def lead(language: str = "es", **slots: str) -> LeadWords:
    return LeadWords(
        slots=slots,
        product="phone",
        owner="Luis",
        language=language,
        keys={"chat_session_id": "s-1", "email": "ana@example.com"},
    )


async def test_a_spanish_lead_gets_the_spanish_quote_with_its_own_words_and_facts() -> None:
    words = lead(name="Ana", quantity="2", budget="1500 USD")
    made = await draft(TEMPLATES, "send_quote", words, FACTS, None)
    assert made is not None
    assert (made.channel, made.language, made.source) == ("email", "es", "template")
    assert made.subject == "Tu presupuesto para el Percept Phone"
    assert made.text.startswith("Hola, Ana:\n\nGracias por tu interés en el Percept Phone.")
    assert "El Percept Phone cuesta 699 $" in made.text  # the fact as the company wrote it
    assert "Para 2 unidades" in made.text and "presupuesto de 1500 USD" in made.text
    assert made.text.endswith("Un saludo,\nLuis")
    assert numbers(made.text) <= grounded_numbers(words) and not made.left_out


async def test_what_the_lead_never_said_is_left_out_not_invented() -> None:
    made = await draft(TEMPLATES, "send_quote", lead("en"), FACTS, None)
    assert made is not None
    assert made.text.startswith("Hello,\n\nThank you for asking about the Percept Phone.")
    assert "units" not in made.text and "budget" not in made.text
    assert made.text.endswith("Best regards,\nLuis")


async def test_a_call_gets_a_phone_script_and_a_chat_lead_a_chat_message() -> None:
    phone = LeadWords({"timeline": "next week"}, "laptop", "", "en", {"phone": "+14155552671"})
    made = await draft(TEMPLATES, "call", phone, FACTS, None)
    assert made is not None and made.channel == "phone" and not made.subject
    assert made.text.splitlines()[1:3] == [
        "• I am following up on your interest in the Percept Laptop.",
        "• You mentioned you need it next week.",
    ]
    chat = LeadWords({}, "watch", "", "fr", {"chat_session_id": "s"})
    made = await draft(TEMPLATES, "email", chat, FACTS, None)
    assert made is not None and made.channel == "chat" and "\n" not in made.text
    assert made.text.startswith("Bonjour, Merci de votre intérêt pour la Percept Watch.")
    assert "cordialement" not in made.text  # a chat message is signed by who sends it
    assert channel_for("send_quote", {"phone": "+1"}) == "phone"
    assert channel_for("retention_call", {"email": "a@b"}) == "email"


async def test_a_language_without_templates_is_translated_and_checked_for_numbers() -> None:
    asked: list[tuple[list[str], str]] = []

    async def translate(texts: list[str], language: str) -> list[str]:
        asked.append((texts, language))  # a translation that changes the price
        return [f"[{language}] " + t.replace("$699", "$799") for t in texts]

    words = lead("de", quantity="3")
    made = await draft(TEMPLATES, "send_quote", words, FACTS, translate)
    assert made is not None
    assert (made.language, made.source) == ("de", "machine_translation")
    ((texts, language),) = asked
    assert language == "de" and "For 3 units I can prepare the quote today." in texts
    assert made.left_out == [
        "[de] The Percept Phone costs $799, or $649 each when you buy five or more."
    ]
    assert "799" not in made.text and "[de] For 3 units" in made.text
    assert numbers(made.text) <= grounded_numbers(words)

    async def away(texts: list[str], language: str) -> list[str]:
        raise ConnectionError("nlp is away")

    made = await draft(TEMPLATES, "send_quote", words, FACTS, away)
    assert made is not None and (made.language, made.source) == ("en", "template")
    assert "The Percept Phone costs $699" in made.text


async def test_a_fact_without_the_leads_language_is_translated_alone() -> None:
    facts = {
        **FACTS,
        "shipping": Entry("shipping", "Shipping", "We ship in 2 days."),  # English only
    }

    async def translate(texts: list[str], language: str) -> list[str]:
        assert texts == ["We ship in 2 days."]
        return ["Enviamos en 2 días."]

    made = await draft(TEMPLATES, "send_quote", lead(quantity="2"), facts, translate)
    assert made is not None and made.source == "mixed"
    assert "Enviamos en 2 días." in made.text and "Para 2 unidades" in made.text


async def test_a_line_left_out_does_not_shift_what_is_translated() -> None:
    templates = parse_templates(
        "phrases:\n"
        "  en: {greeting: 'Hi {name},', greeting_anonymous: 'Hi,', sign_off: '{owner}', team: us}\n"
        "  es: {greeting: 'Hola {name}:', greeting_anonymous: 'Hola:', sign_off: '{owner}', "
        "team: nosotros}\n"
        "templates:\n"
        "  - id: support\n"
        "    action: support_call\n"
        "    subject: {en: Sorry, es: Perdón}\n"
        "    lines:\n"
        "      en: ['{name}, {fact:hours}', 'Call us.']\n"
        "      es: ['{name}, {fact:hours}', 'Llámanos.']\n",
        "m.yaml",
        ["hours"],
    )
    facts = {"hours": Entry("hours", "Hours", "We open at 9.")}  # English only
    asked: list[list[str]] = []

    async def translate(texts: list[str], language: str) -> list[str]:
        asked.append(texts)
        return ["Abrimos a las 9."]

    nameless = LeadWords({}, "", "", "es", {"email": "a@b"})
    made = await draft(templates, "support_call", nameless, facts, translate)
    assert made is not None and "Llámanos." in made.text and asked == []  # nothing to translate
    named = LeadWords({"name": "Ana"}, "", "", "es", {"email": "a@b"})
    made = await draft(templates, "support_call", named, facts, translate)
    assert made is not None and asked == [["Ana, We open at 9."]]
    assert "Abrimos a las 9." in made.text and "Llámanos." in made.text


async def test_a_lead_without_a_product_gets_no_products_facts() -> None:
    made = await draft(TEMPLATES, "call", LeadWords({}, "", "", "en", {"phone": "+1"}), FACTS, None)
    assert made is not None
    assert "costs" not in made.text and "Business plan" not in made.text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            ('- "Hola {name}"', '- "Hola {colour}"'),
            "{colour} is not a slot (name, product, quantity",
        ),
        (("{fact:shipping}", "{fact:delivery}"), "{fact:delivery} names no knowledge entry"),
        (("action: send_quote", "action: fax"), "action: 'fax' is not one of call, email"),
        (("  - id: call\n", "  - id: quote\n"), "id 'quote' is used twice"),
        (("    lines:\n      en:", "    lines:\n      english:"), "'english' is not a BCP-47"),
    ],
)
def test_a_mistake_in_the_templates_is_refused_with_its_line(
    change: tuple[str, str], error: str
) -> None:
    text = (
        "phrases:\n"
        "  en: {greeting: 'Hello {name},', greeting_anonymous: 'Hello,', sign_off: '{owner}', "
        "team: us}\n"
        "templates:\n"
        "  - id: quote\n"
        "    action: send_quote\n"
        "    subject: {en: 'Quote'}\n"
        "    lines:\n"
        "      en:\n"
        '        - "Hola {name}"\n'
        '        - "{fact:shipping}"\n'
        "  - id: call\n"
        "    action: call\n"
        "    subject: {en: 'Call'}\n"
        "    lines: {en: ['Hi']}\n"
    )
    assert parse_templates(text, "m.yaml", FACTS, PRODUCTS).pick("call", "phone") is not None
    old, new = change
    assert old in text
    with pytest.raises(MessageTemplatesError) as caught:
        parse_templates(text.replace(old, new, 1), "m.yaml", FACTS, PRODUCTS)
    assert str(caught.value).startswith("m.yaml:")
    assert error in str(caught.value)
    assert re.match(r"m\.yaml:\d+: templates\[\d\]", str(caught.value)), str(caught.value)
