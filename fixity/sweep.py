"""The fixity work list in the catalog (``fixity_coverage``): one row per copy of a file at a
location, with its last check and when the next is due; and how workers claim rows.

- :func:`seed` (:mod:`fixity.seed`) adds a row for every copy the catalog knows and keeps
  each row's tier up to date, reading the catalog a page at a time.
- :func:`claim` takes a batch of due rows for one worker in one statement:
  ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING id``. On
  PostgreSQL concurrent workers skip each other's rows; on SQLite the statement runs under the
  database's single write lock, so workers take turns. A claim is a lease: rows claimed longer
  than ``fixity.claim_timeout`` ago (a worker killed mid-batch) are claimed again.
- :func:`finish` writes the results of a batch, only for rows the worker still holds
  (``RETURNING`` says which): a result is never recorded twice.

Statements run on the session's connection, as Core: rows, not ORM objects, and no ORM
bookkeeping of updated rows (per copy, the ORM path cost more than the statements).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from archive.catalog.idlist import id_in
from archive.catalog.tables import (
    File,
    FixityCoverage,
    LogFile,
    Package,
    Replica,
    StorageLocation,
    StoredFile,
)
from archive.config import PRIMARY_LOCATION
from fixity import logfiles, stored
from fixity.check import Expected
from fixity.seed import seed as seed  # where fixity.service calls it

FC = FixityCoverage
SF = StoredFile
CHUNK = 5000
#: Picks a claim makes before it gives up (the second runs under the write lock; see claim).
_CLAIM_TRIES = 3
#: Seconds a claim waits for rows another worker's claim holds locked (see claim).
_LOCKED_WAIT = 10.0


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed row: the copy to check."""

    id: int
    location: str
    tier: str
    last_full_at: datetime | None
    expected: Expected


def claim(
    session: Session,
    worker: str,
    limit: int,
    *,
    at: datetime,
    lease: timedelta,
    checked_before: datetime | None = None,
    random_pick: bool = False,
    skip_locations: Iterable[int] = (),
    max_bytes: int | None = None,
    after: int = 0,
    package: str | None = None,
) -> list[int]:
    """Claim up to ``limit`` rows for ``worker``; the caller commits at once.

    Rows are due when ``due_at`` has passed (or they were never checked); with
    ``checked_before`` (a full cycle started then) when not checked since; with
    ``random_pick``, any rows, in random order (sampling). With ``max_bytes``, the claim
    stops before the content file that would take it past that many bytes (it always takes
    at least one row): a few large files are shared out between workers instead of going,
    all of them, to the first that asks. The objects' other files (inventories, sidecars,
    records) count as empty here; ``limit`` bounds them.

    ``after``: the highest row this worker claimed so far in its run. Rows are picked in
    order, and those below it were (nearly all) checked already: the pick starts after it,
    rather than reading the cycle's checked rows again at every claim (a cycle of n copies
    read about n²/1000 rows that way). Rows below it that are due again (given back by
    another worker, or a dead worker's whose lease ran out) are picked when nothing is left
    after it, so a claim still comes back empty only when no due row is left at all.

    ``package``: that package's rows only (a check of one package)."""
    due: ColumnElement[bool]
    free = or_(FC.claimed_at.is_(None), FC.claimed_at < at - lease)
    if random_pick:
        due = FC.id.is_not(None)
    elif checked_before is not None:
        due = or_(FC.last_checked_at.is_(None), FC.last_checked_at < checked_before)
    else:
        due = or_(FC.due_at.is_(None), FC.due_at <= at)
    skip = list(skip_locations)
    where = and_(free, due, FC.location_id.not_in(skip)) if skip else and_(free, due)
    if package is not None:
        where = and_(where, FC.package_id == package)
    # Returning nothing tells the worker that no work is left, so an empty claim must mean
    # it. The candidates are locked until the claim commits (PostgreSQL: other workers'
    # picks skip them), all of them, though the byte bound may take only the first: a pick
    # that finds every due row locked by another claim in progress waits for that claim to
    # commit (those it did not take are free again) rather than come back empty. SQLite
    # cannot lock rows: another worker may claim some between this SELECT and the UPDATE,
    # whose own test of ``free`` then leaves them out; if that leaves nothing, the pick is
    # made again, under the write lock the UPDATE has taken, so it sees every claim made.
    # The pick may run before that lock is taken (see fixity.service: the next batch is
    # picked first in the transaction that records the last).
    if after and not random_pick:
        got = _take(session, worker, and_(where, FC.id > after), limit, at, max_bytes, wait=False)
        if got:
            return got
    return _take(session, worker, where, limit, at, max_bytes, random_pick=random_pick)


