"""Chat through gRPC on the real models (MiniLM, lingua, Apertium) with a real leads
server: scripted conversations that qualify a lead in English and in Spanish,
knowledge answers, hand-offs, streaming, sessions, and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import yaml
from chat_scripts import ENGLISH_CHAT, SPANISH_CHAT
from local_servers import local_settings

from percept.leads.service import LeadsService
from percept.nlp.knowledge import load_entries
from percept.nlp.prompts import load_prompts
from percept.nlp.service import NlpService
from percept.runtime.ratelimit import RateLimiter
from percept.runtime.server import ServiceHost
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, nlp_pb2, nlp_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
# the slots a lead has once the visitor gave everything but contacts (e-mail, phone)
ALL_SLOTS = {"need", "product", "quantity", "budget", "timeline", "decision_role", "name"}
QUESTIONS = {
    name.removeprefix("ask_"): text
    for name, text in load_prompts().english.texts.items()
    if name.startswith("ask_")
}


@dataclass
class Suite:
    nlp: nlp_pb2_grpc.NlpAsyncStub
    leads: leads_pb2_grpc.LeadsAsyncStub
    nlp_host: ServiceHost
    data: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    root = tmp_path_factory.mktemp("chat")
    leads_settings = local_settings(root / "leads")
    leads = ServiceHost(LeadsService(leads_settings), leads_settings)
    await leads.start()
    await asyncio.wait_for(leads.ready.wait(), 60)
    nlp_settings = local_settings(root / "nlp", leads_address=leads.address)
    nlp = ServiceHost(NlpService(nlp_settings), nlp_settings)
    await nlp.start()
    await asyncio.wait_for(nlp.ready.wait(), 180)
    async with (
        grpc.aio.insecure_channel(nlp.address) as nlp_channel,
        grpc.aio.insecure_channel(leads.address) as leads_channel,
    ):
        yield Suite(
            nlp_pb2_grpc.NlpStub(nlp_channel),
            leads_pb2_grpc.LeadsStub(leads_channel),
            nlp,
            root / "nlp",
        )
    await nlp.stop(grace=1)
    await leads.stop(grace=1)


async def converse(
    stub: nlp_pb2_grpc.NlpAsyncStub, lines: list[str], campaign_id: str = ""
) -> list[nlp_pb2.ChatReply]:
    replies: list[nlp_pb2.ChatReply] = []
    session = ""
    for line in lines:
        turn = nlp_pb2.ChatTurn(session_id=session, text=line, campaign_id=campaign_id)
        reply = await stub.Chat(turn)
        session = reply.session_id
        replies.append(reply)
    return replies


def slots(reply: nlp_pb2.ChatReply) -> dict[str, str]:
    return {s.name: s.value for s in reply.qualification if s.filled}


async def lead_of(suite: Suite, session_id: str, want: int, email: str) -> leads_pb2.Lead:
    """The chat's lead once `want` slots and the e-mail have arrived (the outbox is async)."""
    lead = None
    for _ in range(150):
        page = await suite.leads.ListLeads(leads_pb2.ListLeadsRequest(page_size=100))
        lead = next((x for x in page.leads if x.identity.chat_session_id == session_id), None)
        if lead is not None and len(lead.qualification) >= want and lead.identity.email == email:
            return lead
        await asyncio.sleep(0.1)
    raise AssertionError(f"no lead with {want} qualification slots for {session_id}: {lead}")


