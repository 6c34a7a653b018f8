"""The outbox: work that must follow a commit, written in the transaction that makes it needed.
This module keeps the table (add, claim, finish, summarise); :mod:`archive.jobs` runs it.

A deposit needs its formats identified, its manifests sealed and its copies made; a new
version needs sealing and replicating; a tier change may open files whose text the search
should read. The service that commits such a change calls :func:`add` in the same transaction,
so the work exists exactly when the change does, whichever shell (command, API, job) made it,
and a process that stops right after its commit loses nothing.

Who runs it:

- ``custos worker`` (a thread beside its scheduled jobs) and ``custos worker --until-idle``
  (runs what is due and exits: for cron, tests and the embedded default);
- ``custos serve`` when ``queue.in_serve`` is true (the embedded default, where no worker
  runs), woken by each deposit and tier change;
- the command that made the work, for its own entries (``custos ingest`` identifies and seals
  its package at once unless told not to).

Entries are claimed, one at a time, with a lease (``queue.lease_minutes``): a process that
dies mid-job leaves its entry to be claimed again once the lease runs out. A claim is a
conditional update, so two processes never hold one entry, on SQLite as on PostgreSQL (where
many workers share one outbox and the search for a free entry skips rows another holds).
Handlers are the named jobs of :mod:`archive.jobs` (``characterise``, ``seal``,
``replicate``, ``migrate``), called with ``package_id=KEY`` when the entry has a key; each
does only what is still pending, so running one twice is harmless. A handler that fails
(:class:`~archive.errors.CustosError`, or any error) keeps its entry, with the error and a
back-off (1 minute, doubling, at most ``queue.retry_max_minutes``); one that must wait
(:class:`Deferred`: a seal backing off from an authority that did not answer) keeps it until
the time it names. Nothing is ever dropped: ``custos status`` shows what waits and why.

One entry waits per job and key: adding one that waits already does nothing; adding one that
is running marks it to run once more when it ends, since the run may have read the catalog
before the change that asked for it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.orm import Session

from archive.catalog.tables import OutboxEntry
from archive.clock import now
from archive.errors import CustosError

if TYPE_CHECKING:  # the composition root imports what imports this module
    from archive.services import Services

log = logging.getLogger("custos.outbox")

#: The jobs that follow a commit, by name (their handlers come from :mod:`archive.jobs`).
CHARACTERISE, SEAL, REPLICATE, MIGRATE = "characterise", "seal", "replicate", "migrate"


class Deferred(CustosError):
    """Raised by a handler whose work cannot be done before ``until`` (not a failure)."""

    exit_code = 75

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message)
        self.until = until


def add(session: Session, job: str, key: str = "") -> None:
    """Ask for ``job`` (about ``key``, a package id, or the whole archive) once the caller's
    transaction commits. Call it inside that transaction."""
    at = now()
    values = {
        "job": job,
        "key": key,
        "created_at": at,
        "not_before": at,
        "attempts": 0,
        "again": False,
    }
    # The dialect's own INSERT (ON CONFLICT), imported here: `custos status` reads this
    # module and needs neither.
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql as dialect
    else:
        from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
    stmt = dialect.insert(OutboxEntry).values(values)
    # Waiting already: nothing to add. Running: run once more when it ends.
    stmt = stmt.on_conflict_do_update(
        index_elements=["job", "key"],
        set_={"again": True},
        where=OutboxEntry.claimed_until.is_not(None),
    )
    session.execute(stmt)


def add_for_new_version(session: Session, package_id: str) -> None:
    """What every new version of a package needs: its manifests and files sealed, and its
    copies made on every location its replication plan names."""
    add(session, SEAL)
    add(session, REPLICATE, package_id)


def worker_name() -> str:
    """Who holds a claim: host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    job: str
    key: str
    attempts: int


