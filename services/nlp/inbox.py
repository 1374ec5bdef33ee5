"""Who answers each chat, and every message of it, in the nlp session store.

A chat is the assistant's until it hands off (it waits for a salesperson) or a
salesperson claims it; a claimed chat is the salesperson's until they release
it. The state lives in the session store's database, never in a replica's
memory, so any replica serves any visitor and any salesperson:
- `chat_takeovers` holds a chat's state once it has left the assistant; a claim
  is one conditional UPDATE (or an INSERT guarded by the primary key), so of two
  salespeople claiming at once exactly one wins;
- `chat_messages` is every message in the order it was said (`seq`), with the
  chat's state after it: watchers follow that one log, and a state change always
  comes with a message (a hand-off reply, "Ana has joined the chat"...);
- `chat_salespeople` says when each salesperson's inbox was last connected;
- `chat_webhook_events` queues the help desk's webhooks with the change.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from percept.nlp.sessions import metadata, upsert
from percept.runtime.webhooks import claim_due, purge_settled, record_attempt

ASSISTANT, WAITING, CLAIMED, CALLBACK = "assistant", "waiting", "claimed", "callback"
STATUSES = (ASSISTANT, WAITING, CLAIMED, CALLBACK)
VISITOR, BOT, SALESPERSON = "visitor", "assistant", "salesperson"
CLAIM_LEASE_S = 30.0  # a webhook batch is one replica's to deliver for this long

_takeovers = sa.Table(
    "chat_takeovers",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("salesperson", sa.String(100), nullable=False, default=""),
    sa.Column("reason", sa.String(40), nullable=False, default=""),
    sa.Column("waiting_since", sa.Float, nullable=True),
    sa.Column("changed_at", sa.Float, nullable=False),
)
_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("author", sa.String(100), nullable=False, default=""),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("language", sa.String(35), nullable=False, default=""),
    sa.Column("sent_at", sa.Float, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),  # the chat's, once this was said
    sa.Column("salesperson", sa.String(100), nullable=False, default=""),
    sqlite_autoincrement=True,  # a number is never used twice, even after a purge
)
_salespeople = sa.Table(
    "chat_salespeople",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False),
)
_webhooks = sa.Table(
    "chat_webhook_events",
    metadata,
    sa.Column("event_id", sa.String(32), primary_key=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("failed", sa.Boolean, nullable=False, default=False),
    sa.Column("last_error", sa.Text, nullable=True),
)


class TakeoverError(Exception):
    """A salesperson asked for what the chat's state does not allow; says why."""


class ClaimedByOtherError(TakeoverError):
    pass


class NotClaimedError(TakeoverError):
    pass


@dataclass(frozen=True)
class Takeover:
    session_id: str
    status: str = ASSISTANT
    salesperson: str = ""
    reason: str = ""
    waiting_since: float | None = None
    changed_at: float = 0.0


@dataclass(frozen=True)
class Message:
    seq: int
    session_id: str
    role: str
    author: str
    text: str
    language: str
    sent_at: float
    status: str
    salesperson: str


@dataclass(frozen=True)
class Said:
    """A message to add to a chat's transcript."""

    role: str
    text: str
    author: str = ""
    language: str = ""


