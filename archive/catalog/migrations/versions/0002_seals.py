"""seals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:03:35.686866
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
        "seal_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("root", sa.String(length=128), nullable=False),
        sa.Column("tsa", sa.Text(), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("gen_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "seals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.String(length=128), nullable=False),
        sa.Column("subject_path", sa.Text(), nullable=False),
        sa.Column("subject_sha512", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("record_path", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["seal_batches.id"],
        ),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["packages.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package_id", "subject_path", "batch_id"),
    )


def downgrade() -> None:
    op.drop_table("seals")
    op.drop_table("seal_batches")
