"""depositors: the organisations of depositor users are registered depositors

From this revision a deposit names a registered depositor, and a depositor user's
organisation must be one (``archive.depositors``). Until now a depositors row was made by a
deposit's first ingest, so the organisation of a depositor user who has not deposited yet has
none: it is registered here (at the time its first user was made), so that those users' uploads
are accepted as they were before. A name longer than the depositors' column (255 characters)
could never be deposited under, and is left out.

Revision ID: 0016_depositor_organisations
Revises: 0015_outbox
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_depositor_organisations"
down_revision = "0015_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "INSERT INTO depositors (name, created_at) "
            "SELECT organisation, MIN(created_at) FROM users "
            "WHERE role = 'depositor' AND organisation IS NOT NULL "
            "AND LENGTH(organisation) BETWEEN 1 AND 255 "
            "AND organisation NOT IN (SELECT name FROM depositors) "
            "GROUP BY organisation"
        )
    )


def downgrade() -> None:
    # The rows stay: the previous code makes a depositors row for any name a deposit names,
    # and reads a row without deposits as it reads any other.
    pass
