"""stored files (inventories, sidecars, evidence records, trust anchors) for fixity; each
replication plan's locations per tier

Revision ID: 0008_stored_files
Revises: 0007_reviews
Create Date: 2026-11-22 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_stored_files"
down_revision = "0007_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.String(length=128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package_id", "path"),
    )
    with op.batch_alter_table("replication_plans") as batch:
        batch.add_column(sa.Column("tier_locations", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("replication_plans") as batch:
        batch.drop_column("tier_locations")
    op.drop_table("stored_files")
