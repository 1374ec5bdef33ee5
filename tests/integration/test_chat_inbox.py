"""Who has each chat, in the session store's database: one claim wins, only the claimer
answers or releases, a gone salesperson's chat waits again, an overdue chat is promised a
callback once however many replicas look, and every change is in the transcript; on the
embedded SQLite and on real PostgreSQL (the Kubernetes store)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from percept.nlp.inbox import (
    ASSISTANT,
    BOT,
    CALLBACK,
    CLAIMED,
    SALESPERSON,
    VISITOR,
    WAITING,
    ChatInbox,
    ClaimedByOtherError,
    NotClaimedError,
    Said,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def replicas(url: str, n: int = 2, **options: object) -> tuple[Clock, list[ChatInbox]]:
    """Inboxes of `n` replicas over one database, on one clock."""
    clock = Clock()
    return clock, [
        ChatInbox(sa.create_engine(url), clock=clock, **options)  # type: ignore[arg-type]
        for _ in range(n)
    ]


def test_of_two_salespeople_claiming_at_once_exactly_one_wins(database_url: str) -> None:
    _, (one, two) = replicas(database_url)
    for session in ("fresh", "waiting"):  # no row yet (an insert race), and an update race
        if session == "waiting":
            one.hand_off(session, "visitor_request", [Said(BOT, "A colleague will help you.")])
        start = threading.Barrier(2)
        results: dict[str, object] = {}

        def claim(
            inbox: ChatInbox,
            name: str,
            session: str = session,
            start: threading.Barrier = start,
            results: dict[str, object] = results,
        ) -> None:
            start.wait()
            try:
                results[name] = inbox.claim(session, name, [Said(BOT, f"{name} joined")])
            except ClaimedByOtherError as exc:
                results[name] = exc

        threads = [
            threading.Thread(target=claim, args=(one, "Ana")),
            threading.Thread(target=claim, args=(two, "Luis")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lost = [n for n, r in results.items() if isinstance(r, ClaimedByOtherError)]
        assert len(lost) == 1, results
        winner = ({"Ana", "Luis"} - set(lost)).pop()
        assert one.takeover(session).salesperson == winner
        assert f"claimed by {winner!r}" in str(results[lost[0]])
        texts = [m.text for m in one.messages(session)]
        assert f"{winner} joined" in texts and f"{lost[0]} joined" not in texts


def test_only_the_salesperson_who_claimed_answers_or_releases(database_url: str) -> None:
    _, (inbox,) = replicas(database_url, 1)
    with pytest.raises(NotClaimedError, match="is not claimed; claim it before answering"):
        inbox.send("s1", "Ana", Said(SALESPERSON, "Hello", author="Ana"))
    inbox.claim("s1", "Ana", [])
    assert inbox.claim("s1", "Ana", []) == []  # claiming again is harmless
    with pytest.raises(NotClaimedError, match="claimed by 'Ana', not 'Luis'"):
        inbox.send("s1", "Luis", Said(SALESPERSON, "Hello", author="Luis"))
    with pytest.raises(NotClaimedError, match="claimed by 'Ana', not 'Luis'"):
        inbox.release("s1", "Luis", [])
    sent = inbox.send("s1", "Ana", Said(SALESPERSON, "Hello", author="Ana"))
    assert (sent.role, sent.author, sent.status, sent.salesperson) == (
        SALESPERSON,
        "Ana",
        CLAIMED,
        "Ana",
    )
    inbox.release("s1", "Ana", [Said(BOT, "Ana left")])
    assert inbox.takeover("s1").status == ASSISTANT
    with pytest.raises(NotClaimedError):
        inbox.send("s1", "Ana", Said(SALESPERSON, "Still there?", author="Ana"))


def test_a_salesperson_is_connected_while_their_inbox_says_so(database_url: str) -> None:
    clock, (inbox,) = replicas(database_url, 1, presence_s=30.0)
    assert not inbox.connected("Ana")
    inbox.seen("Ana")
    clock.now += 30
    assert inbox.connected("Ana")
    clock.now += 1
    assert not inbox.connected("Ana")


def test_a_visitor_message_to_a_gone_salesperson_is_kept_and_the_chat_waits_again(
    database_url: str,
) -> None:
    clock, (inbox,) = replicas(database_url, 1)
    inbox.claim("s1", "Ana", [])
    clock.now += 60
    said = [Said(VISITOR, "Are you there?"), Said(BOT, "Ana lost the connection.")]
    visitor, notice = inbox.salesperson_gone("s1", "Ana", said)
    chat = inbox.takeover("s1")
    assert (chat.status, chat.salesperson, chat.reason) == (WAITING, "", "salesperson_gone")
    assert chat.waiting_since == clock.now
    assert [m.text for m in inbox.messages("s1")][-2:] == [
        "Are you there?",
        "Ana lost the connection.",
    ]
    assert visitor.status == notice.status == WAITING
    # someone else can take it now
    inbox.claim("s1", "Luis", [])
    assert inbox.takeover("s1").salesperson == "Luis"


def test_an_overdue_chat_is_promised_a_callback_once_across_replicas(database_url: str) -> None:
    clock, (one, two) = replicas(database_url)
    one.hand_off("s1", "low_confidence", [Said(BOT, "A colleague will help you now.")])
    clock.now += 100
    assert one.overdue(120) == []
    clock.now += 21
    (late,) = one.overdue(120)
    assert two.overdue(120) == [late]
    first = one.promise_callback(late, [Said(BOT, "We will call you back.")])
    assert first is not None and first[0].status == CALLBACK
    assert two.promise_callback(late, [Said(BOT, "We will call you back.")]) is None
    assert [m.text for m in one.messages("s1")].count("We will call you back.") == 1
    assert one.overdue(120) == []


def test_a_claim_before_the_promise_wins_over_it(database_url: str) -> None:
    clock, (inbox,) = replicas(database_url, 1)
    inbox.hand_off("s1", "visitor_request", [])
    clock.now += 500
    (late,) = inbox.overdue(120)
    inbox.claim("s1", "Ana", [])
    assert inbox.promise_callback(late, [Said(BOT, "We will call you back.")]) is None
    assert inbox.takeover("s1").status == CLAIMED


def test_the_transcript_is_one_rising_sequence_across_chats_and_replicas(
    database_url: str,
) -> None:
    clock, (one, two) = replicas(database_url)
    one.say("a", Said(VISITOR, "hello"))
    two.say("b", Said(VISITOR, "hola"))
    one.say("a", Said(BOT, "Hi!"))
    both = one.since(0)
    assert [m.text for m in both] == ["hello", "hola", "Hi!"]
    assert [m.seq for m in both] == sorted(m.seq for m in both)
    assert [m.text for m in two.since(0, "a")] == ["hello", "Hi!"]
    assert [m.text for m in two.messages("a", after=both[0].seq)] == ["Hi!"]
    assert one.settled_seq(0) == 0  # all of it said this instant: nothing settled yet
    clock.now += 6
    assert one.settled_seq(5) == both[-1].seq


def test_hand_off_webhooks_are_queued_with_the_change(database_url: str) -> None:
    from datetime import UTC, datetime

    clock, (inbox,) = replicas(database_url, 1, webhook_urls=["https://desk.example/hook"])
    inbox.hand_off("s1", "complaint", [])
    inbox.claim("s1", "Ana", [])
    due = inbox.due_webhooks(datetime.fromtimestamp(clock.now + 1, UTC), 10)
    kinds = sorted(e["payload"]["type"] for e in due)
    assert kinds == ["chat.claimed", "chat.waiting"]
    assert all(e["payload"]["url"] == "https://desk.example/hook" for e in due)
    # claimed for delivery: not due again until the lease ends
    assert inbox.due_webhooks(datetime.fromtimestamp(clock.now + 2, UTC), 10) == []
