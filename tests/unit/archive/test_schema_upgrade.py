"""The catalog's schema upgrade on SQLite is all or nothing, and safe to run twice at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, inspect

from archive.catalog.session import current_revision, head_revision, make_engine, upgrade


def test_an_interrupted_first_upgrade_leaves_no_half_made_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    made: list[str] = []

    def stop_midway(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            made.append(statement)
            if len(made) == 5:
                raise RuntimeError("the process stops here")

    event.listen(Engine, "before_cursor_execute", stop_midway)
    try:
        with pytest.raises(RuntimeError, match="stops here"):
            upgrade(engine)
    finally:
        event.remove(Engine, "before_cursor_execute", stop_midway)
    assert len(made) == 5  # four tables were made before the stop...
    assert inspect(engine).get_table_names() == []  # ...and none of them remains
    assert upgrade(engine) == (None, head_revision(engine))  # the next start just works
    assert "depositors" in inspect(engine).get_table_names()
    engine.dispose()


def test_two_processes_making_a_new_catalog_at_once_both_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    code = (
        "import sys; from archive.catalog.session import make_engine, upgrade; "
        "upgrade(make_engine(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    engine = make_engine(url)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


def test_the_custody_log_links_are_found_through_their_partial_index(tmp_path: Path) -> None:
    """Links are indexed by object only where they are the custody log's own (the index of
    every link by object cost each fixity batch hundreds of scattered pages): the partial
    index names the link type the log uses, and SQLite picks it for the log's lookup."""
    from sqlalchemy import select

    from archive.catalog.session import make_engine, upgrade
    from archive.catalog.tables import EventLink
    from archive.checkpoints import CHAIN_LINK

    index = next(i for i in EventLink.__table__.indexes if i.name == "ix_event_links_chain")
    for dialect in ("sqlite", "postgresql"):
        assert str(index.dialect_options[dialect]["where"]) == f"object_type = '{CHAIN_LINK}'"
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    try:
        upgrade(engine)
        query = select(EventLink.object_id).where(EventLink.object_type == CHAIN_LINK)
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {query.compile(engine)}", (CHAIN_LINK,)
            ).all()
    finally:
        engine.dispose()
    assert any("ix_event_links_chain" in str(row) for row in plan), plan


def test_the_revisions_are_read_as_alembic_reads_them(catalog_url: str, tmp_path: Path) -> None:
    """Opening a catalog compares its revision with the newest without importing Alembic:
    both answers are Alembic's own, on an empty catalog, one part-way and one at the head."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from archive.catalog.session import _alembic_config

    engine = make_engine(catalog_url or f"sqlite:///{tmp_path / 'catalog.sqlite3'}")

    def alembic_current() -> str | None:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    try:
        config = _alembic_config(engine)
        assert head_revision(engine) == ScriptDirectory.from_config(config).get_current_head()
        assert current_revision(engine) is None
        assert alembic_current() is None
        command.upgrade(config, "0004")
        assert current_revision(engine) == alembic_current() == "0004"
        upgrade(engine)
        assert current_revision(engine) == alembic_current() == head_revision(engine)
    finally:
        engine.dispose()


def test_migrations_that_are_not_one_plain_chain_are_left_to_alembic(tmp_path: Path) -> None:
    from archive.catalog.session import _single_head

    def write(name: str, body: str) -> None:
        (tmp_path / f"{name}.py").write_text(body)

    write("a", 'revision = "a"\ndown_revision = None\n')
    write("b", 'revision = "b"\ndown_revision = "a"\n')
    assert _single_head(tmp_path) == "b"
    write("c", 'revision = "c"\ndown_revision = "a"\n')  # a branch: two newest revisions
    assert _single_head(tmp_path) is None
    write("c", 'revision = "c"\ndown_revision = ("a", "b")\n')  # a merge
    assert _single_head(tmp_path) is None
    write("c", 'revision = "c"\ndown_revision = "b"\n')
    assert _single_head(tmp_path) == "c"
    write("d", 'revision = make()\ndown_revision = "c"\n')  # not a literal
    assert _single_head(tmp_path) is None
    assert _single_head(tmp_path / "none") is None