def _take(
    session: Session,
    worker: str,
    scope: ColumnElement[bool],
    limit: int,
    at: datetime,
    max_bytes: int | None,
    *,
    random_pick: bool = False,
    wait: bool = True,
) -> list[int]:
    """Pick rows in ``scope`` (due and free rows, or a part of them) and claim them: see
    claim. Without ``wait``, rows another claim holds locked are left to the next pick."""
    pick = (
        select(FC.id, func.coalesce(File.size, 0))
        .outerjoin(
            File, and_(File.package_id == FC.package_id, File.content_path == FC.content_path)
        )
        .where(scope)
        .order_by(func.random() if random_pick else FC.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=FC)
    )
    lost, waited_since = 0, None
    while lost < _CLAIM_TRIES:
        ids: list[int] = []
        total = 0
        for row_id, size in session.connection().execute(pick):
            if max_bytes is not None and ids and total + size > max_bytes:
                break
            ids.append(row_id)
            total += size
        if not ids:
            if not wait or not _held_by_a_claim(session, scope):
                return []
            waited_since = waited_since or time.monotonic()
            if time.monotonic() - waited_since > _LOCKED_WAIT:
                return []
            time.sleep(0.01)
            continue
        # The UPDATE tests the whole condition again, not only ``free``: on SQLite another
        # worker may have claimed, checked and recorded a picked row since the pick, leaving
        # it free but no longer due (it was checked twice in a cycle that way).
        stmt = (
            update(FC)
            .where(id_in(session, FC.id, ids), scope)
            .values(claimed_by=worker, claimed_at=at)
            .returning(FC.id)
        )
        got = sorted(session.connection().execute(stmt).scalars().all())
        if got:
            return got
        lost += 1
    return []


