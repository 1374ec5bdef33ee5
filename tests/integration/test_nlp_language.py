"""DetectLanguage on lingua's real models: customer sentences, short and mixed texts, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from percept.nlp.language import LanguageDetector
from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import nlp_pb2, nlp_pb2_grpc

pytestmark = pytest.mark.slow


@pytest.fixture
async def stub(make_settings: Callable[..., Settings]) -> AsyncIterator[nlp_pb2_grpc.NlpAsyncStub]:
    settings = make_settings()
    host = ServiceHost(NlpService(settings), settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 120)
    async with grpc.aio.insecure_channel(host.address) as channel:
        yield nlp_pb2_grpc.NlpStub(channel)
    await host.stop(grace=1)


SENTENCES = {
    "en": "Do you deliver to Madrid by Friday?",
    "es": "Hola, quiero comprar dos teléfonos para mi oficina",
    "fr": "Bonjour, combien coûte la tablette ?",
    "de": "Ich möchte zwei Laptops für mein Büro kaufen",
    "it": "Vorrei sapere il prezzo del televisore",
    "pt": "Vocês entregam em Lisboa? Preciso de três computadores",
    "nl": "Hoeveel kost de koptelefoon met ruisonderdrukking?",
}


async def test_customer_sentences_are_recognised_reliably(
    stub: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    for code, text in SENTENCES.items():
        reply = await stub.DetectLanguage(nlp_pb2.DetectLanguageRequest(text=text))
        assert (reply.language_code, reply.reliable) == (code, True), (text, reply)
        assert reply.candidates[0].language_code == code
        assert 0 < reply.confidence <= 1
        values = [c.confidence for c in reply.candidates]
        assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("text", ["ok", "hello hola", "Quiero el iPhone, thanks", "12345"])
async def test_short_and_mixed_texts_are_not_presented_as_certain(
    stub: nlp_pb2_grpc.NlpAsyncStub, text: str
) -> None:
    reply = await stub.DetectLanguage(nlp_pb2.DetectLanguageRequest(text=text))
    assert reply.reliable is False
    assert reply.language_code == ""


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "text: empty"),
        ("   \n ", "text: empty"),
        ("x" * 10_001, "text: 10001 characters is over the 10000-character limit"),
        ("hola\x00mundo", "text: control character U+0000 at 4"),
    ],
    ids=["empty", "whitespace", "too-long", "control-character"],
)
async def test_bad_text_gets_invalid_argument(
    stub: nlp_pb2_grpc.NlpAsyncStub, text: str, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.DetectLanguage(nlp_pb2.DetectLanguageRequest(text=text))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (error.value.details() or "")


async def test_a_very_long_word_is_answered(stub: nlp_pb2_grpc.NlpAsyncStub) -> None:
    reply = await stub.DetectLanguage(nlp_pb2.DetectLanguageRequest(text="a" * 9_000))
    assert reply.reliable is False


def test_unknown_language_codes_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown ISO 639-1 code.*: xx, klingon"):
        LanguageDetector(("en", "xx", "klingon"))
