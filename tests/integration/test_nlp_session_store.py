"""The chat session store as two replicas use it, on the embedded SQLite and on real
PostgreSQL: a turn's write is a compare-and-set on what the turn read (the later of two
turns that read the same session is refused, and re-reads), and a salesperson's action
renews a session that has not expired."""

from __future__ import annotations

import pytest

from percept.nlp.sessions import SessionExpiredError, SessionStore


def test_of_two_turns_that_read_one_session_only_the_first_writes(database_url: str) -> None:
    one, two = SessionStore(database_url, ttl_s=600), SessionStore(database_url, ttl_s=600)
    with one.engine.begin() as conn:
        assert one.write(conn, "s1", {"slots": {}}, None)
    with two.engine.begin() as conn:  # a second new session of that id: refused
        assert not two.write(conn, "s1", {"slots": {"other": "x"}}, None)
    first, second = one.read("s1"), two.read("s1")
    assert first == second and first.state == {"slots": {}}
    with one.engine.begin() as conn:
        assert one.write(conn, "s1", {"slots": {"quantity": "10"}}, first.text)
    with two.engine.begin() as conn:  # read before the first wrote: refused, nothing written
        assert not two.write(conn, "s1", {"slots": {"email": "a@b.example"}}, second.text)
    again = two.read("s1")
    assert again.state == {"slots": {"quantity": "10"}}
    with two.engine.begin() as conn:  # on what is there now: written
        assert two.write(
            conn, "s1", {"slots": {"quantity": "10", "email": "a@b.example"}}, again.text
        )
    assert one.get("s1") == {"slots": {"quantity": "10", "email": "a@b.example"}}
    # the same state written again is still a change: a turn that read before it is refused
    latest = one.read("s1")
    with one.engine.begin() as conn:
        assert one.write(conn, "s1", latest.state, latest.text)
    with two.engine.begin() as conn:
        assert not two.write(conn, "s1", latest.state, latest.text)


def test_a_salesperson_renews_a_live_session_but_not_an_expired_one(database_url: str) -> None:
    store = SessionStore(database_url, ttl_s=60)
    store.put("live", {"turns": 1}, now=1_000)
    store.put("gone", {"turns": 1}, now=1_000)
    with store.engine.begin() as conn:
        assert store.renew(conn, "live", now=1_050)
        assert not store.renew(conn, "gone", now=1_061)  # expired at 1_060
        assert not store.renew(conn, "never-seen", now=1_050)
    assert store.get("live", now=1_109) == {"turns": 1}
    with pytest.raises(SessionExpiredError):
        store.get("gone", now=1_061)
