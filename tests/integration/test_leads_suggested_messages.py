"""Suggested messages over real gRPC: a Spanish chat lead's quote in the company's own
Spanish; a Portuguese lead's, machine-translated by the nlp service (Apertium); only
numbers the facts and the lead's words hold, every time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from leads_signals import recent
from local_servers import local_settings

from percept.leads.service import LeadsService
from percept.nlp.knowledge import load_entries
from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.v1 import common_pb2 as c
from percept.v1 import leads_pb2 as lp
from percept.v1 import leads_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
FACTS = " ".join(t for e in load_entries() for t in (e.answer, *e.answers.values()))


def numbers(text: str) -> set[str]:
    return {n.replace(",", "").replace(".", "") for n in re.findall(r"\d+(?:[.,]\d+)*", text)}


@dataclass
class Stack:
    leads: leads_pb2_grpc.LeadsAsyncStub


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root: Path = tmp_path_factory.mktemp("drafts")
    nlp_settings = local_settings(root / "nlp")
    nlp = ServiceHost(NlpService(nlp_settings), nlp_settings)
    await nlp.start()
    await asyncio.wait_for(nlp.ready.wait(), 180)
    leads_settings = local_settings(root / "leads", nlp_address=nlp.address)
    leads = ServiceHost(LeadsService(leads_settings), leads_settings)
    await leads.start()
    await asyncio.wait_for(leads.ready.wait(), 60)
    async with grpc.aio.insecure_channel(leads.address) as channel:
        yield Stack(leads_pb2_grpc.LeadsStub(channel))
    await leads.stop(grace=1)
    await nlp.stop(grace=1)


def chat_lead(session: str, language: str, **slots: str) -> list[c.Signal]:
    """A visitor asking prices in the chat, in `language`, with these slots filled."""
    signals = [
        recent(source=c.SOURCE_CHAT, name="price_inquiry", confidence=0.9, chat_session_id=session)
    ]
    for name, value in slots.items():
        signals.append(
            recent(
                source=c.SOURCE_CHAT,
                kind=c.SIGNAL_KIND_QUALIFICATION_SLOT,
                name=name,
                value=value,
                chat_session_id=session,
            )
        )
    for s in signals:
        s.attributes["language"] = language
    return signals


async def quote_for(stack: Stack, session: str) -> lp.FollowUp:
    lead = await stack.leads.GetLead(lp.GetLeadRequest(key=c.IdentityKeys(chat_session_id=session)))
    listed = await stack.leads.ListFollowUps(lp.ListFollowUpsRequest(lead_id=lead.lead_id))
    (follow_up,) = listed.follow_ups
    assert (follow_up.action, follow_up.rule) == ("send_quote", "quote")
    return follow_up


async def test_a_spanish_chat_lead_gets_the_companys_spanish_with_grounded_facts(
    stack: Stack,
) -> None:
    slots = {"product": "phone", "quantity": "3", "name": "Lucía"}
    await stack.leads.IngestBatch(
        lp.IngestBatchRequest(signals=chat_lead("es-lead", "es", **slots))
    )
    follow_up = await quote_for(stack, "es-lead")
    made = await stack.leads.SuggestMessage(
        lp.SuggestMessageRequest(follow_up_id=follow_up.follow_up_id)
    )
    assert (made.channel, made.language, made.source) == ("chat", "es", "template")
    assert made.text.startswith("Hola, Lucía: Gracias por tu interés en el Percept Phone.")
    assert "El Percept Phone cuesta 699 $" in made.text and "Para 3 unidades" in made.text
    assert numbers(made.text) <= numbers(FACTS) | {"3"} and not made.left_out
    # the same follow-up as an e-mail, asked for
    mail = await stack.leads.SuggestMessage(
        lp.SuggestMessageRequest(follow_up_id=follow_up.follow_up_id, channel="email")
    )
    assert mail.subject == "Tu presupuesto para el Percept Phone"
    assert mail.text.endswith("Un saludo,\nel equipo comercial")  # nobody owns it


async def test_a_language_without_templates_is_translated_by_nlp(stack: Stack) -> None:
    await stack.leads.IngestBatch(
        lp.IngestBatchRequest(signals=chat_lead("pt-lead", "pt", product="laptop", quantity="2"))
    )
    follow_up = await quote_for(stack, "pt-lead")
    made = await stack.leads.SuggestMessage(
        lp.SuggestMessageRequest(follow_up_id=follow_up.follow_up_id)
    )
    assert (made.language, made.source) == ("pt", "machine_translation")
    assert made.text.startswith("Olá") and "Percept" in made.text
    assert "1299" in numbers(made.text)  # the price, as the facts state it
    assert numbers(made.text) <= numbers(FACTS) | {"2"}
    english = await stack.leads.SuggestMessage(
        lp.SuggestMessageRequest(follow_up_id=follow_up.follow_up_id, language="en")
    )
    assert english.source == "template" and english.text.startswith("Hello, Thank you")
    assert english.text != made.text


async def test_bad_requests_are_named(stack: Stack) -> None:
    for request, code, words in (
        (lp.SuggestMessageRequest(), grpc.StatusCode.INVALID_ARGUMENT, "follow_up_id: required"),
        (
            lp.SuggestMessageRequest(follow_up_id="x", channel="fax"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "channel: 'fax' is not one of email, phone, chat",
        ),
        (
            lp.SuggestMessageRequest(follow_up_id="x", language="spanish_es"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "language:",
        ),
        (
            lp.SuggestMessageRequest(follow_up_id="nope"),
            grpc.StatusCode.NOT_FOUND,
            "follow-up 'nope' not found",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.leads.SuggestMessage(request)
        assert caught.value.code() == code
        assert words in (caught.value.details() or "")
