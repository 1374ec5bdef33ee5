"""Translate and ListLanguagePairs through gRPC: real Apertium pairs (Debian packages
via apertium-apy), pivots, auto-detection, batching, the cache, the transformers
backend's plumbing on a tiny model built here, and every kind of bad request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from local_servers import local_settings
from nlp_models import build_tiny_m2m100

from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.v1 import nlp_pb2, nlp_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nlp(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NlpService]:
    data = tmp_path_factory.mktemp("nlp-data")
    build_tiny_m2m100(data / "models" / "tiny-m2m100")
    settings = local_settings(
        data,
        nlp_translation_backends=["apertium", "transformers"],
        nlp_translation_models=["tiny-m2m100"],
        nlp_device="cpu",
    )
    service = NlpService(settings)
    host = ServiceHost(service, settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 180)
    assert service.servicer.translator is not None, "the nlp service failed to load"
    service.address = host.address  # type: ignore[attr-defined]
    yield service
    await host.stop(grace=1)


@pytest_asyncio.fixture(loop_scope="module")
async def stub(nlp: NlpService) -> AsyncIterator[nlp_pb2_grpc.NlpAsyncStub]:
    async with grpc.aio.insecure_channel(nlp.address) as channel:  # type: ignore[attr-defined]
        yield nlp_pb2_grpc.NlpStub(channel)


async def translate(
    stub: nlp_pb2_grpc.NlpAsyncStub, texts: list[str], target: str, source: str = ""
) -> list[nlp_pb2.Translation]:
    reply = await stub.Translate(
        nlp_pb2.TranslateRequest(texts=texts, source_language=source, target_language=target)
    )
    assert len(reply.translations) == len(texts)
    return list(reply.translations)


@pytest.mark.parametrize(
    ("source", "target", "text", "words"),
    [
        (
            "en",
            "es",
            "I want to buy two phones for my office.",
            ["quiero comprar", "dos", "teléfonos"],
        ),
        ("en", "es", "Do you deliver to Madrid next week?", ["madrid", "semana"]),
        ("es", "en", "Quiero comprar tres ordenadores portátiles.", ["buy", "three", "computers"]),
        ("en", "ca", "I need a new printer.", ["impressora"]),
        ("pt", "es", "Quero comprar dois telefones.", ["comprar", "dos", "teléfonos"]),
    ],
)
async def test_apertium_translates_customer_sentences(
    stub: nlp_pb2_grpc.NlpAsyncStub, source: str, target: str, text: str, words: list[str]
) -> None:
    (done,) = await translate(stub, [text], target, source)
    assert (done.backend, done.pivot_language, done.source_language) == ("apertium", "", source)
    for word in words:
        assert word in done.text.lower(), (text, done.text)
    assert "  " not in done.text and "*" not in done.text


async def test_round_trip_keeps_the_key_words(stub: nlp_pb2_grpc.NlpAsyncStub) -> None:
    original = "I want to buy two phones."
    (spanish,) = await translate(stub, [original], "es", "en")
    (back,) = await translate(stub, [spanish.text], "en", "es")
    assert back.text.rstrip(".").lower() == "i want to buy two telephones"


async def test_a_pair_no_backend_has_goes_through_a_pivot(
    stub: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    (french,) = await translate(stub, ["Je voudrais acheter deux téléphones."], "en", "fr")
    assert (french.pivot_language, french.backend) == ("es", "apertium")
    assert "buy two telephones" in french.text
    # a pivot across backends: fr->es by Apertium, es->de by the (tiny) transformers model
    (german,) = await translate(stub, ["Bonjour"], "de", "fr")
    assert (german.pivot_language, german.backend) == ("es", "apertium+transformers")


async def test_auto_detects_each_texts_language(stub: nlp_pb2_grpc.NlpAsyncStub) -> None:
    texts = [
        "Quiero comprar dos teléfonos para mi oficina.",
        "Quero comprar dois telefones para o meu escritório.",
        "I want to buy two phones for my office.",
    ]
    done = await translate(stub, texts, "es", "auto")
    assert [d.source_language for d in done] == ["es", "pt", "en"]
    assert done[0].text == texts[0] and done[0].backend == ""  # already Spanish
    assert "teléfonos" in done[1].text and "teléfonos" in done[2].text


async def test_a_batch_equals_one_call_per_text(
    stub: nlp_pb2_grpc.NlpAsyncStub, nlp: NlpService
) -> None:
    texts = [f"I want {n} phones and {n + 1} laptops." for n in range(2, 62)]
    texts.append("First paragraph.\n\nSecond paragraph.")  # a text with a blank line goes alone
    assert nlp.servicer.translator is not None
    nlp.servicer.translator.cache = type(nlp.servicer.translator.cache)(100)  # start cold
    batch = [d.text for d in await translate(stub, texts, "es", "en")]
    nlp.servicer.translator.cache = type(nlp.servicer.translator.cache)(0)  # no cache at all
    one_by_one = [(await translate(stub, [t], "es", "en"))[0].text for t in texts[::7]]
    assert batch[::7] == one_by_one
    assert batch[-1].count("\n\n") == 1
    assert len(set(batch)) == len(texts)


async def test_repeated_texts_come_from_the_cache(
    stub: nlp_pb2_grpc.NlpAsyncStub, nlp: NlpService
) -> None:
    translator = nlp.servicer.translator
    assert translator is not None
    translator.cache = type(translator.cache)(100)
    first = await translate(stub, ["Where is my order?"], "es", "en")
    assert (translator.cache.hits, translator.cache.misses) == (0, 1)
    again = await translate(stub, ["Where is my order?", "Where is my order?"], "es", "en")
    assert (translator.cache.hits, translator.cache.misses) == (2, 1)
    assert again[0].text == again[1].text == first[0].text


async def test_transformers_backend_takes_the_pairs_only_it_has(
    stub: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    # the tiny model's words are random-weight noise: only the plumbing is checked
    done = await translate(stub, ["I want to buy two phones", "How much"], "de", "en")
    assert {d.backend for d in done} == {"transformers"}
    assert all(d.text and d.pivot_language == "" for d in done)
    pairs = await stub.ListLanguagePairs(nlp_pb2.ListLanguagePairsRequest())
    listed = {(p.source_language, p.target_language, p.backend) for p in pairs.pairs}
    assert {("en", "es", "apertium"), ("es", "en", "apertium"), ("fr", "es", "apertium")} <= listed
    assert {("en", "de", "transformers"), ("en", "es", "transformers")} <= listed
    assert not any("_" in p.target_language for p in pairs.pairs)  # no APY variants


async def test_the_transformers_backend_forces_the_target_language_token(
    tmp_path: Path,
) -> None:
    from percept.nlp.seq2seq import Seq2SeqBackend

    backend = Seq2SeqBackend([build_tiny_m2m100(tmp_path / "tiny")], "cpu")
    model = backend._models[0]
    seen: list[dict[str, object]] = []
    generate = model.model.generate

    def spy(**kwargs: object) -> object:
        seen.append(kwargs)
        return generate(**kwargs)

    model.model.generate = spy
    backend.translate(["two phones", "the premium plan please"], "en", "es")
    (call,) = seen  # one batch for both texts
    assert call["forced_bos_token_id"] == model.tokenizer.convert_tokens_to_ids("__es__")
    first_tokens = call["input_ids"][:, 0].tolist()  # type: ignore[index]
    assert set(first_tokens) == {model.tokenizer.convert_tokens_to_ids("__en__")}


@pytest.mark.parametrize(
    ("texts", "source", "target", "code", "words"),
    [
        ([], "en", "es", "INVALID_ARGUMENT", "texts: empty"),
        (["hola", "  "], "es", "en", "INVALID_ARGUMENT", "texts[1]: empty"),
        (["x" * 10_001], "en", "es", "INVALID_ARGUMENT", "texts[0]: 10001 characters"),
        (["hola\x07"], "es", "en", "INVALID_ARGUMENT", "texts[0]: control character U+0007"),
        (["hello"], "en", "", "INVALID_ARGUMENT", "target_language: empty"),
        (["hello"], "en", "xx", "INVALID_ARGUMENT", "target_language: unknown language code 'xx'"),
        (["hello"], "klingon", "es", "INVALID_ARGUMENT", "source_language: unknown language"),
        (["hello"], "en", "ja", "FAILED_PRECONDITION", "no translation path from 'en' to 'ja'"),
        (["hello"] * 513, "en", "es", "INVALID_ARGUMENT", "513 is over the 512-text limit"),
    ],
    ids=[
        "no-texts",
        "blank-text",
        "too-long",
        "control-character",
        "no-target",
        "unknown-target",
        "unknown-source",
        "unsupported-pair",
        "too-many-texts",
    ],
)
async def test_bad_requests_get_precise_errors(
    stub: nlp_pb2_grpc.NlpAsyncStub,
    texts: list[str],
    source: str,
    target: str,
    code: str,
    words: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await translate(stub, texts, target, source)
    assert error.value.code().name == code
    assert words in (error.value.details() or "")
    if code == "FAILED_PRECONDITION":
        assert "available pairs: " in (error.value.details() or "") and "en->es" in (
            error.value.details() or ""
        )


async def test_very_long_words_and_three_letter_codes_are_fine(
    stub: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    word = "a" * 4_000
    (done,) = await translate(stub, [f"I want {word} please"], "spa", "ENG")
    assert word in done.text and done.source_language == "en"
