"""The catalog's named locks (archive.catalog.locks) on PostgreSQL when the catalog goes away:
a lock that cannot be taken is a CatalogError naming the catalog, and a lock whose connection
was lost while held (its session ended, the lock with it) is released without an error of its
own, so that the error of the work done under it is the one told."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, func, select

from archive.catalog import locks
from archive.errors import CatalogError
from tests.servers import PostgresServer, free_port


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    database = postgres.create_database()
    made = create_engine(postgres.url(database))
    try:
        yield made
    finally:
        made.dispose()
        postgres.drop_database(database)


def end_every_session(postgres: PostgresServer, engine: Engine) -> None:
    """What a server stopping does to the sessions of ``engine``'s database."""
    postgres._admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{engine.url.database}' AND pid <> pg_backend_pid()"
    )


@pytest.mark.postgres
def test_a_lock_lost_with_its_session_lets_the_work_s_own_error_through(
    postgres: PostgresServer, engine: Engine
) -> None:
    class WorkFailed(Exception):
        pass

    with pytest.raises(WorkFailed), locks.held(engine, "commit", wait=True) as got:
        assert got
        end_every_session(postgres, engine)
        raise WorkFailed
    # and the lock is free for the next holder
    with locks.held(engine, "commit") as again:
        assert again


@pytest.mark.postgres
def test_a_lock_lost_with_its_session_after_the_work_raises_nothing(
    postgres: PostgresServer, engine: Engine
) -> None:
    with locks.held(engine, "commit", wait=True) as got:
        assert got
        end_every_session(postgres, engine)
    with engine.connect() as conn:  # the pool handed out no dead connection
        assert conn.execute(select(func.pg_try_advisory_lock(1))).scalar() is True


@pytest.mark.postgres
def test_a_lock_the_catalog_cannot_give_is_a_catalog_error_naming_it() -> None:
    port = free_port()  # nothing listens there
    engine = create_engine(f"postgresql+psycopg://custos:secret@127.0.0.1:{port}/gone")
    try:
        with pytest.raises(CatalogError) as raised, locks.held(engine, "commit", wait=True):
            pytest.fail("the block ran without the lock")
    finally:
        engine.dispose()
    assert f"127.0.0.1:{port}/gone" in raised.value.message
    assert "secret" not in raised.value.message  # the password is not told
    assert "database_url" in raised.value.hint
