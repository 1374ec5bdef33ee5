"""Tables of the leads store (SQLAlchemy Core); Alembic migrations create them.

Signals are the append-only source of truth: a lead's score, class, stage and
timeline are all derived from its signals, so a lead can be recomputed, merged
or split without losing anything.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

leads = Table(
    "leads",
    metadata,
    Column("lead_id", String(32), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_signal_at", DateTime(timezone=True), nullable=False),
    Column("score", Float, nullable=False, default=0.0),
    Column("lead_class", Integer, nullable=False),
    Column("stage", Integer, nullable=False),
    Column("product_interest", String(200), nullable=False, default=""),
    Column("signal_count", Integer, nullable=False, default=0),
    Column("qualification", JSON, nullable=False, default=dict),
    Column("channels", JSON, nullable=False, default=list),
    # scoring.Features as JSON; NULL: recompute from the signals.
    Column("features", JSON, nullable=True),
    Column("segment", String(32), nullable=True, index=True),
    # Set when this lead was merged into another; such leads are hidden from lists.
    Column("merged_into", String(32), ForeignKey("leads.lead_id"), nullable=True),
    # What an open lead is worth (opportunities.expected_value); NULL: won, lost or unknown.
    Column("expected_value", Float, nullable=True),
    Index("ix_leads_created", "created_at", "lead_id"),
    Index("ix_leads_expected_value", "expected_value", "lead_id"),
    Index("ix_leads_class_score", "lead_class", "score"),
)

identities = Table(
    "identities",
    metadata,
    Column("key_type", String(20), primary_key=True),
    Column("key_value", String(320), primary_key=True),
    Column("lead_id", String(32), ForeignKey("leads.lead_id"), nullable=False, index=True),
    # The lead the key first belonged to: a split gives it back.
    Column("origin_lead_id", String(32), nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    # People the key was seen with (it linked, or was refused as linking, this many
    # leads); past the limit it stops linking: a switchboard, a family address.
    Column("people", Integer, nullable=False, server_default="1"),
    Column("shared", Boolean, nullable=False, server_default=false()),
)

signals = Table(
    "signals",
    metadata,
    Column("signal_id", String(128), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("lead_id", String(32), ForeignKey("leads.lead_id"), nullable=False),
    Column("origin_lead_id", String(32), nullable=False),
    Column("source", Integer, nullable=False),
    Column("kind", Integer, nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("value", Text, nullable=False, default=""),
    Column("numeric_value", Float, nullable=False, default=0.0),
    Column("confidence", Float, nullable=False),
    Column("evidence", Text, nullable=False, default=""),
    Column("campaign_id", String(200), nullable=False, default=""),
    Column("identity", JSON, nullable=False),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_signals_lead_time", "lead_id", "occurred_at"),
)

merges = Table(
    "merges",
    metadata,
    Column("merge_id", String(32), primary_key=True),
    Column("survivor_id", String(32), ForeignKey("leads.lead_id"), nullable=False, index=True),
    Column("absorbed_id", String(32), ForeignKey("leads.lead_id"), nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence_signal_id", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("undone_at", DateTime(timezone=True), nullable=True),
)

# What an erasure leaves behind: the fact, never the person's data.
erasures = Table(
    "erasures",
    metadata,
    Column("audit_id", String(32), primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("leads_erased", Integer, nullable=False),
    Column("signals_erased", Integer, nullable=False),
    Column("identities_erased", Integer, nullable=False),
)

# Tombstones of erasures, so that a replayed or late signal cannot bring an erased person
# back. Nothing personal: keyed hashes (HMAC with the store's `erasure_key` setting) of the
# erased signals' ids and of the erased identity keys, and when they were erased. A signal
# whose id is here, or that carries a key here and occurred at or before that key's
# erasure, is dropped at ingest. The retention purge deletes rows older than the longest
# signal retention (a signal that old is expired when it comes back).
erased_signals = Table(
    "erased_signals",
    metadata,
    Column("signal_hash", String(64), primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False, index=True),
)

erased_keys = Table(
    "erased_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False, index=True),
)

# Models fitted by `percept leads train`; the active one replaces the prior.
scoring_models = Table(
    "scoring_models",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
)

# Clusters of leads by their features (`percept leads segments`).
segments = Table(
    "segments",
    metadata,
    Column("segment_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("size", Integer, nullable=False),
    Column("dominant_features", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Class and stage changes for CRMs, written in the transaction that made them.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(32), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("failed", Boolean, nullable=False),
    Column("last_error", Text, nullable=True),
    Index("ix_webhook_events_due", "delivered_at", "failed", "next_attempt_at"),
)

# Leads a weaker shared key would have merged although each holds a different strong key
# of one type (two e-mails): a person decides (MergeLeads with the suggestion, or dismiss).
merge_suggestions = Table(
    "merge_suggestions",
    metadata,
    Column("suggestion_id", String(32), primary_key=True),
    Column("lead_a", String(32), nullable=False, index=True),
    Column("lead_b", String(32), nullable=False, index=True),
    Column("key_type", String(20), nullable=False),
    Column("key_value", String(320), nullable=False),
    Column("evidence_signal_id", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decision", String(16), nullable=True),  # accepted | dismissed
    Column("decision_reason", Text, nullable=True),  # what the person who decided said
)

# Face identities of erased leads, until the vision service confirms their embeddings are gone.
face_erasures = Table(
    "face_erasures",
    metadata,
    Column("face_identity_id", String(64), primary_key=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    Column("last_error", Text, nullable=True),
)

# Who contacts which lead next (followups.yaml): at most one open per lead, kept in step
# with the lead's state by every write; closed ones stay as the lead's history.
follow_ups = Table(
    "follow_ups",
    metadata,
    Column("follow_up_id", String(32), primary_key=True),
    Column("lead_id", String(32), ForeignKey("leads.lead_id"), nullable=False),
    Column("origin_lead_id", String(32), nullable=False),  # a split gives it back
    Column("rule", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("owner", String(200), nullable=False),  # '' when the rules name nobody
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("snoozed_until", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),  # open | done | replaced | dropped
    Column("closed_at", DateTime(timezone=True), nullable=True),
    # The timeline's words for its opening and its closing (kept in the row: ingest opens
    # and closes follow-ups in every batch, and a row costs less than a step).
    Column("opened_as", Text, nullable=False),
    Column("closed_as", Text, nullable=True),
    Column("outcome", String(8), nullable=True),  # won | lost | '' (contacted, nothing decided)
    Column("note", Text, nullable=True),
    Column("overdue_at", DateTime(timezone=True), nullable=True),  # when it was found overdue
    # a lead's own (and its open one) without scanning every open follow-up
    Index("ix_follow_ups_lead_due", "lead_id", "due_at", "follow_up_id"),
    Index("ix_follow_ups_status_due", "status", "due_at", "follow_up_id"),
    Index("ix_follow_ups_owner_status_due", "owner", "status", "due_at", "follow_up_id"),
)

# The steps of a follow-up between its opening and its closing (snoozed, overdue): the
# lead's timeline shows them beside its signals.
follow_up_steps = Table(
    "follow_up_steps",
    metadata,
    Column("step_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "follow_up_id",
        String(32),
        ForeignKey("follow_ups.follow_up_id"),
        nullable=False,
        index=True,
    ),
    Column("lead_id", String(32), nullable=False, index=True),
    Column("origin_lead_id", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("step", String(16), nullable=False),
    Column("detail", Text, nullable=False),
)

settings_table = Table(
    "store_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