async def test_an_english_chat_qualifies_the_lead_and_leads_gets_it(suite: Suite) -> None:
    replies = await converse(suite.nlp, ENGLISH_CHAT)
    last = replies[-1]
    assert slots(last) == {
        "need": "ten laptops for our new office",
        "product": "laptop",
        "quantity": "10",
        "timeline": "next month",
        "budget": "15000.00 USD",
        "decision_role": "it manager (decision maker)",
        "name": "John Miller",
        "email": "john.miller@acme.example",
        "phone": "+14155550134",
    }
    assert "$1,299" in replies[1].text and replies[1].sources[0].id == "laptop-price"
    assert all(r.language_code == "en" and not r.handoff for r in replies)
    # every slot asked at most once here, and never after it was known
    texts = [r.text for r in replies]
    for slot, question in QUESTIONS.items():
        asked_at = [i for i, t in enumerate(texts) if question in t]
        assert len(asked_at) <= 1, (slot, texts)
    assert not any(QUESTIONS["product"] in t for t in texts)  # "the laptop" said it

    lead = await lead_of(suite, last.session_id, len(ALL_SLOTS), "john.miller@acme.example")
    assert lead.product_interest == "laptop"
    assert dict(lead.qualification).items() >= {"budget": "15000.00 USD", "quantity": "10"}.items()
    full = await suite.leads.GetLead(
        leads_pb2.GetLeadRequest(lead_id=lead.lead_id, include_timeline=True)
    )
    kinds = {t.kind for t in full.timeline}
    assert {
        common_pb2.SIGNAL_KIND_INTENT,
        common_pb2.SIGNAL_KIND_QUALIFICATION_SLOT,
        common_pb2.SIGNAL_KIND_CONTACT_CAPTURED,
    } <= kinds
    assert common_pb2.SOURCE_CHAT in full.channels


async def test_a_spanish_chat_is_answered_in_spanish_and_qualifies_the_lead(
    suite: Suite,
) -> None:
    replies = await converse(suite.nlp, SPANISH_CHAT)
    assert all(r.language_code == "es" for r in replies)
    # answered from the knowledge's Spanish text and the Spanish prompts, not MT
    assert replies[0].text.startswith("El Percept Laptop cuesta 1299 $ con 16 GB de memoria")
    assert "¿Cuántas unidades necesitas?" in replies[0].text
    assert all(r.text_source == "native" for r in replies)
    filled = slots(replies[-1])
    assert ALL_SLOTS | {"email", "phone"} == set(filled)  # every slot
    assert filled["phone"] == "+34612345678"
    assert filled["budget"] == "15000.00 EUR" and filled["quantity"] == "10"
    assert filled["name"] == "Ana García" and filled["email"] == "ana.garcia@empresa.example"
    assert "decision maker" in filled["decision_role"]  # the English reading, for scoring
    role = next(s for s in replies[-1].qualification if s.name == "decision_role")
    assert role.original == "directora de compras"  # and the visitor's own words
    lead = await lead_of(suite, replies[-1].session_id, len(ALL_SLOTS), filled["email"])
    assert dict(lead.qualification)["name"] == "Ana García"
    assert dict(lead.qualification)["decision_role"] == "directora de compras"


HELDOUT = yaml.safe_load((Path(__file__).parents[1] / "chat_heldout.yaml").read_text("utf-8"))


async def test_held_out_spanish_conversations_are_answered_from_the_spanish_texts(
    suite: Suite,
) -> None:
    """Conversations written for this test (none of it is in the knowledge file): every
    reply is Spanish as written, and each knowledge answer is the entry's Spanish text."""
    entries = {e.id: e for e in load_entries()}
    answered = 0
    for conversation in HELDOUT["conversations"]:
        lines = [turn["text"] for turn in conversation["turns"]]
        for line, reply in zip(lines, await converse(suite.nlp, lines), strict=True):
            assert reply.language_code == "es", (line, reply.text)
            assert reply.text_source == "native", (line, reply.text)
            if len(reply.sources) == 1 and reply.confidence >= 0.45:  # a knowledge answer
                spanish = entries[reply.sources[0].id].answer_in("es")
                assert spanish is not None and reply.text.startswith(spanish), (line, reply.text)
                answered += 1
    assert answered >= 8  # of the 10 knowledge questions (the others got a clarifying question)


