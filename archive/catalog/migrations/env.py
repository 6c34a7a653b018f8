"""Alembic environment: the engine comes from Custos (``config.attributes['engine']``)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, create_engine, event

from archive.catalog.session import set_wal
from archive.catalog.tables import Base

target_metadata = Base.metadata


def _sqlite_migration_engine(engine: Engine) -> Engine:
    """A separate engine on the same SQLite file whose upgrade is one transaction.

    Python's sqlite3 driver opens no transaction before DDL, so each CREATE TABLE committed on
    its own: a process killed during the first upgrade left some tables and no version, and
    every later start failed with "table ... already exists". Here the driver's own
    transaction handling is off and each SQLAlchemy transaction starts with BEGIN IMMEDIATE
    (SQLAlchemy's documented recipe for SQLite), so an interrupted upgrade leaves the catalog
    as it was, and two processes upgrading at once take turns: the second then finds the
    schema current. Batch mode copies a table and drops the old one; with foreign keys
    enforced the drop would be refused for tables others refer to (alembic's batch-mode
    advice), so they are off, which SQLite allows only outside a transaction: on connect.
    """
    migration = create_engine(engine.url, connect_args={"timeout": 60})

    @event.listens_for(migration, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        set_wal(dbapi_conn)
        dbapi_conn.execute("PRAGMA foreign_keys=OFF")

    @event.listens_for(migration, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migration


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if not isinstance(engine, Engine):
        raise RuntimeError("run migrations through `custos db upgrade`")
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        engine = _sqlite_migration_engine(engine)
    try:
        with engine.connect() as connection, connection.begin():
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                transactional_ddl=True,
            )
            context.run_migrations()
    finally:
        if sqlite:
            engine.dispose()


run_migrations_online()
