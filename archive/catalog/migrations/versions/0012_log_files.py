"""the custody log's files in the storage root (checkpoints, their evidence records, trust
anchors), with the digests their copies are replicated and checked against

Revision ID: 0012_log_files
Revises: 0011_sessions
Create Date: 2026-11-22 13:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_log_files"
down_revision = "0011_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("path"),
    )


def downgrade() -> None:
    op.drop_table("log_files")
