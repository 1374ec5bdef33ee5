"""The leads store, one part a file, each readable alone:

- base: the engine, the write transaction (one at a time across replicas on
  PostgreSQL, by an advisory lock), change notification, migrations;
- ingest: idempotent ingest and identity resolution (which lead a signal is, and the
  merges and merge suggestions it makes);
- state: a lead's derived state (score, class, stage) kept up to date;
- lifecycle: a person's decisions (merge, suggestions, split, erase);
- outbox: webhooks and face erasures queued in a write, claimed and done later;
- retention: expired signals, and leads left without any (and old erasure tombstones);
- tombstones: what an erasure keeps (keyed hashes, nothing personal) so that replayed
  or queued signals cannot bring the erased person back;
- queries: reading leads and pages of them;
- follow_up_sync / follow_ups: the follow-up queue, kept in step by every write, and
  what salespeople do with it (list, complete, snooze);
- opportunities: open leads by expected value, and what won leads bought;
- analytics: what training, segmentation and campaign reports read and write.
"""

from __future__ import annotations

from percept.leads.store.analytics import AnalyticsMixin
from percept.leads.store.base import (
    Erasure,
    GroupResult,
    IngestResult,
    InvalidPageTokenError,
    LeadConflictError,
    LeadFilter,
    LeadNotFoundError,
    LeadView,
    StoreVersionError,
    now_utc,
    utc,
)
from percept.leads.store.follow_ups import (
    FollowUpClosedError,
    FollowUpNotFoundError,
    FollowUpQuery,
    FollowUpsMixin,
)
from percept.leads.store.ingest import IngestMixin
from percept.leads.store.lifecycle import LifecycleMixin
from percept.leads.store.opportunities import OpportunitiesMixin
from percept.leads.store.queries import QueriesMixin
from percept.leads.store.retention import RetentionMixin


class LeadStore(
    IngestMixin,
    LifecycleMixin,
    RetentionMixin,
    FollowUpsMixin,
    OpportunitiesMixin,
    QueriesMixin,
    AnalyticsMixin,
):
    """Synchronous SQLAlchemy Core; the servicer calls it from worker threads."""


__all__ = [
    "Erasure",
    "FollowUpClosedError",
    "FollowUpNotFoundError",
    "FollowUpQuery",
    "GroupResult",
    "IngestResult",
    "InvalidPageTokenError",
    "LeadConflictError",
    "LeadFilter",
    "LeadNotFoundError",
    "LeadStore",
    "LeadView",
    "StoreVersionError",
    "now_utc",
    "utc",
]
