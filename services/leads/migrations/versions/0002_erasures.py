"""Erasure audit: that a lead was forgotten, when and why, with no personal data.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("audit_id", sa.String(32), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("leads_erased", sa.Integer(), nullable=False),
        sa.Column("signals_erased", sa.Integer(), nullable=False),
        sa.Column("identities_erased", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name="pk_erasures"),
    )


def downgrade() -> None:
    op.drop_table("erasures")
