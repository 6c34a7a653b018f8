"""Engines, sessions and schema upgrades for the catalog.

The schema is made only by Alembic, from the migrations shipped in this package
(``archive/catalog/migrations``: package data, found beside this module wherever Custos is
installed). SQLite runs in WAL mode with foreign keys on and a busy timeout, so a worker and a
command can share it.

Alembic itself is imported only to upgrade: whether the catalog is at the newest revision is
read from the migration files and the version table directly (importing Alembic and loading
every migration took a good part of a command's start-up).
"""

from __future__ import annotations

import ast
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from archive.errors import CatalogError, ConfigError, database_reason

if TYPE_CHECKING:
    from alembic.config import Config

ALEMBIC_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps


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
    from alembic.config import Config

    if not (ALEMBIC_DIR / "env.py").is_file():
        raise ConfigError(
            f"schema migrations not found at {ALEMBIC_DIR}",
            hint="reinstall Custos: its wheel carries archive/catalog/migrations",
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    """The newest revision of the migrations: the one no other revises, read from the
    ``revision`` and ``down_revision`` of each file in ``migrations/versions`` (what Alembic
    reads, without importing it and every migration). When the files are anything but one
    chain with one newest revision, Alembic answers (and raises for several heads)."""
    head = _single_head(ALEMBIC_DIR / "versions")
    if head is not None:
        return head
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def _single_head(versions: Path) -> str | None:
    """The one revision no other revises, or ``None`` when the files do not say it plainly
    (a revision that is not a string literal, a merge, a branch, no files)."""
    revised: dict[str, str | None] = {}
    for path in sorted(versions.glob("*.py")):
        values: dict[str, Any] = {}
        for node in ast.parse(path.read_bytes(), str(path)).body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ("revision", "down_revision")
                and isinstance(node.value, ast.Constant)
            ):
                values[node.targets[0].id] = node.value.value
        revision, down = values.get("revision"), values.get("down_revision", ...)
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        if revision in revised:
            return None
        revised[revision] = down
    heads = set(revised) - {down for down in revised.values() if down is not None}
    roots = [r for r, down in revised.items() if down is None]
    if len(heads) != 1 or len(roots) != 1:
        return None
    return heads.pop()


def current_revision(engine: Engine) -> str | None:
    """The revision the catalog's schema is at (``None`` for an empty catalog), from
    Alembic's version table. Raises :class:`CatalogError` if the catalog cannot be read or
    records more than one revision."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
            revisions = list(found)
    except SQLAlchemyError as exc:
        raise CatalogError(
            f"cannot reach the catalog at {engine.url!r}: {database_reason(exc)}"
        ) from exc
    if len(revisions) > 1:
        raise CatalogError(
            f"the catalog at {engine.url!r} records several schema revisions: "
            f"{', '.join(sorted(revisions))}",
            hint="merge the branches of the migrations (alembic merge), then upgrade",
        )
    return revisions[0] if revisions else None


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision; return (before, after)."""
    from alembic import command

    before = current_revision(engine)
    try:
        command.upgrade(_alembic_config(engine), "head")
    except SQLAlchemyError as exc:
        raise CatalogError(
            f"schema upgrade failed on {engine.url!r}: {database_reason(exc)}"
        ) from exc
    return before, current_revision(engine)
