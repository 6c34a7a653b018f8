"""pending_installs: objects being committed to the primary, seen by every host

An interrupted deposit was known only to the journal in its host's staging folder. With a
primary that several hosts share (an S3 bucket), a host that stops for good between storing
an object and cataloguing it left an object, or part of one, no other host knew of. Each
install is now recorded in the catalog first; any host completes or undoes one no live
process is committing.

Revision ID: 0018_pending_installs
Revises: 0017_bigint_keys
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_pending_installs"
down_revision = "0017_bigint_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_installs",
        sa.Column("object_id", sa.String(255), primary_key=True),
        sa.Column("deposit_id", sa.String(255), nullable=False),
        sa.Column("host", sa.String(512), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pending_installs")
