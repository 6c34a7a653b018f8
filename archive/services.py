"""The composition root: settings in, ready-to-use services out.

Nothing here runs at import time. :func:`open_services` creates the data folder, the catalog
schema (through Alembic) and the storage root on first use, then rolls back or completes any
ingest a previous process left unfinished.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from archive import journal
from archive.catalog import locks
from archive.catalog.session import (
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from archive.config import PRIMARY_LOCATION, Settings
from archive.errors import CatalogError, StorageError, database_reason
from archive.keyring import KeyRing
from archive.storage.local import LocalStore
from archive.storage.locations import open_location
from archive.storage.primary import Primary
from archive.storage.replica import LocalFolderLocation, ReplicaLocation


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: LocalStore
    primary: Primary
    recovered: list[str] = field(default_factory=list)
    #: The tier keys open in this process (:mod:`archive.keyring`).
    keyring: KeyRing = field(default_factory=KeyRing)

    @contextmanager
    def commit_lock(self) -> Iterator[None]:
        """Serialise commit steps (duplicate check, install, catalog commit) across every
        process that uses the catalog, on every host: a PostgreSQL advisory lock (SQLite: a
        lock file beside it). Held by a process killed with SIGKILL, it is released."""
        with locks.held(self.engine, "commit", wait=True):
            yield

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise CatalogError(f"catalog write failed: {database_reason(exc)}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def open_services(settings: Settings, *, recover: bool = True) -> Services:
    """Build the services; create what is missing; recover interrupted ingests.

    Raises :class:`ConfigError`, :class:`CatalogError` or :class:`StorageError`.
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the data folder {settings.data_dir}: {exc}") from exc
    engine = make_engine(settings.catalog_url)
    try:
        return _open(settings, engine, recover)
    except BaseException:
        engine.dispose()  # no connection left for the garbage collector to find open
        raise


def _open(settings: Settings, engine: Engine, recover: bool) -> Services:
    if current_revision(engine) != head_revision(engine):
        upgrade(engine)
    store = LocalStore(settings.storage_path, settings.staging_path, fsync=settings.fsync)
    primary = Primary(primary_location(settings), store)
    primary.ensure()
    sessions = session_factory(engine)
    # Index hooks (archive.catalog.index) and other transaction-bound code read the settings
    # and the primary from the session they are given, rather than from a global.
    sessions.configure(info={"settings": settings, "primary": primary})
    services = Services(settings, engine, sessions, store, primary)
    if recover:
        services.recovered = journal.recover(primary, services.session_scope, services.commit_lock)
        services.recovered += journal.recover_installs(
            primary, services.session_scope, lambda: locks.held(engine, "commit")
        )
    return services


def primary_location(settings: Settings) -> ReplicaLocation:
    """The location that holds the primary copy: ``primary_location``'s, or the storage root."""
    if settings.primary_location:
        return open_location(PRIMARY_LOCATION, settings.locations[settings.primary_location])
    return LocalFolderLocation(PRIMARY_LOCATION, settings.storage_path, fsync=settings.fsync)
