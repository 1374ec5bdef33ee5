"""Erasure tombstones: keyed hashes of erased signal ids and identity keys, with the
erasure time, so that a replayed or queued signal cannot bring an erased person back.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_signals",
        sa.Column("signal_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signal_hash", name="pk_erased_signals"),
    )
    op.create_index("ix_erased_signals_erased_at", "erased_signals", ["erased_at"])
    op.create_table(
        "erased_keys",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name="pk_erased_keys"),
    )
    op.create_index("ix_erased_keys_erased_at", "erased_keys", ["erased_at"])


def downgrade() -> None:
    op.drop_index("ix_erased_keys_erased_at", table_name="erased_keys")
    op.drop_table("erased_keys")
    op.drop_index("ix_erased_signals_erased_at", table_name="erased_signals")
    op.drop_table("erased_signals")
