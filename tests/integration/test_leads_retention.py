"""Signals are kept only as long as their kind's retention allows."""

from __future__ import annotations

import pytest
from leads_signals import NOW, signal

from percept.leads.store import LeadFilter, LeadStore
from percept.runtime.settings import SettingsError, load_settings
from percept.v1 import common_pb2 as c

DAY = 24 * 60


def test_expired_signals_go_and_empty_leads_with_them(database_url: str) -> None:
    store = LeadStore(database_url, clock=lambda: NOW)
    store.migrate()
    store.ingest(
        [
            # One person: an old store visit, a recent chat intent.
            signal(
                source=c.SOURCE_VISION,
                kind=c.SIGNAL_KIND_DWELL,
                name="tvs",
                value="tv",
                numeric_value=200,
                minutes=-60 * DAY,
                visitor_id="v1",
                email="a@example.com",
            ),
            signal(source=c.SOURCE_CHAT, name="price_inquiry", minutes=-DAY, email="a@example.com"),
            # Another: only an old sighting.
            signal(
                source=c.SOURCE_VISION,
                kind=c.SIGNAL_KIND_FACE_SEEN,
                name="",
                minutes=-100 * DAY,
                visitor_id="v2",
            ),
            # A third: an old intent, still within the default retention.
            signal(name="purchase_intent", minutes=-300 * DAY, phone="+14155552671"),
        ]
    )
    deleted = store.purge_expired(730, {"dwell": 30, "face_seen": 90})
    assert deleted == (2, 1)
    rows, _ = store.page(LeadFilter(), 10, "")
    by_key = {k.value: r for r in rows for k in r["keys"]}
    assert "v2" not in by_key  # the sighting-only lead is gone, keys included
    assert by_key["a@example.com"]["signal_count"] == 1
    assert by_key["a@example.com"]["product_interest"] == ""  # the dwell no longer counts
    assert by_key["+14155552671"]["signal_count"] == 1
    assert store.purge_expired(730, {"dwell": 30, "face_seen": 90}) == (0, 0)
    assert store.purge_expired(100, {}) == (1, 1)  # a shorter default takes the old intent
    store.close()


def test_retention_settings_name_unknown_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPT_LEADS_RETENTION_BY_KIND", '{"dwel": 30}')
    with pytest.raises(SettingsError, match="unknown signal kind 'dwel'"):
        load_settings()
    monkeypatch.setenv("PERCEPT_LEADS_RETENTION_BY_KIND", '{"dwell": 0}')
    with pytest.raises(SettingsError, match="more than 0 days"):
        load_settings()
    monkeypatch.setenv("PERCEPT_LEADS_RETENTION_BY_KIND", '{"dwell": 30}')
    assert load_settings().leads_retention_by_kind == {"dwell": 30}