class ChatInbox:
    def __init__(
        self,
        engine: Engine,
        *,
        presence_s: float = 30.0,
        webhook_urls: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.presence_s = presence_s
        self.webhook_urls = list(webhook_urls)
        self.clock = clock
        metadata.create_all(engine)

    # -- reading ----------------------------------------------------------------

    def takeover(self, session_id: str) -> Takeover:
        with self.engine.connect() as conn:
            return self._takeover(conn, session_id)

    def chats(self, statuses: Sequence[str], limit: int, active_s: float) -> list[Takeover]:
        """Chats in these states: waiting first (longest wait first), then by last change;
        the assistant's own chats are those with a message in the last `active_s`."""
        t, m = _takeovers.c, _messages.c
        order = sa.case((t.status == WAITING, 0), (t.status == CLAIMED, 1), else_=2)
        waited = sa.case((t.status == WAITING, t.waiting_since), else_=None)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_takeovers)
                .where(t.status.in_([s for s in statuses if s != ASSISTANT]))
                .order_by(order, waited, t.changed_at.desc())
                .limit(limit)
            ).mappings()
            found = [Takeover(**r) for r in rows]
            if ASSISTANT in statuses and len(found) < limit:
                latest = sa.func.max(m.seq)
                recent = conn.execute(  # every chat with a message has its row (lock)
                    sa.select(m.session_id, sa.func.max(m.sent_at))
                    .join(_takeovers, t.session_id == m.session_id)
                    .where(m.sent_at > self.clock() - active_s, t.status == ASSISTANT)
                    .group_by(m.session_id)
                    .order_by(latest.desc())
                    .limit(limit - len(found))
                ).all()
                found += [Takeover(r[0], changed_at=float(r[1])) for r in recent]
            return found

    def messages(self, session_id: str, after: int = 0, limit: int = 500) -> list[Message]:
        m = _messages.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_messages)
                .where(m.session_id == session_id, m.seq > after)
                .order_by(m.seq.desc())
                .limit(limit)
            ).mappings()
            return [Message(**r) for r in reversed(list(rows))]

    def since(self, floor: int, session_id: str = "", limit: int = 500) -> list[Message]:
        """Messages after seq `floor` (one chat's, or every chat's), oldest first."""
        m = _messages.c
        query = sa.select(_messages).where(m.seq > floor)
        if session_id:
            query = query.where(m.session_id == session_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(m.seq).limit(limit)).mappings()
            return [Message(**r) for r in rows]

    def settled_seq(self, grace_s: float) -> int:
        """The last message number below which every message has committed: the newest
        one older than `grace_s` (a sequence number may commit after a later one)."""
        m = _messages.c
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(sa.func.max(m.seq)).where(m.sent_at < self.clock() - grace_s)
            ).scalar()
            return int(found or 0)

    def connected(self, salesperson: str, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        with self.engine.connect() as conn:
            seen = conn.execute(
                sa.select(_salespeople.c.seen_at).where(_salespeople.c.name == salesperson)
            ).scalar()
        return seen is not None and now - seen <= self.presence_s

    # -- changing ---------------------------------------------------------------

    def say(self, session_id: str, *said: Said) -> list[Message]:
        """Adds messages to the transcript; the chat's state stays as it is."""
        with self.engine.begin() as conn:
            return self.record_turn(conn, self.lock(conn, session_id), said)

    def hand_off(self, session_id: str, reason: str, said: Sequence[Said]) -> list[Message]:
        """The assistant gives up the chat: it waits for a salesperson (unless one has it)."""
        with self.engine.begin() as conn:
            return self.record_turn(conn, self.lock(conn, session_id), said, handoff=reason)

    def salesperson_gone(
        self, session_id: str, salesperson: str, said: Sequence[Said]
    ) -> list[Message]:
        """A claimed chat whose salesperson's inbox is gone waits for another one."""
        with self.engine.begin() as conn:
            current = self.lock(conn, session_id)
            return self.record_turn(conn, current, said, gone=salesperson)

    def record_turn(
        self,
        conn: Connection,
        current: Takeover,
        said: Sequence[Said],
        *,
        handoff: str = "",
        gone: str = "",
    ) -> list[Message]:
        """A visitor's turn into the transcript, in the transaction that `lock`ed the chat
        as `current`: with `handoff` (a reason) the chat waits for a salesperson unless one
        has it; with `gone` (a salesperson), the chat that salesperson has waits again."""
        if handoff and current.status in (ASSISTANT, CALLBACK):
            current = self._set(conn, current, WAITING, "", handoff, self.clock())
            self._queue(conn, "chat.waiting", current)
        elif gone and current.status == CLAIMED and current.salesperson == gone:
            current = self._set(conn, current, WAITING, "", "salesperson_gone", self.clock())
            self._queue(conn, "chat.waiting", current, salesperson=gone)
        return [self._append(conn, current, s) for s in said]

    def claim(
        self,
        session_id: str,
        salesperson: str,
        said: Sequence[Said],
        renew: Callable[[Connection], object] | None = None,
    ) -> list[Message]:
        """Takes the chat over; ClaimedByOtherError when another salesperson has it. A claim
        of one's own chat again changes nothing and says nothing. `renew` runs in the
        transaction (the visitor's session lives on while a salesperson acts)."""
        with self.engine.begin() as conn:
            current = self.lock(conn, session_id)
            self._seen(conn, salesperson, self.clock())
            if current.status == CLAIMED:
                if current.salesperson == salesperson:
                    return []
                raise ClaimedByOtherError(
                    f"session_id: chat {session_id!r} is already claimed by {current.salesperson!r}"
                )
            reason = current.reason if current.status != ASSISTANT else SALESPERSON
            current = self._set(conn, current, CLAIMED, salesperson, reason)
            self._queue(conn, "chat.claimed", current)
            if renew is not None:
                renew(conn)
            return [self._append(conn, current, s) for s in said]

    def release(
        self,
        session_id: str,
        salesperson: str,
        said: Sequence[Said],
        renew: Callable[[Connection], object] | None = None,
    ) -> list[Message]:
        """Gives the chat back to the assistant; NotClaimedError unless `salesperson` has it."""
        with self.engine.begin() as conn:
            current = self._holder(conn, session_id, salesperson)
            current = self._set(conn, current, ASSISTANT, "", current.reason)
            self._queue(conn, "chat.released", current, salesperson=salesperson)
            if renew is not None:
                renew(conn)
            return [self._append(conn, current, s) for s in said]

    def send(
        self,
        session_id: str,
        salesperson: str,
        said: Said,
        renew: Callable[[Connection], object] | None = None,
    ) -> Message:
        """A salesperson's message; NotClaimedError unless they hold the chat."""
        with self.engine.begin() as conn:
            current = self._holder(conn, session_id, salesperson)
            self._seen(conn, salesperson, self.clock())
            if renew is not None:
                renew(conn)
            return self._append(conn, current, said)

    def overdue(self, waited_s: float) -> list[Takeover]:
        """Chats that have waited for a salesperson longer than `waited_s`."""
        t = _takeovers.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_takeovers).where(
                    t.status == WAITING, t.waiting_since < self.clock() - waited_s
                )
            ).mappings()
            return [Takeover(**r) for r in rows]

    def promise_callback(self, chat: Takeover, said: Sequence[Said]) -> list[Message] | None:
        """A waiting chat gets its callback promise: None when another replica (or a claim)
        got there first."""
        with self.engine.begin() as conn:
            current = self.lock(conn, chat.session_id)
            if current.status != WAITING or current.waiting_since != chat.waiting_since:
                return None
            current = self._set(conn, current, CALLBACK, "", current.reason, current.waiting_since)
            self._queue(conn, "chat.callback_promised", current)
            return [self._append(conn, current, s) for s in said]

    def seen(self, salesperson: str) -> None:
        """The salesperson's inbox is connected now."""
        with self.engine.begin() as conn:
            self._seen(conn, salesperson, self.clock())

    # -- webhooks (runtime.webhooks.WebhookQueue) -------------------------------

    def due_webhooks(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            return claim_due(conn, _webhooks, now, limit, CLAIM_LEASE_S)

    def purge_settled(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return purge_settled(conn, _webhooks, before)

    def webhook_attempted(
        self,
        event_id: str,
        *,
        delivered: bool,
        now: datetime,
        retry_at: datetime | None,
        error: str | None,
    ) -> None:
        with self.engine.begin() as conn:
            record_attempt(
                conn,
                _webhooks,
                event_id,
                delivered=delivered,
                now=now,
                retry_at=retry_at,
                error=error,
            )

    # -- inside a transaction ---------------------------------------------------

    def _takeover(self, conn: Connection, session_id: str) -> Takeover:
        row = (
            conn.execute(sa.select(_takeovers).where(_takeovers.c.session_id == session_id))
            .mappings()
            .first()
        )
        return Takeover(**row) if row else Takeover(session_id)

    def lock(self, conn: Connection, session_id: str) -> Takeover:
        """The chat's state, held until the transaction ends: a row lock in PostgreSQL; in
        SQLite the insert takes the database's write lock before anything is read. Every
        writing transaction starts here, so none acts on a state another has changed."""
        conn.execute(
            upsert(conn, _takeovers)
            .values(
                session_id=session_id,
                status=ASSISTANT,
                salesperson="",
                reason="",
                waiting_since=None,
                changed_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["session_id"])
        )
        row = (
            conn.execute(
                sa.select(_takeovers).where(_takeovers.c.session_id == session_id).with_for_update()
            )
            .mappings()
            .one()
        )
        return Takeover(**row)

    def _holder(self, conn: Connection, session_id: str, salesperson: str) -> Takeover:
        current = self.lock(conn, session_id)
        if current.status != CLAIMED:
            raise NotClaimedError(
                f"session_id: chat {session_id!r} is not claimed; claim it before answering"
            )
        if current.salesperson != salesperson:
            raise NotClaimedError(
                f"session_id: chat {session_id!r} is claimed by {current.salesperson!r}, "
                f"not {salesperson!r}"
            )
        return current

    def _set(
        self,
        conn: Connection,
        current: Takeover,
        status: str,
        salesperson: str,
        reason: str,
        waiting_since: float | None = None,
    ) -> Takeover:
        now = self.clock()
        values = {
            "status": status,
            "salesperson": salesperson,
            "reason": reason,
            "waiting_since": waiting_since,
            "changed_at": now,
        }
        conn.execute(
            sa.update(_takeovers)
            .where(_takeovers.c.session_id == current.session_id)
            .values(**values)
        )
        return Takeover(current.session_id, status, salesperson, reason, waiting_since, now)

    def _append(self, conn: Connection, current: Takeover, said: Said) -> Message:
        values = {
            "session_id": current.session_id,
            "role": said.role,
            "author": said.author,
            "text": said.text,
            "language": said.language,
            "sent_at": self.clock(),
            "status": current.status,
            "salesperson": current.salesperson,
        }
        key = conn.execute(sa.insert(_messages).values(**values)).inserted_primary_key
        assert key is not None
        return Message(seq=int(key[0]), **values)  # type: ignore[arg-type]

    def _seen(self, conn: Connection, salesperson: str, now: float) -> None:
        insert = upsert(conn, _salespeople).values(name=salesperson, seen_at=now)
        conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_={"seen_at": now}))

    def _queue(self, conn: Connection, kind: str, chat: Takeover, **extra: str) -> None:
        if not self.webhook_urls:
            return
        now = datetime.fromtimestamp(self.clock(), UTC)
        payload = {
            "type": kind,
            "session_id": chat.session_id,
            "status": chat.status,
            "salesperson": chat.salesperson,
            "reason": chat.reason,
            "changed_at": now.isoformat(),
            **extra,
        }
        for url in self.webhook_urls:
            conn.execute(
                sa.insert(_webhooks).values(
                    event_id=uuid.uuid4().hex,
                    payload={**payload, "url": url},
                    attempts=0,
                    next_attempt_at=now,
                    failed=False,
                )
            )
