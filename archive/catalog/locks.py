"""Named locks shared by every process that uses one catalog, released when their holder ends
(a process killed with SIGKILL included).

PostgreSQL: an advisory lock on a connection of its own (workers on many machines share it).
SQLite, whose users are on one machine: ``flock`` on a file beside the catalog, as SQLite has
no lock of its own that a process could hold without blocking writers; an in-memory catalog
has one process, which always gets it.
"""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from archive.errors import CatalogError, database_reason


def _key(name: str) -> int:
    return zlib.crc32(f"custos:{name}".encode())


def _unreachable(engine: Engine, name: str, exc: SQLAlchemyError) -> CatalogError:
    where = engine.url.render_as_string(hide_password=True)
    return CatalogError(
        f"cannot take the catalog's {name} lock: the catalog at {where} did not answer: "
        f"{database_reason(exc)}",
        hint="check that the catalog's database server (database_url) is running and that "
        "this host can reach it, then try again",
    )


def _lock_file(engine: Engine, name: str) -> str | None:
    path = engine.url.database
    return None if not path or path == ":memory:" else f"{path}.{name}.lock"


@contextmanager
def held(engine: Engine, name: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold the lock ``name`` for the block; yield whether it is held. Without ``wait``, a lock
    another process holds is not waited for (the block runs, told False).

    Raises :class:`CatalogError` if the catalog cannot be reached to take the lock. A catalog
    lost while the lock is held (its server stopped) releases the lock with the connection:
    the release then raises nothing, so that the block's own error, if any, is the one told."""
    if engine.dialect.name == "postgresql":
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise _unreachable(engine, name, exc) from exc
        with conn:
            take = func.pg_advisory_lock if wait else func.pg_try_advisory_lock
            try:
                got = conn.execute(select(take(_key(name)))).scalar() is not False
                conn.commit()  # a session-level lock: it outlives this transaction
            except SQLAlchemyError as exc:
                conn.invalidate()
                raise _unreachable(engine, name, exc) from exc
            try:
                yield got
            finally:
                if got:
                    try:
                        conn.execute(select(func.pg_advisory_unlock(_key(name))))
                        conn.commit()
                    except SQLAlchemyError:
                        # The session is gone, and its locks with it; or it is not: closing
                        # the connection (not returning it to the pool) ends it, and them.
                        conn.invalidate()
        return
    path = _lock_file(engine, name)
    if path is None:
        yield True
        return
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
