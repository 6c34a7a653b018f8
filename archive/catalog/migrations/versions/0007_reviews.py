"""reviews of protected-identity assignments, and an index to find due sunsets

Revision ID: 0007_reviews
Revises: 0006_auth
Create Date: 2026-11-22 10:00:00

A review is derived from the object's ``custos/access.json`` like the assignments it reviews
(``catalog rebuild`` recreates it from storage); the catalog keeps it to list and find
reviews without reading every object.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_reviews"
down_revision = "0006_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_reviews",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("package_id", sa.String(length=128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sunset", sa.Date(), nullable=False),
        sa.Column("successor", sa.String(length=32), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=True),
        sa.Column("approvals", sa.Text(), nullable=False),
        sa.Column("extension", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_reviews_outcome", "access_reviews", ["outcome", "opened_on"])
    op.create_index("ix_access_reviews_package", "access_reviews", ["package_id"])
    op.create_index("ix_access_assignments_sunset", "access_assignments", ["sunset"])


def downgrade() -> None:
    op.drop_index("ix_access_assignments_sunset", table_name="access_assignments")
    op.drop_table("access_reviews")
