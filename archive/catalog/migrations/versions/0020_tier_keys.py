"""tier_keys: the age recipients each tier's protected copies are encrypted to

Only public keys: a tier's own identity exists as SLIP-39 share mnemonics held by its
registrars (``custos keys init``), never in the catalog.

Revision ID: 0020_tier_keys
Revises: 0019_custody_entries
Create Date: 2026-12-07 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_tier_keys"
down_revision = "0019_custody_entries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tier_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(500), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=True),
        sa.Column("threshold", sa.Integer(), nullable=True),
        sa.Column("share_set", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_opened", sa.Text(), nullable=False),
        sa.UniqueConstraint("tier", "recipient", name="uq_tier_keys_recipient"),
    )


def downgrade() -> None:
    op.drop_table("tier_keys")
