"""Redaction of cards and personal data from transcripts: the text, the words, the
entities, and what is left for the signals."""

from __future__ import annotations

import re

import pytest

from percept.speech.redacting import CallRedaction
from percept.understanding.redaction import (
    KINDS,
    RedactionKindError,
    Redactor,
    apply,
    parse_kinds,
    reading,
)
from percept.v1 import speech_pb2 as sp

CARD = "4111111111111111"  # a test Visa number: passes Luhn
EVERYTHING = Redactor(KINDS)


def redact(text: str, kinds: tuple[str, ...] = KINDS, **how: bool) -> str:
    return apply(text, Redactor(kinds).find(text, **how)).text


@pytest.mark.parametrize(
    "said",
    [
        "my card number is 4111 1111 1111 1111",
        "it's 4111-1111-1111-1111 thanks",
        "sure, 4111111111111111.",
        "four one one one one one one one one one one one one one one one",
        "four one one one, one one one one, one one one one, one one one one",
        "forty one eleven, eleven eleven, eleven eleven, eleven eleven",
        "cuatro uno uno uno uno uno uno uno uno uno uno uno uno uno uno uno",
        "quatre un un un un un un un un un un un un un un un",
    ],
)
def test_a_card_number_is_removed_however_it_is_written(said: str) -> None:
    out = redact(said, ("card",))
    assert "[card number]" in out
    assert not re.search(r"\d", out), out
    for word in ("one", "uno", "un ", "eleven"):
        assert f"{word} {word}" not in out


def test_a_card_that_fails_luhn_goes_when_the_caller_says_it_is_a_card() -> None:
    # a misheard digit must not leak the other fifteen
    assert redact("the card is 4111 1111 1111 1112", ("card",)) == "the card is [card number]"
    # a run as long as a card goes even unnamed: as tiny.en wrote one, a digit doubled
    said = "Sure, my car number is 4539, 1-4880, 0-3-4-3, 6-4-6-7."
    assert redact(said, ("card",)) == "Sure, my car number is [card number]."
    # twelve digits are a card only when the caller says so
    assert redact("the order is 4111 1111 1112", ("card",)) == "the order is 4111 1111 1112"
    assert redact("my card: 4111 1111 1112", ("card",)) == "my card: [card number]"
    # a card read out in two breaths: half of it in each final
    assert redact("my card number is 4539 1488", ("card",)) == "my card number is [card number]"
    assert redact("then 0343 6467", ("card",), card_context=True) == "then [card number]"


def test_expiry_and_security_code_said_with_a_card() -> None:
    out = redact(f"card {CARD} expires 05/27 and the security code is 737", ("card",))
    assert (
        out == "card [card number] expires [card expiry] and the security code is [security code]"
    )
    assert redact("expiry date oh five twenty seven", ("card",)) == "expiry date [card expiry]"
    # the same numbers in a sales call are not card data
    said = "I want 2 laptops for 1299 dollars by May 2027"
    assert redact(said, ("card",)) == said
    # but within a minute of a card they are (the channel's card context)
    assert "[security code]" in redact("it's 737", ("card",), card_context=True)


def test_national_ids_and_ibans_pass_their_check_digits() -> None:
    assert redact("my social security number is 536-90-4399") == (
        "my social security number is [national id]"
    )
    assert redact("mi DNI es 12345678Z") == "mi DNI es [national id]"
    assert redact("mi DNI es 12345678A", ("iban",)) == "mi DNI es 12345678A"
    assert redact("mi NIE es X1234567L") == "mi NIE es [national id]"
    assert redact("My IBAN is ES91 2100 0418 4502 0005 1332.") == "My IBAN is [iban]."
    assert redact("GB82 WEST 1234 5698 7654 32 please") == "[iban] please"
    # a wrong check digit is no IBAN (and no account was named)
    assert redact("code ES92 2100 0418 4502 0005 1332", ("iban",)).endswith("1332")


def test_contacts_and_names_only_when_asked() -> None:
    said = "I'm Ana Silva, ana dot silva at example dot com, 415 555 0123"
    assert redact(said, ("card",)) == said
    assert redact(said, ("email", "phone", "name")) == "I'm [name], [email], [phone]"
    # half spoken, as Whisper writes an address; "me at" is no mailbox
    assert redact("it's ana.silva at example.com", ("email",)) == "it's [email]"
    assert redact("email me at example.com", ("email",)) == "email me at example.com"


def test_number_words_keep_their_place_in_the_text() -> None:
    read = reading("call five oh one, oh I see")
    assert read.text == "call 5 0 1, oh I see"
    span = read.span(5, 10, "phone")
    assert "call five oh one, oh I see"[span.start : span.end] == "five oh one"


def test_an_unknown_kind_is_named() -> None:
    with pytest.raises(RedactionKindError, match=r"'cards' is not a redaction kind \(card, "):
        parse_kinds(["card", "cards"], field="config.redact")
    assert parse_kinds(["none"]) == frozenset()
    assert parse_kinds([" Card ", "email"]) == {"card", "email"}


