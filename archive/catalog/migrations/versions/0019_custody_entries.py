"""custody_entries: the custody log's entries of format 2, one per append

Each append to the custody log was one entry per event, chained under the log head's lock
from the first event to the end of the appending transaction: a deposit of a million files
held every other writer of the log for as long as its own catalog work took. An append is now
one entry (``custody_entries``) whose Merkle root covers its events in order; the events are
written without the lock, and the entry takes its place in the chain as its transaction
commits. Events already recorded stay as they are (format 1 entries, each in the chain
itself); new events name their entry and their place in it (``entry_id``, ``pos``) and carry
their own hash.

A catalog put back by hand to an earlier revision may already have some of these: what is
there is kept.

Revision ID: 0019_custody_entries
Revises: 0018_pending_installs
Create Date: 2026-12-07 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_custody_entries"
down_revision = "0018_pending_installs"
branch_labels = None
depends_on = None

Key64 = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "custody_entries" not in inspector.get_table_names():
        op.create_table(
            "custody_entries",
            sa.Column("id", Key64, primary_key=True),
            sa.Column("chain", sa.String(36), nullable=True),
            sa.Column("seq", sa.BigInteger, nullable=True),
            sa.Column("prev_hash", sa.String(128), nullable=True),
            sa.Column("hash", sa.String(128), nullable=True),
            sa.Column("root", sa.String(128), nullable=False),
            sa.Column("events", sa.Integer, nullable=False),
            sa.UniqueConstraint("chain", "seq", name="uq_custody_entries_chain_seq"),
        )
    columns = {c["name"]: c for c in inspector.get_columns("events")}
    if "entry_id" in columns and columns["chain"]["nullable"]:
        return
    with op.batch_alter_table("events") as batch:
        for name in ("chain", "seq", "prev_hash"):
            batch.alter_column(name, existing_type=columns[name]["type"], nullable=True)
        if "entry_id" not in columns:
            batch.add_column(sa.Column("entry_id", sa.BigInteger, nullable=True))
            batch.add_column(sa.Column("pos", sa.Integer, nullable=True))
            batch.create_unique_constraint("uq_events_entry_pos", ["entry_id", "pos"])


def downgrade() -> None:
    held = op.get_bind().execute(sa.text("SELECT count(*) FROM custody_entries")).scalar()
    if held:
        raise RuntimeError(
            f"the custody log holds {held} entries of format 2, which revision "
            "0018_pending_installs cannot hold: restore a backup of the catalog made before "
            "the upgrade instead"
        )
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("uq_events_entry_pos", type_="unique")
        batch.drop_column("pos")
        batch.drop_column("entry_id")
        for name, kind in (
            ("chain", sa.String(36)),
            ("seq", sa.BigInteger()),
            ("prev_hash", sa.String(128)),
        ):
            batch.alter_column(name, existing_type=kind, nullable=False)
    op.drop_table("custody_entries")
