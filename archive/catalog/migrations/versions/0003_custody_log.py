"""custody log: hash-chained events, the log head, checkpoints

Events become entries of a hash chain (chain, seq, prev_hash, hash); the ones already held are
chained in the order they were recorded. Events no longer depend on package rows (the log is
only ever appended to, while a package's rows are re-derived from storage). Seals may concern a
custody-log checkpoint, which belongs to no package.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 07:00:00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from archive.custody import GENESIS, entry_hash

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# SQLite names no constraint; batch mode needs a name to drop it by.
_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _package_fk(bind: sa.engine.Connection) -> str:
    for fk in sa.inspect(bind).get_foreign_keys("events"):
        if fk["referred_table"] == "packages":
            return str(fk["name"] or "fk_events_package_id_packages")
    raise RuntimeError("events.package_id has no foreign key to drop")


def upgrade() -> None:
    bind = op.get_bind()
    fk_name = _package_fk(bind)
    with op.batch_alter_table("events", naming_convention=_NAMES) as batch:
        batch.add_column(sa.Column("chain", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=128), nullable=True))
        batch.drop_constraint(fk_name, type_="foreignkey")

    chain = str(uuid.uuid4())
    events = sa.table(
        "events",
        sa.column("id", sa.Integer),
        sa.column("uuid", sa.String),
        sa.column("type", sa.String),
        sa.column("occurred_at", sa.DateTime(timezone=True)),
        sa.column("agent", sa.Text),
        sa.column("outcome", sa.String),
        sa.column("detail", sa.Text),
        sa.column("package_id", sa.String),
        sa.column("chain", sa.String),
        sa.column("seq", sa.BigInteger),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    links = sa.table(
        "event_links",
        sa.column("event_id", sa.Integer),
        sa.column("object_type", sa.String),
        sa.column("object_id", sa.Text),
        sa.column("role", sa.String),
    )
    links_of: dict[int, list[tuple[str, str, str]]] = {}
    for event_id, kind, object_id, role in bind.execute(
        sa.select(links.c.event_id, links.c.object_type, links.c.object_id, links.c.role)
    ):
        links_of.setdefault(event_id, []).append((kind, object_id, role))
    seq, prev = 0, GENESIS
    updates = []
    rows = bind.execute(
        sa.select(
            events.c.id,
            events.c.uuid,
            events.c.type,
            events.c.occurred_at,
            events.c.agent,
            events.c.outcome,
            events.c.detail,
            events.c.package_id,
        ).order_by(events.c.id)
    ).all()
    for row in rows:
        seq += 1
        at = row.occurred_at if row.occurred_at.tzinfo else row.occurred_at.replace(tzinfo=UTC)
        digest = entry_hash(
            chain=chain,
            seq=seq,
            prev=prev,
            uuid=row.uuid,
            type_=row.type,
            occurred_at=at,
            agent=row.agent,
            outcome=row.outcome,
            detail=row.detail,
            package_id=row.package_id,
            links=links_of.get(row.id, []),
        )
        updates.append({"b_id": row.id, "chain": chain, "seq": seq, "prev": prev, "hash": digest})
        prev = digest
    if updates:
        bind.execute(
            events.update()
            .where(events.c.id == sa.bindparam("b_id"))
            .values(
                chain=sa.bindparam("chain"),
                seq=sa.bindparam("seq"),
                prev_hash=sa.bindparam("prev"),
                hash=sa.bindparam("hash"),
            ),
            updates,
        )
    with op.batch_alter_table("events") as batch:
        batch.alter_column("chain", existing_type=sa.String(length=36), nullable=False)
        batch.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("prev_hash", existing_type=sa.String(length=128), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(length=128), nullable=False)
        batch.create_unique_constraint("uq_events_chain_seq", ["chain", "seq"])

    head = op.create_table(
        "custody_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(
        head,
        [{"id": 1, "chain": chain, "seq": seq, "hash": prev, "started_at": datetime.now(UTC)}],
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain", "seq"),
    )
    with op.batch_alter_table("seals") as batch:
        batch.alter_column("package_id", existing_type=sa.String(length=128), nullable=True)


def downgrade() -> None:
    raise NotImplementedError("the custody log is append-only: restore a backup instead")
