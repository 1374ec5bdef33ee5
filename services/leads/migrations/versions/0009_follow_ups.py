"""The follow-up queue: who contacts which lead next, and every step of it; and what an
open lead is worth (its expected value, ranked by ListOpportunities).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("expected_value", sa.Float(), nullable=True))
    op.create_index("ix_leads_expected_value", "leads", ["expected_value", "lead_id"])
    op.create_table(
        "follow_ups",
        sa.Column("follow_up_id", sa.String(32), nullable=False),
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.Column("origin_lead_id", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_as", sa.Text(), nullable=False),
        sa.Column("closed_as", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(8), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.lead_id"], name="fk_follow_ups_lead_id_leads"),
        sa.PrimaryKeyConstraint("follow_up_id", name="pk_follow_ups"),
    )
    op.create_index("ix_follow_ups_lead_due", "follow_ups", ["lead_id", "due_at", "follow_up_id"])
    op.create_index("ix_follow_ups_status_due", "follow_ups", ["status", "due_at", "follow_up_id"])
    op.create_index(
        "ix_follow_ups_owner_status_due",
        "follow_ups",
        ["owner", "status", "due_at", "follow_up_id"],
    )
    op.create_table(
        "follow_up_steps",
        sa.Column("step_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("follow_up_id", sa.String(32), nullable=False),
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.Column("origin_lead_id", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["follow_up_id"],
            ["follow_ups.follow_up_id"],
            name="fk_follow_up_steps_follow_up_id_follow_ups",
        ),
        sa.PrimaryKeyConstraint("step_id", name="pk_follow_up_steps"),
    )
    op.create_index("ix_follow_up_steps_follow_up_id", "follow_up_steps", ["follow_up_id"])
    op.create_index("ix_follow_up_steps_lead_id", "follow_up_steps", ["lead_id"])


def downgrade() -> None:
    op.drop_table("follow_up_steps")
    op.drop_table("follow_ups")
    op.drop_index("ix_leads_expected_value", "leads")
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("expected_value")
