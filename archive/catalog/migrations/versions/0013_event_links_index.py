"""event links: index by event, and by object only for the custody log's own links

The index on (object_type, object_id) of every link put each new fixity event's file link
next to that file's links from earlier cycles: a batch of events wrote, and when the cache
was cold first read, hundreds of scattered index pages. Nothing looks links up by file;
what is looked up is the links of the custody log's checkpoints (object type
``custody-log``), kept in a partial index, and the links of given events (by event id,
which had no index: reading a package's events scanned every link).

Revision ID: 0013_event_links_index
Revises: 0012_log_files
Create Date: 2026-11-22 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_event_links_index"
down_revision = "0012_log_files"
branch_labels = None
depends_on = None

CHAIN_ONLY = sa.text("object_type = 'custody-log'")


def upgrade() -> None:
    op.drop_index("ix_event_links_object", table_name="event_links")
    op.create_index("ix_event_links_event", "event_links", ["event_id"])
    op.create_index(
        "ix_event_links_chain",
        "event_links",
        ["object_id"],
        sqlite_where=CHAIN_ONLY,
        postgresql_where=CHAIN_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ix_event_links_chain", table_name="event_links")
    op.drop_index("ix_event_links_event", table_name="event_links")
    op.create_index("ix_event_links_object", "event_links", ["object_type", "object_id"])
