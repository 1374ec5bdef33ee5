"""A salesperson takes a chat over, through gRPC on the real models, with two nlp replicas
sharing one session store and a real leads server: the assistant hands off, the
salesperson claims (one of two wins), answers and releases, the visitor's replica and the
salesperson's replica see each other's messages, a visitor whose salesperson is gone or who
waits too long is told so in their language, a help desk hears of it, and the lead's
timeline and follow-up carry it. Every refused request says why."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources

import grpc
import pytest
import pytest_asyncio
from leads_harness import Receiver
from local_servers import local_settings

from percept.leads.service import LeadsService
from percept.nlp.prompts import load_prompts
from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.v1 import common_pb2, leads_pb2, leads_pb2_grpc, nlp_pb2, nlp_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
PRESENCE_S = 2.0  # a salesperson whose inbox is away this long is gone
WAIT_S = 6.0  # a visitor waiting this long for a salesperson is promised a callback
SECRET = "handoff-webhook-secret-0123456789"
PROMPTS = load_prompts()
MISSES = ["Do you sell cars?", "What is the capital of France?"]  # two misses: a hand-off
S = nlp_pb2


@dataclass
class Suite:
    visitor: nlp_pb2_grpc.NlpAsyncStub  # the replica the visitor's widget reaches
    inbox: nlp_pb2_grpc.NlpAsyncStub  # the replica the salespeople's console reaches
    leads: leads_pb2_grpc.LeadsAsyncStub
    desk: Receiver  # a help desk told of hand-offs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    root = tmp_path_factory.mktemp("takeover")
    desk = Receiver(0)
    rules = root / "understanding"  # the company's follow-up rules: one salesperson
    rules.mkdir()
    packaged = resources.files("percept.leads").joinpath("followups.yaml").read_text("utf-8")
    (rules / "followups.yaml").write_text(packaged.replace("team: []", "team: [Ana]"), "utf-8")
    leads_settings = local_settings(root / "leads", understanding_dir=rules)
    leads = ServiceHost(LeadsService(leads_settings), leads_settings)
    await leads.start()
    await asyncio.wait_for(leads.ready.wait(), 60)
    hosts = []
    for name in ("a", "b"):
        settings = local_settings(
            root / name,
            leads_address=leads.address,
            nlp_session_store=f"sqlite:///{root / 'chats.db'}",  # one store for both
            nlp_salesperson_presence_s=PRESENCE_S,
            nlp_handoff_wait_s=WAIT_S,
            nlp_handoff_webhook_urls=[desk.url],
            nlp_handoff_webhook_secret=SECRET,
        )
        hosts.append(ServiceHost(NlpService(settings), settings))
    for host in hosts:  # one at a time: the two cores load one replica's models at once
        await host.start()
        await asyncio.wait_for(host.ready.wait(), 180)
    async with (
        grpc.aio.insecure_channel(hosts[0].address) as a,
        grpc.aio.insecure_channel(hosts[1].address) as b,
        grpc.aio.insecure_channel(leads.address) as leads_channel,
    ):
        yield Suite(
            nlp_pb2_grpc.NlpStub(a),
            nlp_pb2_grpc.NlpStub(b),
            leads_pb2_grpc.LeadsStub(leads_channel),
            desk,
        )
    for host in hosts:
        await host.stop(grace=1)
    await leads.stop(grace=1)
    desk.close()


async def chat(
    stub: nlp_pb2_grpc.NlpAsyncStub, lines: list[str], session: str = ""
) -> list[nlp_pb2.ChatReply]:
    replies = []
    for line in lines:
        reply = await stub.Chat(nlp_pb2.ChatTurn(session_id=session, text=line))
        session = reply.session_id
        replies.append(reply)
    return replies


class Follower:
    """A WatchChats stream read in the background."""

    def __init__(self, stub: nlp_pb2_grpc.NlpAsyncStub, request: nlp_pb2.WatchChatsRequest):
        self.call = stub.WatchChats(request)
        self.events: list[nlp_pb2.ChatEvent] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.call:
            self.events.append(event)

    async def opened(self) -> None:
        await asyncio.wait_for(self.call.initial_metadata(), 10)

    def messages(self, session_id: str = "") -> list[nlp_pb2.ChatMessage]:
        return [
            e.message
            for e in self.events
            if e.HasField("message") and (not session_id or e.message.session_id == session_id)
        ]

    async def until(self, check: Callable[[], bool], limit_s: float = 10) -> None:
        async with asyncio.timeout(limit_s):
            while not check():  # noqa: ASYNC110 - the events come from another task
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self.call.cancel()


async def eventually(check: Callable[[], object], limit_s: float = 20) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.1)


async def timeline_of(suite: Suite, session_id: str) -> leads_pb2.Lead | None:
    try:
        return await suite.leads.GetLead(
            leads_pb2.GetLeadRequest(
                key=common_pb2.IdentityKeys(chat_session_id=session_id), include_timeline=True
            )
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def test_a_handed_off_chat_is_claimed_answered_and_released_across_replicas(
    suite: Suite,
) -> None:
    replies = await chat(suite.visitor, MISSES)
    session = replies[-1].session_id
    assert replies[-1].handoff and replies[-1].status == S.CHAT_STATUS_WAITING
    listed = await suite.inbox.ListChats(S.ListChatsRequest())
    mine = next(c for c in listed.chats if c.session_id == session)
    assert mine.status == S.CHAT_STATUS_WAITING and mine.handoff_reason == "low_confidence"
    assert mine.waiting_since.seconds > 0 and mine.visitor.chat_session_id == session

    salesperson = Follower(suite.inbox, S.WatchChatsRequest(salesperson="Ana"))
    widget = Follower(suite.visitor, S.WatchChatsRequest(session_id=session, after_seq=0))
    await asyncio.gather(salesperson.opened(), widget.opened())
    try:
        claimed = await suite.inbox.ClaimChat(
            S.ClaimChatRequest(session_id=session, salesperson="Ana")
        )
        assert claimed.status == S.CHAT_STATUS_CLAIMED and claimed.salesperson_connected
        texts = [m.text for m in claimed.messages]
        assert texts[:4] == [MISSES[0], replies[0].text, MISSES[1], replies[1].text]
        assert texts[-1] == PROMPTS.english.say("salesperson_joined", salesperson="Ana")

        (quiet,) = await chat(suite.visitor, ["Hi Ana, I need 20 laptops"], session)
        assert quiet.text == "" and quiet.status == S.CHAT_STATUS_CLAIMED
        assert quiet.salesperson == "Ana"
        await salesperson.until(
            lambda: quiet.visitor_seq in [m.seq for m in salesperson.messages()]
        )

        sent = await suite.inbox.SendSalespersonMessage(
            S.SalespersonMessage(session_id=session, salesperson="Ana", text="Hello! Which model?")
        )
        assert sent.role == S.CHAT_ROLE_SALESPERSON and sent.author == "Ana"
        released = await suite.inbox.ReleaseChat(
            S.ReleaseChatRequest(session_id=session, salesperson="Ana")
        )
        assert released.status == S.CHAT_STATUS_ASSISTANT
        (back,) = await chat(suite.visitor, ["How much is the laptop?"], session)
        assert back.status == S.CHAT_STATUS_ASSISTANT and "$1,299" in back.text

        # the visitor's widget saw every message once, in order, its own replica or not
        await widget.until(lambda: back.reply_seq in [m.seq for m in widget.messages()])
        seen = widget.messages()
        assert [m.seq for m in seen] == sorted({m.seq for m in seen})
        got = [(m.role, m.text) for m in seen]
        assert (S.CHAT_ROLE_SALESPERSON, "Hello! Which model?") in got
        order = [t for _, t in got]
        assert order.index("Hi Ana, I need 20 laptops") < order.index("Hello! Which model?")
        assert order[-2:] == ["How much is the laptop?", back.text]
        statuses = [e.chat.status for e in widget.events if e.HasField("chat")]
        assert statuses == [  # replayed from the start: each state as the chat went
            S.CHAT_STATUS_ASSISTANT,
            S.CHAT_STATUS_WAITING,
            S.CHAT_STATUS_CLAIMED,
            S.CHAT_STATUS_ASSISTANT,
        ]
    finally:
        salesperson.close()
        widget.close()

    async def on_timeline() -> bool:
        lead = await timeline_of(suite, session)
        said = {t.summary for t in lead.timeline} if lead else set()
        return {
            "website chat: visitor wrote: Hi Ana, I need 20 laptops",
            "website chat: salesperson wrote: Hello! Which model?",
        } <= said

    await eventually(on_timeline)


async def test_of_two_salespeople_claiming_at_once_one_wins(suite: Suite) -> None:
    replies = await chat(suite.visitor, ["Can I talk to a human please?"])
    session = replies[0].session_id
    results = await asyncio.gather(
        suite.visitor.ClaimChat(S.ClaimChatRequest(session_id=session, salesperson="Ana")),
        suite.inbox.ClaimChat(S.ClaimChatRequest(session_id=session, salesperson="Luis")),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, nlp_pb2.LiveChat)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"is already claimed by {won[0].salesperson!r}" in (lost[0].details() or "")
    joined = [m.text for m in won[0].messages if m.role == S.CHAT_ROLE_ASSISTANT]
    assert sum("joined the chat" in t for t in joined) == 1  # the loser said nothing
    await suite.inbox.ReleaseChat(
        S.ReleaseChatRequest(session_id=session, salesperson=won[0].salesperson)
    )


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (
            lambda s, sid: s.SendSalespersonMessage(
                S.SalespersonMessage(session_id=sid, salesperson="Ana", text="Hi")
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "is not claimed; claim it before answering",
        ),
        (
            lambda s, sid: s.ReleaseChat(S.ReleaseChatRequest(session_id=sid, salesperson="Ana")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "is not claimed",
        ),
        (
            lambda s, sid: s.ClaimChat(S.ClaimChatRequest(session_id=sid, salesperson=" ")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "salesperson: required",
        ),
        (
            lambda s, sid: s.ClaimChat(
                S.ClaimChatRequest(session_id="no-such-chat", salesperson="Ana")
            ),
            grpc.StatusCode.NOT_FOUND,
            "session_id: no chat 'no-such-chat'",
        ),
        (
            lambda s, sid: s.GetChat(S.GetChatRequest(session_id="bad id!")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "session_id: expected up to 64 letters",
        ),
        (
            lambda s, sid: s.SendSalespersonMessage(
                S.SalespersonMessage(session_id=sid, salesperson="Ana", text="  ")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "text: empty",
        ),
        (
            lambda s, sid: s.ListChats(S.ListChatsRequest(statuses=[42])),  # type: ignore[list-item]
            grpc.StatusCode.INVALID_ARGUMENT,
            "statuses: 42 is not a chat status",
        ),
    ],
    ids=[
        "answer-unclaimed",
        "release-unclaimed",
        "no-name",
        "unknown-chat",
        "bad-session-id",
        "empty-text",
        "unknown-status",
    ],
)
async def test_bad_takeover_requests_say_what_is_wrong(
    suite: Suite, call: Callable[..., object], code: grpc.StatusCode, message: str
) -> None:
    (reply,) = await chat(suite.visitor, ["How much is the tablet?"])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(suite.inbox, reply.session_id)  # type: ignore[misc]
    assert raised.value.code() == code
    assert message in (raised.value.details() or "")


async def test_a_salesperson_answering_a_chat_another_claimed_is_refused(suite: Suite) -> None:
    (reply,) = await chat(suite.visitor, ["How much is the watch?"])
    session = reply.session_id
    await suite.inbox.ClaimChat(S.ClaimChatRequest(session_id=session, salesperson="Ana"))
    for call in (
        suite.inbox.SendSalespersonMessage(
            S.SalespersonMessage(session_id=session, salesperson="Luis", text="Hi, Luis here")
        ),
        suite.inbox.ReleaseChat(S.ReleaseChatRequest(session_id=session, salesperson="Luis")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is claimed by 'Ana', not 'Luis'" in (raised.value.details() or "")
    chat_now = await suite.inbox.GetChat(S.GetChatRequest(session_id=session))
    assert "Hi, Luis here" not in [m.text for m in chat_now.messages]
    await suite.inbox.ReleaseChat(S.ReleaseChatRequest(session_id=session, salesperson="Ana"))


async def test_a_visitor_message_while_the_salesperson_is_gone_is_kept_and_the_chat_waits(
    suite: Suite,
) -> None:
    (reply,) = await chat(suite.visitor, ["Quiero hablar con una persona, por favor."])
    session = reply.session_id
    assert reply.language_code == "es" and reply.text_source == "native"
    assert reply.text.startswith(PROMPTS.get("es").say("handoff_visitor_request"))  # type: ignore[union-attr]
    claimed = await suite.inbox.ClaimChat(
        S.ClaimChatRequest(session_id=session, salesperson="Marta")
    )
    spanish = PROMPTS.get("es")
    assert spanish is not None
    assert claimed.messages[-1].text == spanish.say("salesperson_joined", salesperson="Marta")
    await asyncio.sleep(PRESENCE_S + 1)  # Marta's inbox is not open: she is gone
    (gone,) = await chat(suite.visitor, ["¿Sigues ahí? Necesito diez portátiles."], session)
    assert gone.text == spanish.say("salesperson_gone", salesperson="Marta")
    assert gone.status == S.CHAT_STATUS_WAITING and gone.salesperson == ""
    now = await suite.inbox.GetChat(S.GetChatRequest(session_id=session))
    assert now.status == S.CHAT_STATUS_WAITING and now.handoff_reason == "salesperson_gone"
    assert [m.text for m in now.messages][-2:] == [
        "¿Sigues ahí? Necesito diez portátiles.",  # nothing the visitor wrote is lost
        gone.text,
    ]
    quantity = next(q for q in now.qualification if q.name == "quantity")
    assert quantity.value == "10"  # and it was still read for the lead
    await suite.inbox.ClaimChat(S.ClaimChatRequest(session_id=session, salesperson="Luis"))
    await suite.inbox.ReleaseChat(S.ReleaseChatRequest(session_id=session, salesperson="Luis"))


async def test_a_visitor_waiting_too_long_is_promised_a_callback_and_leads_follows_up(
    suite: Suite,
) -> None:
    replies = await chat(
        suite.visitor,
        ["We want to buy 20 phones for the team.", "Can I speak to a sales representative?"],
    )
    session = replies[-1].session_id
    assert replies[-1].status == S.CHAT_STATUS_WAITING

    async def promised() -> bool:
        now = await suite.inbox.GetChat(S.GetChatRequest(session_id=session))
        return now.status == S.CHAT_STATUS_CALLBACK

    await eventually(promised, WAIT_S + 10)
    now = await suite.inbox.GetChat(S.GetChatRequest(session_id=session))
    english = PROMPTS.english
    assert now.messages[-1].text.startswith(english.say("callback_promise"))
    assert now.messages[-1].text.endswith(english.say("leave_contact"))  # no contact yet
    assert [m.text for m in now.messages].count(now.messages[-1].text) == 1  # one replica said it

    async def follows_up() -> bool:
        lead = await timeline_of(suite, session)
        return lead is not None and lead.next_follow_up_reason.startswith("callback promised")

    await eventually(follows_up)
    lead = await timeline_of(suite, session)
    assert lead is not None
    assert (lead.next_follow_up_rule, lead.next_follow_up_action) == ("callback", "call")
    assert lead.next_follow_up_priority == 1 and lead.next_follow_up_owner == "Ana"

    def told(kind: str) -> list[dict[str, str]]:
        bodies = [json.loads(body) for _, body, _ in suite.desk.requests]
        return [b for b in bodies if b["type"] == kind and b["session_id"] == session]

    await eventually(lambda: told("chat.waiting") and told("chat.callback_promised"))
    headers, body, _ = next(r for r in suite.desk.requests if session.encode() in r[1])
    stamp, mac = dict(p.split("=", 1) for p in headers["x-percept-signature"].split(",")).values()
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert mac == expected
    assert told("chat.waiting")[0]["reason"] == "visitor_request"


async def test_watching_resumes_after_a_message_number(suite: Suite) -> None:
    replies = await chat(suite.visitor, ["Hello", "How much is the phone?"])
    session = replies[-1].session_id
    later = Follower(
        suite.inbox, S.WatchChatsRequest(session_id=session, after_seq=replies[0].reply_seq)
    )
    try:
        await later.until(lambda: len(later.messages()) >= 2)
        assert [m.seq for m in later.messages()] == [replies[1].visitor_seq, replies[1].reply_seq]
    finally:
        later.close()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in suite.inbox.WatchChats(S.WatchChatsRequest(session_id="nobody-here")):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
