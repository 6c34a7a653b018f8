"""files.sealed_tier and plain_*: copies stored encrypted to a tier's keys

A protected-identity file of a tier that has a key is stored in the age format. Its row keeps
the stored bytes' size and digests, which fixity and replication check, and beside them the
plain bytes', which the bag's manifests and the file seals prove. Existing rows are plain.

Revision ID: 0021_sealed_files
Revises: 0020_tier_keys
Create Date: 2026-12-07 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_sealed_files"
down_revision = "0020_tier_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN of a nullable column, without a default: no table of millions of rows is
    # rewritten (SQLite and PostgreSQL both only change the schema).
    op.add_column("files", sa.Column("sealed_tier", sa.String(32), nullable=True))
    op.add_column("files", sa.Column("plain_size", sa.BigInteger(), nullable=True))
    op.add_column("files", sa.Column("plain_sha512", sa.String(128), nullable=True))
    op.add_column("files", sa.Column("plain_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        for column in ("plain_sha256", "plain_sha512", "plain_size", "sealed_tier"):
            batch.drop_column(column)
