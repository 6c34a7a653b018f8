"""extracted texts: a file whose tool was missing is read again once it is installed

Before this revision a PDF read while pdftotext was not installed was recorded as ``failed``
with no tool, and never read again. Its outcome is now ``tool-missing`` with the tool named,
retried once the tool is found. The old rows cannot tell that case from a stored file that
could not be opened (also ``failed`` with no tool), so both are deleted: the table is a cache
of derived data, and the characterisation job reads those files again (a file still
unreadable is ``failed`` again; a PDF while pdftotext is still missing, ``tool-missing``).

Revision ID: 0014_text_tool_missing
Revises: 0013_event_links_index
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_text_tool_missing"
down_revision = "0013_event_links_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM extracted_texts WHERE outcome = 'failed' AND tool = ''"))


def downgrade() -> None:
    # The previous code never reads a row again: without these, it reads those files anew.
    op.execute(sa.text("DELETE FROM extracted_texts WHERE outcome = 'tool-missing'"))