async def test_retrieval_on_held_out_paraphrases_in_english_and_spanish(suite: Suite) -> None:
    """Top-1 of the knowledge entry for the same questions asked in English and in Spanish
    (retrieval reads the Spanish through Apertium): reported, with floors below what was
    measured (en 27/34, es 25/34) so a regression fails."""
    top1 = {}
    for language in ("en", "es"):
        hits = 0
        for item in HELDOUT["paraphrases"]:
            (reply,) = await converse(suite.nlp, [item[language]])
            hits += bool(reply.sources) and reply.sources[0].id == item["entry"]
        top1[language] = hits / len(HELDOUT["paraphrases"])
    print(f"knowledge top-1 on held-out paraphrases: en {top1['en']:.2f}, es {top1['es']:.2f}")
    assert top1["en"] >= 0.7 and top1["es"] >= 0.65, top1


async def test_follow_ups_use_the_product_under_discussion(suite: Suite) -> None:
    replies = await converse(suite.nlp, ["I'm interested in the tablet.", "How much is it?"])
    assert replies[1].sources[0].id == "tablet-price"
    assert "$449" in replies[1].text


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (["Hello", "Can I talk to a human please?"], "visitor_request"),
        (["My laptop arrived broken and I am very disappointed."], "complaint"),
        (["Do you sell cars?", "What is the capital of France?"], "low_confidence"),
    ],
    ids=["on-request", "complaint", "repeated-low-confidence"],
)
async def test_hand_off_to_a_human(suite: Suite, lines: list[str], reason: str) -> None:
    replies = await converse(suite.nlp, lines)
    assert [r.handoff for r in replies] == [False] * (len(lines) - 1) + [True]
    assert replies[-1].handoff_reason == reason
    assert "colleague" in replies[-1].text
    assert "e-mail or phone number" in replies[-1].text  # no contact yet: ask for one
    if reason == "low_confidence":
        assert replies[0].sources == [] or replies[0].confidence < 0.45


async def test_unsure_answers_ask_instead_of_guessing(suite: Suite) -> None:
    (reply,) = await converse(suite.nlp, ["Do you sell cars?"])
    assert not reply.handoff
    assert reply.confidence < 0.45
    assert "another way" in reply.text or reply.text.startswith("Are you asking about")


async def test_chat_stream_sends_the_reply_in_pieces_then_whole(suite: Suite) -> None:
    chunks = [
        c
        async for c in suite.nlp.ChatStream(
            nlp_pb2.ChatTurn(text="How much is the phone? We want to buy some.")
        )
    ]
    deltas = [c.text_delta for c in chunks if c.WhichOneof("chunk") == "text_delta"]
    assert len(deltas) >= 2
    assert chunks[-1].WhichOneof("chunk") == "reply"
    assert "".join(deltas) == chunks[-1].reply.text
    assert "$699" in chunks[-1].reply.text


async def test_the_widgets_keys_and_campaign_reach_leads(suite: Suite) -> None:
    from percept.v1 import common_pb2

    replies = await converse(
        suite.nlp,
        ["I want to buy two phones.", "+1 415 555 0199"],
        campaign_id="black-friday",
    )
    assert slots(replies[1])["phone"] == "+14155550199"
    lead = None
    for _ in range(100):
        page = await suite.leads.ListLeads(leads_pb2.ListLeadsRequest(page_size=100))
        lead = next((x for x in page.leads if x.identity.phone == "+14155550199"), None)
        if lead is not None:
            break
        await asyncio.sleep(0.1)
    assert lead is not None and lead.identity.chat_session_id == replies[0].session_id
    assert common_pb2.SOURCE_CHAT in lead.channels


@pytest.mark.parametrize(
    ("lines", "language"),
    [
        (
            ["¿Cuánto cuesta el portátil?", "Necesitamos diez portátiles.", "sí", "ok", "👍"],
            "es",  # lingua alone reads "sí" as Czech
        ),
        (
            ["¿Cuánto cuesta el portátil?", "https://example.com/pricing", "ana@empresa.example"],
            "es",  # and a link or an address as English
        ),
        (["Hola, quiero comprar portátiles", "100 unidades", "la semana próxima"], "es"),
        (["¿Qué precio tiene el portátil?", "el Percept Laptop"], "es"),  # a product's name
        (["How much is the laptop?", "50 units", "thx", "bye"], "en"),  # Catalan, French...
        (["Bonjour, combien coûte la tablette ?", "merci!", "ok"], "fr"),
    ],
    ids=["si-ok-emoji", "link-and-address", "units-in-spanish", "product-name", "units", "merci"],
)
async def test_short_messages_keep_the_chats_language(
    suite: Suite, lines: list[str], language: str
) -> None:
    replies = await converse(suite.nlp, lines)
    assert [r.language_code for r in replies] == [language] * len(lines), [r.text for r in replies]
    assert {r.text_source for r in replies} == {"native"}  # the company's own words


