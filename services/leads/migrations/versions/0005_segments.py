"""Lead segments: clusters named by their dominant features, and each lead's segment.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("segment_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("dominant_features", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", name="pk_segments"),
    )
    op.add_column("leads", sa.Column("segment", sa.String(32), nullable=True))
    op.create_index("ix_leads_segment", "leads", ["segment"])


def downgrade() -> None:
    op.drop_index("ix_leads_segment", "leads")
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("segment")
    op.drop_table("segments")
