"""Chat session store: expiry, unknown ids, persistence across instances (restarts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from percept.nlp.sessions import (
    KEEP_EXPIRED_S,
    SessionExpiredError,
    SessionNotFoundError,
    SessionStore,
)


def test_a_session_lives_for_the_ttl_after_its_last_turn() -> None:
    store = SessionStore("memory", ttl_s=60)
    store.put("s1", {"turns": 1}, now=1_000)
    assert store.get("s1", now=1_059) == {"turns": 1}
    store.put("s1", {"turns": 2}, now=1_059)  # a new turn extends it
    assert store.get("s1", now=1_118) == {"turns": 2}
    with pytest.raises(SessionExpiredError):
        store.get("s1", now=1_119)
    with pytest.raises(SessionNotFoundError):
        store.get("never-seen", now=1_000)


def test_expired_sessions_are_purged_a_day_later() -> None:
    store = SessionStore("memory", ttl_s=60)
    store.put("old", {}, now=0)
    store.put("new", {}, now=60 + KEEP_EXPIRED_S + 61)  # purges what expired a day ago
    with pytest.raises(SessionNotFoundError):
        store.get("old", now=60 + KEEP_EXPIRED_S + 61)


def test_a_file_store_survives_a_new_instance(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    first = SessionStore(url, ttl_s=600)
    first.put("s1", {"slots": {"budget": "5000.00 EUR"}})
    first.close()
    assert SessionStore(url, ttl_s=600).get("s1") == {"slots": {"budget": "5000.00 EUR"}}