@pytest.mark.parametrize(
    ("lines", "languages"),
    [
        (
            [
                "¿Cuánto cuesta el portátil?",
                "Sorry, can you answer in English? How much is the tablet?",
                "ok",
                "gracias, ¿y el móvil?",
            ],
            ["es", "en", "en", "es"],
        ),
        (["How much is the laptop?", "Bonjour, combien coûte la tablette ?"], ["en", "fr"]),
        (["Do you sell tablets?", "Necesitamos diez portátiles."], ["en", "es"]),
        # a first message decides on less, when lingua is clearly sure of it
        (["gracias"], ["es"]),
        (["bonjour"], ["fr"]),
        # "hola" is Catalan too: English until a message says which
        (["hola", "precio del portátil?"], ["en", "es"]),
        (["Hola!", "ok", "Quiero comprar diez portátiles"], ["en", "en", "es"]),
    ],
    ids=["es-en-es", "en-fr", "en-es", "gracias", "bonjour", "hola-then", "hola-ok-then"],
)
async def test_a_sentence_in_another_language_switches_the_chat(
    suite: Suite, lines: list[str], languages: list[str]
) -> None:
    replies = await converse(suite.nlp, lines)
    assert [r.language_code for r in replies] == languages, [r.text for r in replies]


@pytest.mark.parametrize(
    ("code", "text", "language", "answer"),
    [
        ("es-MX", "¿Cuánto cuesta el portátil?", "es-MX", "cuesta 1299 $ con 16 GB"),
        ("es-mx", "¿Cuánto cuesta el portátil?", "es-MX", "cuesta 1299 $ con 16 GB"),
        ("spa", "¿Cuánto cuesta el portátil?", "es", "cuesta 1299 $ con 16 GB"),
        ("en-US", "How much is the laptop?", "en-US", "costs $1,299 with 16 GB"),
        ("fr-CA", "Combien coûte l'ordinateur portable ?", "fr-CA", "coûte 1299 $"),
        ("pt-BR", "Quanto custa o portátil?", "pt-BR", "$1,299"),  # Portuguese by MT
    ],
)
async def test_regional_language_tags_are_answered_in_their_language(
    suite: Suite, code: str, text: str, language: str, answer: str
) -> None:
    reply = await suite.nlp.Chat(nlp_pb2.ChatTurn(text=text, language_code=code))
    assert (reply.language_code, reply.sources[0].id) == (language, "laptop-price")
    assert answer in reply.text
    if language.startswith("pt"):
        assert reply.text_source == "machine_translation" and "cuesta" not in reply.text
    # the chat keeps the tag while the visitor writes that language without one
    follow = await suite.nlp.Chat(nlp_pb2.ChatTurn(session_id=reply.session_id, text=text))
    assert follow.language_code == language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Quanto costa il portatile?", "it"),  # through Spanish
        ("Quant costa el portàtil?", "ca"),
        ("Quanto custa o portátil?", "pt"),
    ],
)
async def test_names_are_kept_in_prompts_machine_translated(
    suite: Suite, text: str, language: str
) -> None:
    (reply,) = await converse(suite.nlp, [text])
    assert (reply.language_code, reply.text_source) == (language, "machine_translation")
    said: dict[str, list[str]] = {}
    for name in ("Will", "Rose", "Bill", "Grace", "Ana"):  # words too: "will", "bill"...
        session = reply.session_id
        claimed = await suite.nlp.ClaimChat(
            nlp_pb2.ClaimChatRequest(session_id=session, salesperson=name)
        )
        released = await suite.nlp.ReleaseChat(
            nlp_pb2.ReleaseChatRequest(session_id=session, salesperson=name)
        )
        said[name] = [claimed.messages[-1].text, released.messages[-1].text]
        for line in said[name]:
            assert line.startswith(f"{name} ") and line.count(name) == 1, line
    # around the name, the same translation whoever it is
    around = {tuple(line.replace(name, "X") for line in lines) for name, lines in said.items()}
    assert len(around) == 1, around


