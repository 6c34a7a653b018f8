"""users: the last TOTP time step accepted, so that no code is accepted twice

Revision ID: 0010_totp_replay
Revises: 0009_extracted_text
Create Date: 2026-11-22 12:50:00

``totp_last_step`` is the RFC 6238 time step (counter) of the last code accepted for the
user, or NULL while none has been. A code is accepted only for a later step, by a
conditional UPDATE, so two serving processes given one code at once accept it once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_totp_replay"
down_revision = "0009_extracted_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_last_step")
