"""Engines, sessions and schema upgrades for the catalog.

The schema is made only by Alembic (``alembic/`` at the project root). SQLite runs in WAL mode
with foreign keys on and a busy timeout, so a worker and a command can share it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from alembic import command
from archive.errors import CatalogError, ConfigError

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; raises :class:`ConfigError` for an unusable URL."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(
            f"cannot use catalog database URL {url!r}: {exc}",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
        ) from exc
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            set_wal(dbapi_conn)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def set_wal(dbapi_conn: Any, *, wait: float = 30.0) -> None:
    """Put a SQLite database in WAL mode. Switching the mode takes the database's exclusive
    lock, and SQLite refuses it at once ("database is locked", without its busy handler)
    while another process holds a write transaction: two processes opening a new catalog at
    once (one creating the schema) met that. So the switch is tried again for ``wait``
    seconds."""
    deadline = time.monotonic() + wait
    cur = dbapi_conn.cursor()
    try:
        while True:
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Config:
    if not (ALEMBIC_DIR / "env.py").is_file():
        raise ConfigError(
            f"schema migrations not found at {ALEMBIC_DIR}",
            hint="install Custos from its source tree (pip install -e .) so alembic/ is present",
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise CatalogError(f"cannot reach the catalog at {engine.url!r}: {exc}") from exc


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision; return (before, after)."""
    before = current_revision(engine)
    try:
        command.upgrade(_alembic_config(engine), "head")
    except SQLAlchemyError as exc:
        raise CatalogError(f"schema upgrade failed on {engine.url!r}: {exc}") from exc
    return before, current_revision(engine)