def _held_by_a_claim(session: Session, where: ColumnElement[bool]) -> bool:
    """Whether due rows exist that the pick skipped: PostgreSQL rows locked by another
    worker's claim that has not committed yet (SQLite locks no rows)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    return session.connection().execute(select(FC.id).where(where).limit(1)).first() is not None


def load(session: Session, ids: Sequence[int]) -> list[Claimed]:
    """The copies behind claimed rows; rows whose file the catalog no longer has are dropped."""
    if not ids:
        return []
    rows = (
        session.connection()
        .execute(
            select(
                FC.id,
                StorageLocation.name,
                FC.tier,
                FC.last_full_at,
                File.package_id,
                Package.object_path,
                File.content_path,
                File.size,
                File.sha512,
                File.sha256,
                File.version,
            )
            .join(StorageLocation, StorageLocation.id == FC.location_id)
            .join(
                File, and_(File.package_id == FC.package_id, File.content_path == FC.content_path)
            )
            .join(Package, Package.id == File.package_id)
            .where(id_in(session, FC.id, ids))
            .order_by(StorageLocation.name, FC.id)
        )
        .all()
    )
    found = [
        Claimed(r[0], r[1], r[2], r[3], Expected(r[4], r[5], r[6], r[7], r[8], r[9], r[10]))
        for r in rows
    ]
    found += _load_stored(session, set(ids) - {c.id for c in found})
    found += _load_log(session, set(ids) - {c.id for c in found})
    found.sort(key=lambda c: (c.location, c.id))
    orphans = set(ids) - {c.id for c in found}
    if orphans:
        session.connection().execute(delete(FC).where(FC.id.in_(orphans)))
    return found


def _load_stored(session: Session, ids: set[int]) -> list[Claimed]:
    """Claimed rows of files that are not content files (see :mod:`fixity.stored`)."""
    if not ids:
        return []
    rows = (
        session.connection()
        .execute(
            select(
                FC.id,
                StorageLocation.name,
                FC.tier,
                FC.last_full_at,
                FC.package_id,
                Package.object_path,
                FC.content_path,
                Package.head,
                Replica.version,
            )
            .join(StorageLocation, StorageLocation.id == FC.location_id)
            .join(Package, Package.id == FC.package_id)
            .outerjoin(
                Replica,
                and_(Replica.package_id == FC.package_id, Replica.location_id == FC.location_id),
            )
            .where(FC.id.in_(list(ids)))
        )
        .all()
    )
    wanted: dict[int, tuple[Any, str]] = {}
    for r in rows:
        version = r.head if r.name == PRIMARY_LOCATION else r.version
        if version is None:
            continue
        wanted[r.id] = (r, stored.root_source(r.content_path, version) or r.content_path)
    pairs = {(r.package_id, path) for r, path in wanted.values()}
    known: dict[tuple[str, str], Any] = {}
    for pid in {p for p, _ in pairs}:
        for row in session.connection().execute(
            select(SF.path, SF.size, SF.sha512, SF.sha256, SF.version).where(SF.package_id == pid)
        ):
            if (pid, row.path) in pairs:
                known[(pid, row.path)] = row
    found = []
    for r, path in wanted.values():
        sf = known.get((r.package_id, path))
        if sf is None:
            continue
        source = "" if path == r.content_path else path
        expected = Expected(
            r.package_id,
            r.object_path,
            r.content_path,
            sf.size,
            sf.sha512,
            sf.sha256,
            sf.version,
            source,
        )
        found.append(Claimed(r.id, r.name, r.tier, r.last_full_at, expected))
    return found


def _load_log(session: Session, ids: set[int]) -> list[Claimed]:
    """Claimed rows of the custody log's files (keys relative to the storage root)."""
    if not ids:
        return []
    rows = (
        session.connection()
        .execute(
            select(
                FC.id,
                StorageLocation.name,
                FC.tier,
                FC.last_full_at,
                LogFile.path,
                LogFile.size,
                LogFile.sha512,
                LogFile.sha256,
            )
            .join(StorageLocation, StorageLocation.id == FC.location_id)
            .join(LogFile, LogFile.path == FC.content_path)
            .where(FC.id.in_(list(ids)), FC.package_id == logfiles.LOG_KEY)
        )
        .all()
    )
    return [
        Claimed(
            r.id,
            r.name,
            r.tier,
            r.last_full_at,
            Expected(logfiles.LOG_KEY, "", r.path, r.size, r.sha512, r.sha256, 0),
        )
        for r in rows
    ]


def unchecked(session: Session, package: str, since: datetime) -> int:
    """How many copies of ``package``'s files have not been checked since ``since``."""
    return int(
        session.connection()
        .execute(
            select(func.count(FC.id)).where(
                FC.package_id == package,
                or_(FC.last_checked_at.is_(None), FC.last_checked_at < since),
            )
        )
        .scalar_one()
    )


def release(session: Session, worker: str, ids: Sequence[int]) -> None:
    """Give back rows that could not be checked (their location did not answer)."""
    if ids:
        session.connection().execute(
            update(FC)
            .where(id_in(session, FC.id, ids), FC.claimed_by == worker)
            .values(claimed_by=None, claimed_at=None)
        )


@dataclass(frozen=True, slots=True)
class Result:
    """What to write for one checked row."""

    id: int
    outcome: str  # ok | repaired | damaged | unrecoverable | repair-failed
    due_at: datetime
    full: bool


def finish(session: Session, worker: str, at: datetime, results: Sequence[Result]) -> set[int]:
    """Write results for rows ``worker`` still holds; return their ids (the others were taken
    over after the lease ran out, and their results are not recorded)."""
    groups: dict[tuple[str, datetime, bool], list[int]] = {}
    for r in results:
        groups.setdefault((r.outcome, r.due_at, r.full), []).append(r.id)
    owned: set[int] = set()
    for (outcome, due_at, full), ids in groups.items():
        values: dict[str, Any] = {
            "last_checked_at": at,
            "due_at": due_at,
            "last_outcome": outcome,
            "claimed_by": None,
            "claimed_at": None,
        }
        if full:
            values["last_full_at"] = at
        for i in range(0, len(ids), CHUNK):
            stmt = (
                update(FC)
                .where(id_in(session, FC.id, ids[i : i + CHUNK]), FC.claimed_by == worker)
                .values(**values)
                .returning(FC.id)
            )
            owned.update(session.connection().execute(stmt).scalars().all())
    return owned