@pytest.mark.parametrize(
    ("turn", "code", "words"),
    [
        (nlp_pb2.ChatTurn(text=""), "INVALID_ARGUMENT", "text: empty"),
        (nlp_pb2.ChatTurn(text=" \n\t "), "INVALID_ARGUMENT", "text: empty"),
        (nlp_pb2.ChatTurn(text="x" * 10_001), "INVALID_ARGUMENT", "over the 10000-character"),
        (nlp_pb2.ChatTurn(text="hi\x1b[2J"), "INVALID_ARGUMENT", "control character U+001B"),
        (
            nlp_pb2.ChatTurn(session_id="../../etc", text="hi"),
            "INVALID_ARGUMENT",
            "session_id: expected up to 64 letters",
        ),
        (
            nlp_pb2.ChatTurn(session_id="no-such-session", text="hi"),
            "NOT_FOUND",
            "no session 'no-such-session'",
        ),
        (
            nlp_pb2.ChatTurn(text="hi", language_code="zz"),
            "INVALID_ARGUMENT",
            "language_code: unknown language code 'zz'",
        ),
        (
            nlp_pb2.ChatTurn(text="hi", language_code="es_MX"),
            "INVALID_ARGUMENT",
            "language_code: 'es_MX' is not a BCP-47 language tag (subtags take '-', not '_')",
        ),
        (
            nlp_pb2.ChatTurn(text="hi", language_code="es-"),
            "INVALID_ARGUMENT",
            "language_code: 'es-' is not a BCP-47 language tag",
        ),
        # leads would refuse every signal of the chat, after the widget was answered
        (
            nlp_pb2.ChatTurn(text="hi", visitor=common_pb2.IdentityKeys(email="not-an-email")),
            "INVALID_ARGUMENT",
            "visitor.email: 'not-an-email' is not an e-mail address",
        ),
        (
            nlp_pb2.ChatTurn(text="hi", visitor=common_pb2.IdentityKeys(phone="+1415555012")),
            "INVALID_ARGUMENT",
            "visitor.phone: '+1415555012' is not a valid phone number",
        ),
        (
            nlp_pb2.ChatTurn(text="hi", campaign_id="c" * 4001),
            "INVALID_ARGUMENT",
            "campaign_id: longer than 4000 characters",
        ),
    ],
    ids=[
        "empty",
        "whitespace",
        "too-long",
        "control-characters",
        "bad-session-id",
        "unknown-session",
        "unknown-language",
        "underscore-tag",
        "malformed-tag",
        "visitor-email-not-an-address",
        "visitor-phone-not-a-number",
        "campaign-too-long",
    ],
)
async def test_bad_turns_get_precise_errors(
    suite: Suite, turn: nlp_pb2.ChatTurn, code: str, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await suite.nlp.Chat(turn)
    assert error.value.code().name == code
    assert words in (error.value.details() or "")


async def test_very_long_words_are_handled(suite: Suite) -> None:
    (reply,) = await converse(suite.nlp, ["Is the " + "x" * 5_000 + " in stock?"])
    assert reply.text and not reply.handoff


async def test_metrics_count_outcomes_handoffs_and_cache_lookups(suite: Suite) -> None:
    from prometheus_client import generate_latest

    await converse(suite.nlp, ["I am very disappointed, my order arrived broken."])
    await suite.nlp.Translate(
        nlp_pb2.TranslateRequest(
            texts=["hello", "hello"], source_language="en", target_language="es"
        )
    )
    service = suite.nlp_host.service
    assert isinstance(service, NlpService)
    text = generate_latest(service.registry).decode()
    assert 'percept_nlp_chat_handoffs_total{reason="complaint"}' in text
    assert 'percept_nlp_chat_turns_total{outcome="answered"}' in text
    assert 'percept_nlp_translated_texts_total{backend="apertium"} 2.0' in text
    assert 'percept_nlp_translation_cache_total{result="hit"}' in text


class Rewording:
    """A phraser double: rewords when asked to, or declines (None)."""

    def __init__(self, wording: str | None) -> None:
        self.wording = wording
        self.asked: list[tuple[str, str]] = []

    def phrase(self, question: str, facts: str) -> str | None:
        self.asked.append((question, facts))
        return self.wording


@pytest.mark.parametrize("wording", ["Each phone is $699; five or more are $649 each.", None])
async def test_a_phraser_rewords_knowledge_answers_or_leaves_them(
    suite: Suite, wording: str | None
) -> None:
    service = suite.nlp_host.service
    assert isinstance(service, NlpService) and service.servicer.assistant is not None
    phraser = Rewording(wording)
    service.servicer.assistant.phraser = phraser
    try:
        (reply,) = await converse(suite.nlp, ["How much is the phone?"])
    finally:
        service.servicer.assistant.phraser = None
    assert phraser.asked == [
        (
            "How much is the phone?",
            "The Percept Phone costs $699, or $649 each when you buy five or more.",
        )
    ]
    expected = wording or "The Percept Phone costs $699, or $649 each when you buy five or more."
    assert reply.text.startswith(expected)


async def test_random_text_never_breaks_chat_or_translate(suite: Suite) -> None:
    """Fuzz: arbitrary Unicode (emoji, RTL, combining marks, symbols, odd spacing) gets a
    reply or INVALID_ARGUMENT, never INTERNAL or UNKNOWN."""
    import random

    rng = random.Random(20261123)
    pools = [
        "abcdefghijklmnopqrstuvwxyz ",
        "ÁÉÍÓÚñçßøå ",
        "😀🛒📱💶🇪🇸 ",
        "مرحبا שלום ",
        "\u0301\u0308\u200b\u200d\ufeff",
        "0123456789$€£%@.,;:!?¿¡()[]{}<>|\\/'\"-_+=*&^#~`",
        "\t\n\r\x00\x07\x1b",
        "漢字かなカナ한국어",
    ]
    bad_input = grpc.StatusCode.INVALID_ARGUMENT
    no_path = grpc.StatusCode.FAILED_PRECONDITION  # Translate: e.g. Arabic detected, no pair
    for _ in range(40):
        length = rng.choice([1, 3, 20, 200, 2_000])
        text = "".join(rng.choice(rng.choice(pools)) for _ in range(length))
        translate = nlp_pb2.TranslateRequest(
            texts=[text], source_language="auto", target_language="es"
        )
        for call, allowed in (
            (suite.nlp.Chat(nlp_pb2.ChatTurn(text=text)), {bad_input}),
            (suite.nlp.Translate(translate), {bad_input, no_path}),
        ):
            try:
                await call
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in allowed, (text[:80], exc.code(), exc.details())


async def test_a_session_that_floods_the_assistant_is_told_to_wait(suite: Suite) -> None:
    service = suite.nlp_host.service
    assert isinstance(service, NlpService)
    servicer = service.servicer
    usual, servicer.per_session = servicer.per_session, RateLimiter(per_minute=1, burst=2)
    try:
        first = await suite.nlp.Chat(nlp_pb2.ChatTurn(text="Do you sell laptops?"))
        session = first.session_id  # the opening message counted against it: one token left
        await suite.nlp.Chat(nlp_pb2.ChatTurn(session_id=session, text="How much?"))
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await suite.nlp.Chat(nlp_pb2.ChatTurn(session_id=session, text="And now?"))
        assert excinfo.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "sends more than 1 messages a minute (PERCEPT_NLP_CHAT_PER_MINUTE)" in (
            excinfo.value.details() or ""
        )
        other = await suite.nlp.Chat(nlp_pb2.ChatTurn(text="Hello"))  # others are not slowed
        assert other.text
    finally:
        servicer.per_session = usual
