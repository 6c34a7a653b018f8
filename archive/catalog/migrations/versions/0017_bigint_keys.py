"""64-bit keys on the tables that grow with every file copy and every event

``events``, ``event_links``, ``files``, ``fixity_coverage``, ``stored_files`` and
``search_entries`` had 32-bit keys on PostgreSQL: at 100 million copies checked every 90 days,
``event_links`` would run out of ids in under three years. Their ids (and the link's
``event_id``) become ``bigint``, and so do the sequences that number them (a sequence made
for a 32-bit column stops at 2,147,483,647 whatever its column's type).

On SQLite an ``INTEGER PRIMARY KEY`` is the row id, 64-bit already: nothing changes there.
On PostgreSQL each ``ALTER`` rewrites its table under a lock, so a large catalog is upgraded
in a maintenance window (``custos db upgrade``, before the new release serves).

Revision ID: 0017_bigint_keys
Revises: 0016_depositor_organisations
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_bigint_keys"
down_revision = "0016_depositor_organisations"
branch_labels = None
depends_on = None

#: (table, column, has its own sequence)
COLUMNS = (
    ("events", "id", True),
    ("event_links", "id", True),
    ("event_links", "event_id", False),
    ("files", "id", True),
    ("fixity_coverage", "id", True),
    ("stored_files", "id", True),
    ("search_entries", "id", True),
)


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: the row id is 64-bit
    for table, column, numbered in COLUMNS:
        op.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {kind}"))
        if numbered:
            sequence = (
                op.get_bind()
                .execute(
                    sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}
                )
                .scalar()
            )
            if sequence:
                op.execute(sa.text(f"ALTER SEQUENCE {sequence} AS {kind}"))


def upgrade() -> None:
    _retype("bigint")


def downgrade() -> None:
    # Refused by PostgreSQL if an id no longer fits 32 bits: nothing is cut silently.
    _retype("integer")
