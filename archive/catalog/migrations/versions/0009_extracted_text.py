"""extracted text of public documents, cached by content digest

Revision ID: 0009_extracted_text
Revises: 0008_stored_files
Create Date: 2026-11-22 10:10:00

One row per distinct sha512 whose text was looked for: the outcome (``text``, ``none``:
no text to find or not a document, ``too-large``, ``failed``), the tool, and the text
itself (bounded). The table is a cache of derived data: it is keyed by the bytes, not by a
package, and can be emptied at any time (the characterisation job derives it again from
the stored files). The public search index copies the text of public files only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_extracted_text"
down_revision = "0008_stored_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extracted_texts",
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("tool", sa.Text(), nullable=False),
        sa.Column("chars", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha512"),
    )


def downgrade() -> None:
    op.drop_table("extracted_texts")
