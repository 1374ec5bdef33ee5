"""Turns of one chat on two nlp replicas at once, through gRPC on the real models, over one
session store (the embedded SQLite and real PostgreSQL): a salesperson's claim or release,
or another turn of the same chat, lands on one replica while the other is answering the
visitor. Each race is made to happen, not hoped for: the visitor's turn is held on its
replica after it has read the chat's owner and session and worked out its reply, and
before it records anything, while the other replica acts. And a conversation with a
salesperson lives on while the salesperson writes, however long the visitor is silent."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from local_servers import local_settings
from pg_cluster import ThrowawayCluster

from percept.nlp.dialogue import Assistant
from percept.nlp.prompts import load_prompts
from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.v1 import nlp_pb2, nlp_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
S = nlp_pb2
SPANISH = load_prompts().get("es")
NOWHERE = "127.0.0.1:9"  # no leads: the signals wait in each replica's outbox


@dataclass
class Replicas:
    visitor: nlp_pb2_grpc.NlpAsyncStub  # the replica the visitor's widget reaches
    other: nlp_pb2_grpc.NlpAsyncStub  # the other replica: salespeople, or the visitor again
    assistant: Assistant  # the visitor's replica's


async def start(settings: Any) -> ServiceHost:
    host = ServiceHost(NlpService(settings), settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 180)
    return host


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Replicas]:
    root = tmp_path_factory.mktemp(f"replicas-{request.param}")
    url = f"sqlite:///{root / 'chats.db'}"
    if request.param == "postgresql":
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        url = cluster.new_database()
    hosts = []
    for name in ("a", "b"):  # one at a time: the two cores load one replica's models at once
        settings = local_settings(
            root / name,
            leads_address=NOWHERE,
            nlp_session_store=url,  # one store for both
            nlp_chat_per_minute=1000,
            nlp_chat_burst=1000,
        )
        hosts.append(await start(settings))
    service = hosts[0].service
    assert isinstance(service, NlpService) and service.servicer.assistant is not None
    async with (
        grpc.aio.insecure_channel(hosts[0].address) as a,
        grpc.aio.insecure_channel(hosts[1].address) as b,
    ):
        yield Replicas(nlp_pb2_grpc.NlpStub(a), nlp_pb2_grpc.NlpStub(b), service.servicer.assistant)
    for host in hosts:
        await host.stop(grace=1)


class Held:
    """The replica's next turn stops once it has read the chat and its session and worked
    out its reply, before it records anything, until `go`; the turn run again (and any
    other turn) passes. Patched on the Assistant for one test."""

    def __init__(self, assistant: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        self._reached, self._go = threading.Event(), threading.Event()
        respond: Callable[..., Any] = assistant._respond

        def held(*args: Any) -> Any:
            reply = respond(*args)
            self.runs += 1
            if self.runs == 1:
                self._reached.set()
                if not self._go.wait(60):
                    raise TimeoutError("the test never let the held turn go")
            return reply

        monkeypatch.setattr(assistant, "_respond", held)

    async def reached(self) -> None:
        assert await asyncio.to_thread(self._reached.wait, 60), "the turn never got there"

    def go(self) -> None:
        self._go.set()


def turn(stub: nlp_pb2_grpc.NlpAsyncStub, session_id: str, text: str) -> asyncio.Task[Any]:
    return asyncio.ensure_future(stub.Chat(S.ChatTurn(session_id=session_id, text=text)))


async def test_a_claim_while_the_assistant_answers_leaves_the_message_to_the_salesperson(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await replicas.visitor.Chat(S.ChatTurn(text="Hola, necesito portátiles"))
    session = first.session_id
    held = Held(replicas.assistant, monkeypatch)
    question = "¿Cuánto cuesta el portátil con 32 GB?"
    answering = turn(replicas.visitor, session, question)
    await held.reached()  # the assistant has its answer, the chat is still its own
    claim = S.ClaimChatRequest(session_id=session, salesperson="Ana")
    claimed = await replicas.other.ClaimChat(claim)
    assert claimed.status == S.CHAT_STATUS_CLAIMED
    held.go()
    reply = await answering

    assert (reply.text, reply.status, reply.salesperson) == ("", S.CHAT_STATUS_CLAIMED, "Ana")
    assert held.runs == 2  # it found the chat claimed, and did as for a claimed chat
    chat = await replicas.other.GetChat(S.GetChatRequest(session_id=session))
    assert SPANISH is not None
    joined = [m.text for m in chat.messages].index(
        SPANISH.say("salesperson_joined", salesperson="Ana")
    )
    after = [(m.seq, m.role, m.text) for m in chat.messages[joined + 1 :]]
    assert after == [(reply.visitor_seq, S.CHAT_ROLE_VISITOR, question)]  # and no answer
    assert chat.status == S.CHAT_STATUS_CLAIMED and chat.salesperson == "Ana"
    slots = {q.name: q.value for q in chat.qualification if q.filled}
    assert slots["product"] == "laptop"  # the message was still read for the lead


async def test_a_release_while_the_visitor_writes_gets_the_message_answered(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await replicas.visitor.Chat(S.ChatTurn(text="Hola, necesito portátiles"))
    session = first.session_id
    await replicas.other.ClaimChat(S.ClaimChatRequest(session_id=session, salesperson="Ana"))
    held = Held(replicas.assistant, monkeypatch)
    question = "¿Cuánto cuesta el portátil con 32 GB?"
    answering = turn(replicas.visitor, session, question)
    await held.reached()  # the chat was Ana's when the turn read it: no answer of its own
    release = S.ReleaseChatRequest(session_id=session, salesperson="Ana")
    released = await replicas.other.ReleaseChat(release)
    assert released.status == S.CHAT_STATUS_ASSISTANT
    held.go()
    reply = await answering

    assert reply.status == S.CHAT_STATUS_ASSISTANT and "1599 $ con 32 GB" in reply.text
    assert held.runs == 2
    chat = await replicas.other.GetChat(S.GetChatRequest(session_id=session))
    assert SPANISH is not None
    left = SPANISH.say("salesperson_left", salesperson="Ana")
    assert [(m.role, m.text) for m in chat.messages[-3:]] == [
        (S.CHAT_ROLE_ASSISTANT, left),
        (S.CHAT_ROLE_VISITOR, question),
        (S.CHAT_ROLE_ASSISTANT, reply.text),  # never a question left unanswered
    ]
    assert [m.seq for m in chat.messages[-2:]] == [reply.visitor_seq, reply.reply_seq]


async def test_two_turns_of_one_chat_on_two_replicas_keep_both_turns_slots(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await replicas.visitor.Chat(S.ChatTurn(text="How much is the laptop?"))
    session = first.session_id
    held = Held(replicas.assistant, monkeypatch)
    answering = turn(replicas.visitor, session, "We need ten laptops by next month")
    await held.reached()  # read the session before the other turn wrote it
    other = await replicas.other.Chat(
        S.ChatTurn(session_id=session, text="my email is ana@acme.example")
    )
    held.go()
    reply = await answering

    chat = await replicas.other.GetChat(S.GetChatRequest(session_id=session))
    want = {
        "product": "laptop",
        "quantity": "10",
        "timeline": "next month",
        "email": "ana@acme.example",  # the other turn's
    }
    for seen in (reply.qualification, chat.qualification):
        slots = {q.name: q.value for q in seen if q.filled}
        assert want.items() <= slots.items(), slots
    assert held.runs == 2  # its write found the session changed: it ran again on it
    assert other.reply_seq < reply.visitor_seq  # the transcript in the order they were kept


async def test_a_conversation_with_a_salesperson_lives_while_the_salesperson_writes(
    tmp_path: Path,
) -> None:
    ttl = 4.0  # each renewal comes ttl/2 after the last: half the lifetime to spare on CI
    settings = local_settings(
        tmp_path / "nlp",
        leads_address=NOWHERE,
        nlp_session_ttl_s=ttl,
        nlp_chat_per_minute=1000,
        nlp_chat_burst=1000,
    )
    host = await start(settings)
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = nlp_pb2_grpc.NlpStub(channel)
            first = await stub.Chat(S.ChatTurn(text="Can I talk to a human please?"))
            session = first.session_id
            await asyncio.sleep(ttl / 2)
            # the claim renews the session: without it, it ends ttl after the visitor's turn
            await stub.ClaimChat(S.ClaimChatRequest(session_id=session, salesperson="Ana"))
            for text in ("Hello! I am Ana.", "Which model do you need?", "Are you there?"):
                await asyncio.sleep(ttl / 2)
                await stub.SendSalespersonMessage(
                    S.SalespersonMessage(session_id=session, salesperson="Ana", text=text)
                )
            await asyncio.sleep(ttl / 2)  # two and a half lifetimes since the visitor wrote
            answer = await stub.Chat(S.ChatTurn(session_id=session, text="Yes, sorry! 20 laptops"))
            assert answer.status == S.CHAT_STATUS_CLAIMED and answer.text == ""
            await stub.ReleaseChat(S.ReleaseChatRequest(session_id=session, salesperson="Ana"))

            await asyncio.sleep(ttl + 0.5)  # nobody wrote for the lifetime: it has ended
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await stub.Chat(S.ChatTurn(session_id=session, text="Hello again"))
            assert ended.value.code() == grpc.StatusCode.NOT_FOUND
            assert "expired after 4 s without a message" in (ended.value.details() or "")
    finally:
        await host.stop(grace=1)
