"""INSERT … ON CONFLICT for the two catalog dialects (SQLite and PostgreSQL share the syntax,
SQLAlchemy spells it per dialect)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from archive.catalog.tables import Base


def insert_ignore(
    session: Session, table: type[Base], rows: Sequence[Mapping[str, Any]], *, key: Sequence[str]
) -> None:
    """Insert ``rows``, skipping those whose ``key`` columns match a row already there."""
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=list(key))
    session.execute(stmt, list(rows))


def insert_if_absent(
    session: Session, table: type[Base], row: Mapping[str, Any], *, key: Sequence[str]
) -> bool:
    """Insert ``row`` unless a row with the same ``key`` columns is there (or is being
    inserted by another transaction, which this one waits for); say whether it was."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    columns = table.__table__.c
    stmt = (
        dialect.insert(table)
        .values(dict(row))
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(*(columns[k] for k in key))  # the rowcount is not told alike by both drivers
    )
    return session.execute(stmt).first() is not None


def upsert(
    session: Session, table: type[Base], row: Mapping[str, Any], *, key: Sequence[str]
) -> None:
    """Insert ``row``, or update every other column of the row its ``key`` columns match."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(dict(row))
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={k: v for k, v in row.items() if k not in key}
    )
    session.execute(stmt)
