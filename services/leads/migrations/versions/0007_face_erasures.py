"""Face erasures: the face identities of erased leads, queued until vision confirms.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_erasures",
        sa.Column("face_identity_id", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("face_identity_id", name="pk_face_erasures"),
    )
    op.create_index("ix_face_erasures_next_attempt_at", "face_erasures", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("face_erasures")
