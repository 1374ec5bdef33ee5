"""Qualification through gRPC on the real models (MiniLM, lingua, Apertium fr->es->en and
es->en): French visitors' products, budgets written with a space or a dot between the
thousands, counts never read from a phone number, and timelines with plural units."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from local_servers import local_settings

from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.v1 import nlp_pb2, nlp_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nlp(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[nlp_pb2_grpc.NlpAsyncStub]:
    settings = local_settings(tmp_path_factory.mktemp("qualification") / "nlp")
    host = ServiceHost(NlpService(settings), settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 180)
    async with grpc.aio.insecure_channel(host.address) as channel:
        yield nlp_pb2_grpc.NlpStub(channel)
    await host.stop(grace=1)


async def slots_after(nlp: nlp_pb2_grpc.NlpAsyncStub, lines: list[str]) -> dict[str, str]:
    session = ""
    reply = nlp_pb2.ChatReply()
    for line in lines:
        reply = await nlp.Chat(nlp_pb2.ChatTurn(session_id=session, text=line))
        session = reply.session_id
    return {q.name: q.value for q in reply.qualification if q.filled}


async def test_a_french_visitor_names_the_product_and_a_budget_with_spaces(
    nlp: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    slots = await slots_after(
        nlp,
        [
            "Combien coûte l'ordinateur portable ?",  # MT: "the portable computer"
            "Nous avons besoin de dix ordinateurs portables.",
            "le mois prochain",
            "Notre budget est de 2 000 euros",
        ],
    )
    assert slots["product"] == "laptop"
    assert slots["quantity"] == "10"
    assert slots["budget"] == "2000.00 EUR"


async def test_a_word_mt_leaves_as_written_still_names_the_product(
    nlp: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    slots = await slots_after(nlp, ["Bonjour, combien coûte la tablette ?"])  # "the tablette"
    assert slots["product"] == "tablet"


async def test_a_spanish_budget_with_a_dot_between_the_thousands(
    nlp: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    slots = await slots_after(
        nlp,
        [
            "¿Cuánto cuesta el portátil?",
            "Necesitamos diez portátiles.",
            "el mes que viene",
            "1.500 €",
        ],
    )
    assert slots["budget"] == "1500.00 EUR"


async def test_english_answers_in_k_weeks_and_a_phone_number(
    nlp: nlp_pb2_grpc.NlpAsyncStub,
) -> None:
    slots = await slots_after(
        nlp, ["How much is the laptop?", "We need ten laptops", "in 2 weeks", "around 2k"]
    )
    assert slots["timeline"] == "in 2 weeks"
    assert slots["budget"] == "2000.00 USD"
    slots = await slots_after(nlp, ["How much is the laptop?", "call me at 415 555 0134"])
    assert slots["phone"] == "+14155550134"
    assert "quantity" not in slots  # asked "how many", but those digits are a phone number