def claim(
    services: Services, me: str, *, jobs: Collection[str] | None, key: str | None
) -> Claimed | None:
    """Take the oldest due entry no one holds (matching ``jobs`` and ``key``) for
    ``queue.lease_minutes``, or None."""
    lease = timedelta(minutes=services.settings.queue.lease_minutes)
    for _ in range(20):  # another process may take the one found first
        at = now()
        free = or_(OutboxEntry.claimed_until.is_(None), OutboxEntry.claimed_until < at)
        q = (
            select(OutboxEntry.id, OutboxEntry.job, OutboxEntry.key, OutboxEntry.attempts)
            .where(OutboxEntry.not_before <= at, free)
            .order_by(OutboxEntry.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if jobs is not None:
            q = q.where(OutboxEntry.job.in_(jobs))
        if key is not None:
            q = q.where(OutboxEntry.key.in_([key, ""]))
        with services.session_scope() as session:
            row = session.execute(q).first()
            if row is None:
                return None
            taken: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(OutboxEntry)
                .where(OutboxEntry.id == row.id, free)
                .values(
                    claimed_by=me,
                    claimed_until=at + lease,
                    attempts=OutboxEntry.attempts + 1,
                    again=False,
                )
            )
        if taken.rowcount == 1:
            return Claimed(row.id, row.job, row.key, row.attempts + 1)
    return None


def finished(services: Services, entry: Claimed) -> None:
    """The entry's job succeeded: remove it (or free it, if it was asked for again)."""
    with services.session_scope() as session:
        gone: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            delete(OutboxEntry).where(OutboxEntry.id == entry.id, OutboxEntry.again.is_(False))
        )
        if not gone.rowcount:  # asked for again while it ran
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry.id)
                .values(
                    again=False,
                    attempts=0,
                    claimed_by=None,
                    claimed_until=None,
                    last_error=None,
                    not_before=now(),
                )
            )


def kept(services: Services, entry: Claimed, *, until: datetime, error: str | None) -> None:
    """The entry's job failed (``error``) or must wait: free it, not to run before ``until``."""
    with services.session_scope() as session:
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id == entry.id)
            .values(claimed_by=None, claimed_until=None, not_before=until, last_error=error)
        )


def backoff(settings_minutes: int, attempts: int) -> timedelta:
    """1 minute after the first failure, doubling, at most ``settings_minutes``."""
    return timedelta(minutes=min(settings_minutes, 2 ** min(max(attempts - 1, 0), 20)))


@dataclass(frozen=True, slots=True)
class Waiting:
    """One entry as ``custos status`` shows it."""

    job: str
    key: str
    created_at: datetime
    not_before: datetime
    attempts: int
    running: bool
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "key": self.key,
            "created_at": self.created_at.isoformat(),
            "not_before": self.not_before.isoformat(),
            "attempts": self.attempts,
            "running": self.running,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """How much work waits, by job; and the entries that failed, oldest first (a few)."""

    by_job: dict[str, int]
    running: int
    failing: tuple[Waiting, ...]
    failing_count: int

    @property
    def total(self) -> int:
        return sum(self.by_job.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.total,
            "by_job": self.by_job,
            "running": self.running,
            "failing": self.failing_count,
            "failures": [w.as_dict() for w in self.failing],
        }


def summary(session: Session, *, failures: int = 5) -> OutboxSummary:
    at = now()
    by_job = dict(
        (job, int(n))
        for job, n in session.execute(
            select(OutboxEntry.job, func.count()).group_by(OutboxEntry.job)
        ).all()
    )
    running = session.execute(
        select(func.count()).select_from(OutboxEntry).where(OutboxEntry.claimed_until >= at)
    ).scalar_one()
    failing_q = select(OutboxEntry).where(OutboxEntry.last_error.is_not(None))
    failing_count = session.execute(
        select(func.count()).select_from(failing_q.subquery())
    ).scalar_one()
    rows = session.execute(failing_q.order_by(OutboxEntry.id).limit(failures)).scalars()
    return OutboxSummary(
        by_job,
        running,
        tuple(
            Waiting(
                r.job,
                r.key,
                r.created_at,
                r.not_before,
                r.attempts,
                r.claimed_until is not None and r.claimed_until >= at,
                r.last_error,
            )
            for r in rows
        ),
        failing_count,
    )


def entries(session: Session, *, key: str | None = None) -> list[tuple[str, str]]:
    """(job, key) of every waiting entry (about ``key`` only, when given), in order."""
    q = select(OutboxEntry.job, OutboxEntry.key).order_by(OutboxEntry.id)
    if key is not None:
        q = q.where(OutboxEntry.key == key)
    return [(j, k) for j, k in session.execute(q).all()]
