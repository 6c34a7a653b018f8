"""auth_sessions: short-lived sessions, one TOTP code for many requests

Revision ID: 0011_sessions
Revises: 0010_totp_replay
Create Date: 2026-11-22 13:10:00

A session is started with a user's API token and, for roles that need one, a fresh TOTP
code; its token then stands for the user with that second factor until ``expires_at``, or
until ``ended_at`` (ended by its client, the user disabled or given a new token). Only the
SHA-256 of the token is kept (``token_sha256``), never the token.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_sessions"
down_revision = "0010_totp_replay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("second_factor", sa.Boolean(), nullable=False),
        sa.Column("client_address", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_auth_sessions_user", "auth_sessions", ["user_id", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_sessions_user", table_name="auth_sessions")
    op.drop_table("auth_sessions")
