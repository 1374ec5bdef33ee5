"""Chat sessions: per-visitor dialogue state, kept for a while after the last turn.

SQLite in the data dir by default, so a restart loses no conversation; any
SQLAlchemy URL (the leads PostgreSQL in Kubernetes) for several replicas; or
'memory' for tests and throwaway runs. An expired session is kept a day more
so its visitor gets "expired", not "unknown"; then it is deleted with its transcript
and takeover state.

Two replicas may run turns of one session at once. A turn reads the session
(`read`: the state and the stored text it came from) and writes it back only if
that text is still there (`write`, a compare-and-set in the UPDATE): the turn that
loses re-reads and runs again on what the other wrote, so no turn's slots are
lost. Every write stores a fresh revision inside the JSON document, so the text
changes even when the state does not; the table itself is unchanged.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

KEEP_EXPIRED_S = 86_400.0
# the inbox's tables (percept.nlp.inbox) keyed by session: purged with their session
TRANSCRIPT_TABLES = ("chat_messages", "chat_takeovers")

metadata = sa.MetaData()
_sessions = sa.Table(
    "chat_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)


class SessionNotFoundError(LookupError):
    pass


class SessionExpiredError(LookupError):
    pass


REVISION = "_revision"  # inside the stored document: changes with every write


@dataclass(frozen=True)
class Stored:
    """A session's state as read, and the stored text a write must still find."""

    state: dict[str, Any]
    text: str


class SessionStore:
    def __init__(self, url: str, ttl_s: float) -> None:
        if url == "memory":
            self.engine = sa.create_engine(
                "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            self.engine = sa.create_engine(url)
        metadata.create_all(self.engine)  # one table of JSON documents: no migrations yet
        self.ttl_s = ttl_s
        self._last_purge = 0.0

    def get(self, session_id: str, now: float | None = None) -> dict[str, Any]:
        return self.read(session_id, now).state

    def read(self, session_id: str, now: float | None = None) -> Stored:
        """Raises SessionNotFoundError / SessionExpiredError."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_sessions.c.state, _sessions.c.expires_at).where(
                    _sessions.c.id == session_id
                )
            ).first()
        if row is None:
            raise SessionNotFoundError(session_id)
        if row.expires_at <= now:
            raise SessionExpiredError(session_id)
        state: dict[str, Any] = json.loads(row.state)
        state.pop(REVISION, None)
        return Stored(state, row.state)

    def put(self, session_id: str, state: dict[str, Any], now: float | None = None) -> None:
        """Writes the session whatever is stored (a turn uses `write`)."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            self.write(conn, session_id, state, None, now=now, replace=True)
        self.purge(now)

    def write(
        self,
        conn: Connection,
        session_id: str,
        state: dict[str, Any],
        expected: str | None,
        *,
        now: float | None = None,
        replace: bool = False,
    ) -> bool:
        """The session written in `conn`'s transaction if the stored text is still
        `expected` (None: a new session, no row yet); False when another turn wrote
        first. With `replace`, written whatever is stored."""
        now = time.time() if now is None else now
        text = json.dumps({**state, REVISION: uuid.uuid4().hex})
        values = {"state": text, "expires_at": now + self.ttl_s}
        if expected is not None and not replace:
            changed = sa.update(_sessions).where(
                _sessions.c.id == session_id, _sessions.c.state == expected
            )
            return conn.execute(changed.values(**values)).rowcount > 0
        if replace:
            insert = upsert(conn, _sessions).values(id=session_id, **values)
            conn.execute(insert.on_conflict_do_update(index_elements=["id"], set_=values))
            return True
        try:  # a new session: its id is fresh, so a clash is a turn that lost
            conn.execute(sa.insert(_sessions).values(id=session_id, **values))
        except sa.exc.IntegrityError:  # the caller rolls the transaction back
            return False
        return True

    def renew(self, conn: Connection, session_id: str, now: float | None = None) -> bool:
        """The session lives `ttl_s` from now (a salesperson wrote, or took the chat);
        False for a session expired or not there, which stays so."""
        now = time.time() if now is None else now
        renewed = conn.execute(
            sa.update(_sessions)
            .where(_sessions.c.id == session_id, _sessions.c.expires_at > now)
            .values(expires_at=now + self.ttl_s)
        ).rowcount
        return renewed > 0

    def purge(self, now: float | None = None) -> None:
        """Sessions expired a day ago go, with their transcripts (at most once a minute)."""
        now = time.time() if now is None else now
        if now - self._last_purge <= 60:
            return
        self._last_purge = now
        expired = _sessions.c.expires_at < now - KEEP_EXPIRED_S
        gone = sa.select(_sessions.c.id).where(expired)
        with self.engine.begin() as conn:
            for name in TRANSCRIPT_TABLES:  # a session's transcript goes with it
                table = metadata.tables.get(name)
                if table is not None:
                    conn.execute(sa.delete(table).where(table.c.session_id.in_(gone)))
            conn.execute(sa.delete(_sessions).where(expired))

    def close(self) -> None:
        self.engine.dispose()


def upsert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL, SQLite)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
