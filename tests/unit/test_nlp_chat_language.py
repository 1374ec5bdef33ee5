"""How a chat decides its language, on lingua's real models: what counts as a telling word,
when a message may change a chat's language, and when it may decide a new chat's."""

from __future__ import annotations

import pytest

from percept.nlp.language import (
    LanguageDetector,
    chat_language,
    telling_words,
    without_addresses,
)

USABLE = {"en", "es", "fr", "ca", "it", "pt"}  # the installed Apertium pairs reach these


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("https://example.com/pricing", 0),
        ("ana@empresa.example", 0),
        ("see example.com/pricing", 1),
        ("+34 612 345 678", 0),
        ("👍😀", 0),
        ("100 unidades", 1),
        ("el Percept Laptop", 1),  # a product's name is no Spanish
        ("Hi Ana, I need 20 laptops", 3),  # nor is a person's ("I": one letter)
        ("iPhone 15 Pro Max", 1),
        ("HOW MUCH IS THE LAPTOP", 5),  # all in capitals: every word counts
        ("Sorry, can you answer in English? How much is the tablet?", 10),
        ("gracias, ¿y el móvil?", 3),
        ("多少钱", 3),  # no spaces between words: each character
    ],
)
def test_telling_words_leave_out_what_every_language_shares(text: str, words: int) -> None:
    assert telling_words(text) == words


def decide(detector: LanguageDetector, text: str, current: str | None) -> str | None:
    found = detector.detect(without_addresses(text))
    return chat_language(found, telling_words(text), current, USABLE.__contains__)


@pytest.mark.parametrize(
    ("current", "text"),
    [
        ("es", "sí"),  # Czech to lingua
        ("es", "100 unidades"),  # Portuguese
        ("en", "50 units"),  # Catalan
        ("en", "thx"),  # French
        ("en", "bye"),  # Danish
        ("es", "https://example.com/pricing"),  # English
        ("es", "ana@empresa.example"),
        ("es", "el Percept Laptop"),
        ("es", "la semana próxima"),  # Portuguese as much as Spanish
        ("es-MX", "Necesitamos diez portátiles."),  # the chat's own language: it stays es-MX
        ("fr", "Ich möchte zwei Laptops für mein Büro kaufen"),  # no way to answer German
    ],
)
def test_a_message_that_says_too_little_keeps_the_chats_language(
    detector: LanguageDetector, current: str, text: str
) -> None:
    assert decide(detector, text, current) is None


@pytest.mark.parametrize(
    ("current", "text", "language"),
    [
        ("es", "Sorry, can you answer in English? How much is the tablet?", "en"),
        ("es", "How much is the laptop?", "en"),
        ("es", "We want to buy 20 phones for the team.", "en"),
        ("en", "gracias, ¿y el móvil?", "es"),
        ("en", "Bonjour, combien coûte la tablette ?", "fr"),
        ("en", "Quant costa el portàtil?", "ca"),
        ("es-MX", "Can you speak English please?", "en"),
    ],
)
def test_a_sentence_in_another_language_switches_the_chat(
    detector: LanguageDetector, current: str, text: str, language: str
) -> None:
    assert decide(detector, text, current) == language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("gracias", "es"),
        ("bonjour", "fr"),
        ("buenas", "es"),
        ("precio del portátil?", "es"),
        ("hola", None),  # Spanish and Catalan alike
        ("Hola!", None),
        ("thx", None),
        ("ok", None),
        ("sí", None),  # "Czech", which nothing translates here
        ("https://example.com/pricing", None),
    ],
)
def test_a_new_chat_is_decided_by_less_when_lingua_is_clearly_sure(
    detector: LanguageDetector, text: str, language: str | None
) -> None:
    assert decide(detector, text, None) == language
