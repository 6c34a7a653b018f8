"""outbox: work that must follow a commit, written in the same transaction

A deposit, a new version or a tier change needs work after its commit (identify formats,
seal the manifests, replicate, migrate). It was queued after the commit, by whichever shell
made the change, so an API deposit and a command-line deposit queued different work and a
process stopping between its commit and the queue lost it. Each such commit now writes its
follow-up work here in the same transaction; workers, ``custos serve`` and the command that
made the change claim entries (a lease), run them and remove them.

Revision ID: 0015_outbox
Revises: 0014_text_tool_missing
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_outbox"
down_revision = "0014_text_tool_missing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("again", sa.Boolean(), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("job", "key", name="uq_outbox_job_key"),
    )
    op.create_index("ix_outbox_due", "outbox", ["not_before"])


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
