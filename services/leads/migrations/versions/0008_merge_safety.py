"""Merges that do not join strangers: how many people a key was seen with, whether it
stopped linking (a switchboard), and merge suggestions awaiting a person's decision.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identities") as batch:
        batch.add_column(sa.Column("people", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(
            sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "merge_suggestions",
        sa.Column("suggestion_id", sa.String(32), nullable=False),
        sa.Column("lead_a", sa.String(32), nullable=False),
        sa.Column("lead_b", sa.String(32), nullable=False),
        sa.Column("key_type", sa.String(20), nullable=False),
        sa.Column("key_value", sa.String(320), nullable=False),
        sa.Column("evidence_signal_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("suggestion_id", name="pk_merge_suggestions"),
    )
    op.create_index("ix_merge_suggestions_lead_a", "merge_suggestions", ["lead_a"])
    op.create_index("ix_merge_suggestions_lead_b", "merge_suggestions", ["lead_b"])


def downgrade() -> None:
    op.drop_table("merge_suggestions")
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("shared")
        batch.drop_column("people")
