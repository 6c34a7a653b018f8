"""users: locking a second factor after wrong codes, disabling a user

Revision ID: 0006_auth
Revises: 0005_api
Create Date: 2026-11-22 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_auth"
down_revision = "0005_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("totp_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("totp_locked_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_reason")
        batch.drop_column("disabled_at")
        batch.drop_column("totp_locked_until")
        batch.drop_column("totp_failures")
