"""the service API: users and their tokens, the public search index, uploads, justice requests

Revision ID: 0005_api
Revises: 0005_fixity
Create Date: 2026-11-22 09:00:00

The search index holds public material only (decided by the access policy when a package is
indexed). On SQLite an FTS5 table mirrors it through triggers; on PostgreSQL a generated
tsvector column with a GIN index serves full-text search.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_api"
down_revision = "0005_fixity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("organisation", sa.Text(), nullable=True),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("totp_secret", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_id"),
    )
    op.create_table(
        "search_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("depositor", sa.Text(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("audience", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_search_entries_package", "search_entries", ["package_id"])
    op.create_index("ix_search_entries_browse", "search_entries", ["audience", "id"])
    for facet in ("depositor", "year", "format"):  # browsing by a facet, in index order
        op.create_index(f"ix_search_entries_{facet}", "search_entries", [facet, "id"])
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE search_fts USING fts5(document, content='search_entries', "
            "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
        )
        op.execute(
            "CREATE TRIGGER search_entries_ai AFTER INSERT ON search_entries BEGIN "
            "INSERT INTO search_fts(rowid, document) VALUES (new.id, new.document); END"
        )
        op.execute(
            "CREATE TRIGGER search_entries_ad AFTER DELETE ON search_entries BEGIN "
            "INSERT INTO search_fts(search_fts, rowid, document) "
            "VALUES ('delete', old.id, old.document); END"
        )
        op.execute(
            "CREATE TRIGGER search_entries_au AFTER UPDATE ON search_entries BEGIN "
            "INSERT INTO search_fts(search_fts, rowid, document) "
            "VALUES ('delete', old.id, old.document); "
            "INSERT INTO search_fts(rowid, document) VALUES (new.id, new.document); END"
        )
    else:
        op.execute(
            "ALTER TABLE search_entries ADD COLUMN tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', document)) STORED"
        )
        op.execute("CREATE INDEX ix_search_entries_tsv ON search_entries USING gin (tsv)")
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("depositor", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("package_id", sa.String(length=128), nullable=True),
        sa.Column("deposit_id", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "justice_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=255), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("package_id", sa.String(length=128), nullable=False),
        sa.Column("paths", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_by", sa.String(length=255), nullable=True),
        sa.Column("export_id", sa.String(length=36), nullable=True),
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("justice_requests")
    op.drop_table("uploads")
    if op.get_bind().dialect.name == "sqlite":
        for name in ("search_entries_ai", "search_entries_ad", "search_entries_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.drop_table("search_entries")
    op.drop_table("users")
