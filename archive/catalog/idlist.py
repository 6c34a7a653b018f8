"""``column IN (ids)`` with the ids bound as one parameter, for lists of hundreds of ids.

SQLAlchemy's ``column.in_(ids)`` expands the list into one parameter per id each time the
statement runs, so its text changes with the list's length and PostgreSQL plans it anew each
time. Bound as one value, the text no longer depends on the list: PostgreSQL takes an integer
array (``= ANY(…)``). SQLite keeps ``IN`` (one JSON parameter through ``json_each`` was
measured there and gained nothing).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import BigInteger, ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session


def id_in(
    session: Session,
    column: ColumnElement[int] | InstrumentedAttribute[int],
    ids: Collection[int],
) -> ColumnElement[bool]:
    """``column`` is one of ``ids`` (integers), in the dialect of ``session``'s catalog."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))
    return column.in_(list(ids))