def _final(
    text: str, words: list[tuple[str, float, float]], start: float = 0.0
) -> sp.RecognitionEvent:
    event = sp.RecognitionEvent(
        type=sp.RecognitionEvent.EVENT_TYPE_FINAL,
        transcript=text,
        words=[sp.WordInfo(word=w) for w, _, _ in words],
    )
    for info, (_, a, b) in zip(event.words, words, strict=True):
        info.start_offset.FromNanoseconds(int(a * 1e9))
        info.end_offset.FromNanoseconds(int(b * 1e9))
    event.start_offset.FromNanoseconds(int(start * 1e9))
    event.end_offset.FromNanoseconds(int((start + 5) * 1e9))
    return event


def test_a_final_is_redacted_in_its_text_words_and_entities() -> None:
    text = "Buy two laptops, card 4111 1111 1111 1111, mail ana@example.com"
    words = [(" Buy", 0, 0.3), (" two", 0.3, 0.5), (" laptops,", 0.5, 1.0), (" card", 1.0, 1.3)]
    words += [(" 4111", 1.3, 1.8), (" 1111", 1.8, 2.2), (" 1111", 2.2, 2.6), (" 1111,", 2.6, 3.0)]
    words += [(" mail", 3.0, 3.3), (" ana@example.com", 3.3, 4.0)]
    event = _final(text, words)
    entities = [  # a number the entity finder read out of the card digits, too
        ("quantity", "two", "2", 4),
        ("product", "laptops", "laptop", 8),
        ("quantity", "4111", "4111", 22),
        ("email", "ana@example.com", "ana@example.com", 48),
    ]
    for kind, span, value, at in entities:
        event.entities.add(
            type=kind, text=span, normalized_value=value, start_char=at, end_char=at + len(span)
        )
    contacts = CallRedaction(Redactor(("card", "email"))).apply(event)
    assert event.transcript == "Buy two laptops, card [card number], mail [email]"
    assert "1111" not in str(event) and "ana@" not in str(event)
    assert [c.value for c in contacts] == ["ana@example.com"]  # for the identity key only
    kept = [
        (e.type, event.transcript[e.start_char : e.end_char], e.redacted) for e in event.entities
    ]
    assert kept == [
        ("quantity", "two", False),
        ("product", "laptops", False),
        ("card_number", "[card number]", True),
        ("email", "[email]", True),
    ]
    assert all(not e.normalized_value for e in event.entities if e.redacted)
    said = [
        (w.word, w.start_offset.ToNanoseconds() / 1e9, w.end_offset.ToNanoseconds() / 1e9)
        for w in event.words
    ]
    assert said[4] == (" [card number]", 1.3, 3.0)  # one word, timed over the digits
    assert [w for w, _, _ in said] == [
        " Buy", " two", " laptops,", " card", " [card number]", " mail", " [email]"
    ]  # fmt: skip


def test_a_security_code_after_a_card_in_a_later_final_is_redacted() -> None:
    call = CallRedaction(Redactor(("card",)))
    call.apply(_final(f"the card is {CARD}", [], start=10))
    later = _final("and it's 737 on the back", [], start=20)
    call.apply(later)
    assert later.transcript == "and it's [security code] on the back"
    # the other channel (the agent) is not in the customer's card context
    agent = _final("that's 737 dollars", [], start=20)
    agent.channel = 1
    call.apply(agent)
    assert agent.transcript == "that's 737 dollars"
    # nor is the same channel two minutes on
    much_later = _final("room 737", [], start=140)
    call.apply(much_later)
    assert much_later.transcript == "room 737"


def test_a_partial_hides_a_card_that_is_not_whole_yet() -> None:
    partial = sp.RecognitionEvent(
        type=sp.RecognitionEvent.EVENT_TYPE_PARTIAL,
        transcript="my number is 4111 1111 11",
        stable_prefix="my number is 4111 1111",
    )
    CallRedaction(Redactor(("card",))).apply(partial)
    assert not re.search(r"\d", partial.transcript + partial.stable_prefix)


def test_contacts_are_not_kept_when_the_deployment_says_so() -> None:
    event = _final("mail me at ana@example.com", [])
    event.entities.add(type="email", text="ana@example.com", normalized_value="ana@example.com")
    assert CallRedaction(Redactor(("email",)), contacts_as_keys=False).apply(event) == []
    assert "ana@" not in str(event)


def test_a_card_read_out_in_two_finals_is_redacted_in_both() -> None:
    call = CallRedaction(Redactor(("card",)))
    first, second = _final("my card number is 4539 1488", [], 3), _final("0343 6467", [], 9)
    call.apply(first)
    call.apply(second)
    assert (first.transcript, second.transcript) == (
        "my card number is [card number]",
        "[card number]",
    )
