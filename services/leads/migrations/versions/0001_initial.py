"""Initial leads store: leads, identities, signals, merges, store settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("last_signal_at", TZ, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("lead_class", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("product_interest", sa.String(200), nullable=False),
        sa.Column("signal_count", sa.Integer(), nullable=False),
        sa.Column("qualification", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("merged_into", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["leads.lead_id"], name="fk_leads_merged_into_leads"
        ),
        sa.PrimaryKeyConstraint("lead_id", name="pk_leads"),
    )
    op.create_index("ix_leads_created", "leads", ["created_at", "lead_id"])
    op.create_index("ix_leads_class_score", "leads", ["lead_class", "score"])
    op.create_table(
        "identities",
        sa.Column("key_type", sa.String(20), nullable=False),
        sa.Column("key_value", sa.String(320), nullable=False),
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.Column("origin_lead_id", sa.String(32), nullable=False),
        sa.Column("first_seen_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.lead_id"], name="fk_identities_lead_id_leads"),
        sa.PrimaryKeyConstraint("key_type", "key_value", name="pk_identities"),
    )
    op.create_index("ix_identities_lead_id", "identities", ["lead_id"])
    op.create_table(
        "signals",
        sa.Column("signal_id", sa.String(128), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.Column("origin_lead_id", sa.String(32), nullable=False),
        sa.Column("source", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("numeric_value", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.String(200), nullable=False),
        sa.Column("identity", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.lead_id"], name="fk_signals_lead_id_leads"),
        sa.PrimaryKeyConstraint("signal_id", name="pk_signals"),
    )
    op.create_index("ix_signals_lead_time", "signals", ["lead_id", "occurred_at"])
    op.create_table(
        "merges",
        sa.Column("merge_id", sa.String(32), nullable=False),
        sa.Column("survivor_id", sa.String(32), nullable=False),
        sa.Column("absorbed_id", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence_signal_id", sa.String(128), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("undone_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["leads.lead_id"], name="fk_merges_survivor_id_leads"
        ),
        sa.ForeignKeyConstraint(
            ["absorbed_id"], ["leads.lead_id"], name="fk_merges_absorbed_id_leads"
        ),
        sa.PrimaryKeyConstraint("merge_id", name="pk_merges"),
    )
    op.create_index("ix_merges_survivor_id", "merges", ["survivor_id"])
    op.create_table(
        "store_settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_store_settings"),
    )


def downgrade() -> None:
    for table in ("store_settings", "merges", "signals", "identities", "leads"):
        op.drop_table(table)
