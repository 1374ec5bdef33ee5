"""GetLead's timeline is bounded: a lead with a long history still opens."""

from __future__ import annotations

from datetime import timedelta

from leads_signals import NOW, signal

from percept.leads.identity import IdentityKey
from percept.leads.store import LeadStore, utc
from percept.leads.store.queries import MAX_TIMELINE_ENTRIES

EXTRA = 30


def test_the_timeline_holds_the_most_recent_entries_oldest_first(database_url: str) -> None:
    store = LeadStore(database_url, clock=lambda: NOW + timedelta(days=2))
    store.migrate()
    history = [
        signal(crm_id="ACME-1", name="product_question", minutes=i)
        for i in range(MAX_TIMELINE_ENTRIES + EXTRA)
    ]
    assert store.ingest(history).accepted == len(history)
    lead = store.lead_of_key(IdentityKey("crm_id", "ACME-1"))
    assert lead is not None
    view = store.get(lead, include_timeline=True)
    store.close()
    assert view is not None
    assert view.row["signal_count"] == len(history)  # how many there are in all
    assert len(view.timeline) == MAX_TIMELINE_ENTRIES
    times = [utc(e["occurred_at"]) for e in view.timeline]
    assert times == sorted(times)
    shown = [e["signal_id"] for e in view.timeline if "signal_id" in e]
    newest = [s.signal_id for s in history[-len(shown) :]]
    assert shown == newest  # the most recent, in order; the oldest left out
    assert history[0].signal_id not in shown
