"""Chat sessions: per-visitor dialogue state, kept for a while after the last turn.

SQLite in the data dir by default, so a restart loses no conversation; any
SQLAlchemy URL (the leads PostgreSQL in Kubernetes) for several replicas; or
'memory' for tests and throwaway runs. An expired session is kept a day more
so its visitor gets "expired", not "unknown"; then it is deleted with its transcript
and takeover state.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

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
        return state

    def put(self, session_id: str, state: dict[str, Any], now: float | None = None) -> None:
        now = time.time() if now is None else now
        values = {"state": json.dumps(state), "expires_at": now + self.ttl_s}
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(_sessions).where(_sessions.c.id == session_id).values(**values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(_sessions).values(id=session_id, **values))
            if now - self._last_purge > 60:
                self._last_purge = now
                expired = _sessions.c.expires_at < now - KEEP_EXPIRED_S
                gone = sa.select(_sessions.c.id).where(expired)
                for name in TRANSCRIPT_TABLES:  # a session's transcript goes with it
                    table = metadata.tables.get(name)
                    if table is not None:
                        conn.execute(sa.delete(table).where(table.c.session_id.in_(gone)))
                conn.execute(sa.delete(_sessions).where(expired))

    def close(self) -> None:
        self.engine.dispose()
