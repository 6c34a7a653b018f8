"""The seed of the fixity work list (``fixity_coverage``, see :mod:`fixity.sweep`): a row for
every copy the catalog knows, each with its tier kept up to date.

Every file in the primary storage root has a copy there; a location holding a replica has a
copy of every file up to the version it holds, a payload file only where its tier's plan puts
it (a plan made before files had their own tiers: every payload file), an evidence record
added after the replica was read back only once a replication run read it back there. A
payload file has its own tier; the object's other files have the package's most closed. The
custody log's files are seeded at the primary; replication adds a replica's.

The catalog is read in pages of a bounded number of rows, each compared with its copies'
coverage rows and written before the next is read, so the seed's memory does not grow with
the archive (every row read at once took 0.85 KiB a copy: tens of GiB at 50 million files).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    Text,
    cast,
    exists,
    literal,
    null,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from archive.catalog.idlist import id_in
from archive.catalog.tables import (
    File,
    FixityCoverage,
    LogFile,
    Package,
    Replica,
    ReplicationPlan,
    StorageLocation,
    StoredFile,
    UTCDateTime,
)
from archive.catalog.upsert import insert_ignore
from archive.config import PRIMARY_LOCATION
from archive.replicas import location_id
from fixity import logfiles, stored, tiers
from fixity.tiers import parse_layout
from policies.preservation import Assigned, FixityPolicy, file_tier, package_tier

FC = FixityCoverage
SF = StoredFile
#: Rows the seed reads at a time (see :func:`seed`).
SEED_BATCH = 5000
#: Rows written by one statement.
CHUNK = 5000


def seed(
    session: Session,
    policy: FixityPolicy,
    primary_uri: str,
    at: datetime,
    primary_kind: str = "local",
    *,
    batch: int = SEED_BATCH,
) -> int:
    """Add rows for copies not tracked yet and refresh tiers; return rows added
    (``primary_uri`` and ``primary_kind``: where the primary copy is, for its location row).

    The catalog is read in pages of ``batch`` rows, each resumed after the last key of the
    page before: the objects' files (content files and the others together, in the order
    of package and path), then the packages (for their root inventories and sidecars), then
    the custody log's files. Each page is compared with its copies' coverage rows (one
    query per location: a range of the coverage index, or the page's keys in it), its
    missing rows are inserted and its changed tiers written before the next page is read.
    What the seed holds is a page's rows, their coverage rows, and the access assignments,
    replicas and plans of the page's packages, whatever the archive's size. The caller
    commits (one transaction, as before). Raises ValueError for a page of less than one
    row."""
    if batch < 1:
        raise ValueError(f"the seed's batch must be one row or more, not {batch}")
    primary = location_id(session, PRIMARY_LOCATION, primary_kind or "local", primary_uri, at)
    seeding = _Seeding(session, policy, primary, location_ids(session))
    for after, page in _object_pages(session, batch):
        seeding.objects(after, page)
    for page in _pages(session, select(Package.id, Package.head), (Package.id,), batch):
        seeding.roots(page)
    for page in _pages(session, select(LogFile.path), (LogFile.path,), batch):
        seeding.log(page)
    return seeding.added


def _pages(
    session: Session, stmt: Select[*tuple[Any, ...]], key: tuple[Any, ...], size: int
) -> Iterator[list[Sequence[Any]]]:
    """``stmt``'s rows in pages of ``size``, in the order of ``key`` (unique columns, the
    first columns of ``stmt``); each page read after the last key of the one before, so no
    page costs more than its rows, wherever it is in the table."""
    last: tuple[Any, ...] | None = None
    while True:
        page = stmt.order_by(*key).limit(size)
        if last is not None:
            after = key[0] > last[0] if len(key) == 1 else tuple_(*key) > tuple_(*last)
            page = page.where(after)
        rows: list[Sequence[Any]] = list(session.connection().execute(page).all())
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = tuple(rows[-1])[: len(key)]


def _object_pages(
    session: Session, size: int
) -> Iterator[tuple[tuple[str, str] | None, list[Sequence[Any]]]]:
    """The objects' files, content files (``files``) and the others (``stored_files``)
    together, in pages of ``size`` in the order of (package, path): (the key the page starts
    after, its rows). A row is (package, path, kind, version, logical path, when added):
    ``content`` (with its logical path) or ``other`` (with when it was registered)."""
    after: tuple[str, str] | None = None
    while True:
        content = select(
            File.package_id.label("package_id"),
            File.content_path.label("path"),
            literal("content").label("kind"),
            File.version.label("version"),
            File.logical_path.label("logical"),
            cast(null(), UTCDateTime()).label("added"),
        )
        others = select(
            SF.package_id,
            SF.path,
            literal("other"),
            SF.version,
            cast(null(), Text()),
            SF.added_at,
        )
        if after is not None:
            content = content.where(tuple_(File.package_id, File.content_path) > tuple_(*after))
            others = others.where(tuple_(SF.package_id, SF.path) > tuple_(*after))
        # Each side reads its next page through its (package, path) index; the page is the
        # first rows of the two.
        both = union_all(
            select(content.order_by(File.package_id, File.content_path).limit(size).subquery()),
            select(others.order_by(SF.package_id, SF.path).limit(size).subquery()),
        ).subquery()
        rows: list[Sequence[Any]] = list(
            session.connection()
            .execute(select(both).order_by(both.c.package_id, both.c.path).limit(size))
            .all()
        )
        if rows:
            yield after, rows
        if len(rows) < size:
            return
        after = (rows[-1][0], rows[-1][1])


@dataclass(slots=True)
class _Package:
    """What the seed needs of one package: its access assignments and governing tier, the
    replicas held of it (location, version, when read back) and, where its replication plan
    records them, the locations of each tier's payload files."""

    assigned: list[Assigned] = field(default_factory=list)
    governing: str = "restricted"
    replicas: list[tuple[int, int, datetime | None]] = field(default_factory=list)
    plan: dict[str, tuple[str, ...]] | None = None


class _Seeding:
    """One seed: each page of copies compared with their coverage rows and written."""

    def __init__(
        self, session: Session, policy: FixityPolicy, primary: int, locations: dict[str, int]
    ) -> None:
        self.session = session
        self.policy = policy
        self.primary = primary
        self.names = {i: n for n, i in locations.items()}
        self.added = 0
        #: PostgreSQL's plan_cache_mode as the transaction had it (see _custom_plans).
        self.plans: str | None = None
        if session.get_bind().dialect.name == "postgresql":
            self.plans = (
                session.connection()
                .execute(text("SELECT current_setting('plan_cache_mode')"))
                .scalar_one()
            )

    def objects(self, after: tuple[str, str] | None, page: list[Sequence[Any]]) -> None:
        """A page of the objects' files. A content file has its own tier and is at the
        primary and at each location holding its version that its tier's plan names. The
        other files (inventories, sidecars, the declaration, records, anchors) have the
        package's most closed tier: a version's files are at every copy of that version; a
        file outside the version folders (an evidence record sealed later) once a replication
        run read it back there."""
        packages = self._packages(page[0][0], page[-1][0])
        have = self._have(after, (page[-1][0], page[-1][1]))
        copies = []
        for pid, path, kind, version, logical, added in page:
            held = packages.get(pid) or _Package()
            places = [self.primary]
            if kind == "content":
                tier = file_tier(logical, held.assigned, held.governing)
                for loc, v, _ in held.replicas:
                    if v >= version and (
                        held.plan is None or self.names[loc] in held.plan.get(tier, ())
                    ):
                        places.append(loc)
            else:
                tier = held.governing
                for loc, v, verified in held.replicas:
                    if v >= version if version > 0 else verified is not None and verified >= added:
                        places.append(loc)
            copies.append((pid, path, tier, places))
        self._write(copies, have)

    def roots(self, page: list[Sequence[Any]]) -> None:
        """Each object's root inventory and sidecar, at each location holding the inventory
        of the version it holds (at the primary, the head's)."""
        first, last = page[0][0], page[-1][0]
        packages = self._packages(first, last)
        inventories = {
            (pid, version)
            for pid, path, version in self.session.connection().execute(
                select(SF.package_id, SF.path, SF.version).where(
                    SF.package_id.between(first, last),
                    SF.version > 0,
                    SF.path.like("%inventory.json"),
                )
            )
            if stored.kind_of(path) == "inventory"
        }
        have = self._have_roots([pid for pid, _ in page])
        copies = []
        for pid, head in page:
            held = packages.get(pid) or _Package()
            places = [self.primary] if (pid, head) in inventories else []
            places += [loc for loc, v, _ in held.replicas if (pid, v) in inventories]
            if places:
                copies += [(pid, path, held.governing, places) for path in stored.ROOT_FILES]
        self._write(copies, have)

    def log(self, page: list[Sequence[Any]]) -> None:
        """The custody log's files in the primary storage root; a replica location's rows are
        added by replication once its copy was read back (see fixity.logfiles)."""
        first, last = page[0][0], page[-1][0]
        have = set(
            self.session.connection()
            .execute(
                select(FC.content_path).where(
                    FC.location_id == self.primary,
                    FC.package_id == logfiles.LOG_KEY,
                    FC.content_path.between(first, last),
                )
            )
            .scalars()
        )
        new = [
            {
                "location_id": self.primary,
                "package_id": logfiles.LOG_KEY,
                "content_path": path,
                "tier": logfiles.LOG_TIER,
            }
            for (path,) in page
            if path not in have
        ]
        self._insert(new)

    def _packages(self, first: str, last: str) -> dict[str, _Package]:
        """The packages from ``first`` to ``last`` (those of a page). One without content
        files has the ``restricted`` tier (as it had when tiers were read per file)."""
        conn = self.session.connection()
        found: dict[str, _Package] = {}
        with_files: set[str] = set()
        for pid, has_files in conn.execute(
            select(Package.id, exists().where(File.package_id == Package.id)).where(
                Package.id.between(first, last)
            )
        ):
            found[pid] = _Package()
            if has_files:
                with_files.add(pid)
        for pid, rules in tiers.assignments(self.session, first, last).items():
            if pid in with_files:
                found[pid].assigned = rules
                found[pid].governing = package_tier(a.tier for a in rules)
        for pid, loc, version, verified in conn.execute(
            select(
                Replica.package_id, Replica.location_id, Replica.version, Replica.verified_at
            ).where(Replica.package_id.between(first, last))
        ):
            found.setdefault(pid, _Package()).replicas.append((loc, version, verified))
        for pid, plan in planned_by_tier(self.session, first, last).items():
            if pid in found:
                found[pid].plan = plan
        return found

    def _have(
        self, after: tuple[str, str] | None, last: tuple[str, str]
    ) -> dict[tuple[int, str, str], tuple[int, str]]:
        """The coverage rows whose (package, path) is after ``after`` up to ``last`` (a
        page's): (location, package, path) -> (row, tier). One query per location, each a
        range of the (location, package, path) index: the rows of the page's files, and of
        the root inventories and sidecars of the packages within it.

        The range is also stated on the package alone (``package_id`` between the page's
        first and last packages): PostgreSQL estimates a comparison of (package, path) pairs
        from the package's column only and each bound apart, a quarter of the table for any
        page, and at 10 million copies scanned the whole table, in parallel, for each page
        (about 2 s a page, even planned for the page's own keys); a range on one column it
        estimates from the column's histogram, and reads the index."""
        key = tuple_(FC.package_id, FC.content_path)
        out: dict[tuple[int, str, str], tuple[int, str]] = {}
        with self._custom_plans():
            for loc in self.names:
                where = [FC.location_id == loc, FC.package_id <= last[0], key <= tuple_(*last)]
                where.append(FC.package_id != logfiles.LOG_KEY)
                if after is not None:
                    where += [FC.package_id >= after[0], key > tuple_(*after)]
                # fetched at once: row by row, the driver's fetch cost more than the statement
                rows = (
                    self.session.connection()
                    .execute(select(FC.id, FC.package_id, FC.content_path, FC.tier).where(*where))
                    .all()
                )
                for row_id, pid, content, tier in rows:
                    out[(loc, pid, content)] = (row_id, tier)
        return out

    @contextmanager
    def _custom_plans(self) -> Iterator[None]:
        """On PostgreSQL, the statements inside planned for their own keys.

        psycopg prepares a statement run five times, and PostgreSQL may then keep one
        generic plan for every page: for a range of the coverage index between two unknown
        keys it assumed a large part of the table and scanned all of it, in parallel, for
        each page (seen at 10 million copies once the table's statistics were up to date:
        about a second for each page's coverage rows instead of milliseconds). Only around
        those reads: planned anew at each run, the single-row INSERTs of a first seed took
        much longer. The setting is the transaction's, put back as it was."""
        if self.plans is None:
            yield
            return
        conn = self.session.connection()
        conn.execute(text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"))
        try:
            yield
        finally:
            conn.execute(text("SELECT set_config('plan_cache_mode', :v, true)"), {"v": self.plans})

    def _have_roots(self, pids: list[str]) -> dict[tuple[int, str, str], tuple[int, str]]:
        """The coverage rows of the root inventories and sidecars of ``pids``: each looked
        up by its key in the (location, package, path) index."""
        out: dict[tuple[int, str, str], tuple[int, str]] = {}
        for loc in self.names:
            for row_id, pid, content, tier in self.session.connection().execute(
                select(FC.id, FC.package_id, FC.content_path, FC.tier).where(
                    FC.location_id == loc,
                    FC.package_id.in_(pids),
                    FC.content_path.in_(list(stored.ROOT_FILES)),
                )
            ):
                out[(loc, pid, content)] = (row_id, tier)
        return out

    def _write(
        self,
        copies: list[tuple[str, str, str, list[int]]],
        have: dict[tuple[int, str, str], tuple[int, str]],
    ) -> None:
        """Insert the rows of the copies ``have`` lacks; bring the others' tiers up to date."""
        new: list[dict[str, Any]] = []
        retier: dict[tuple[str, str], list[int]] = {}
        for pid, path, tier, places in copies:
            for loc in places:
                found = have.get((loc, pid, path))
                if found is None:
                    new.append(
                        {"location_id": loc, "package_id": pid, "content_path": path, "tier": tier}
                    )
                elif found[1] != tier:
                    retier.setdefault((found[1], tier), []).append(found[0])
        self._insert(new)
        for (old, tier), ids in retier.items():
            # A shorter period makes the copies due now; a longer one leaves them as they are.
            values: dict[str, Any] = {"tier": tier}
            if self.policy.period(tier) < self.policy.period(old):
                values["due_at"] = None
            for i in range(0, len(ids), CHUNK):
                self.session.connection().execute(
                    update(FC)
                    .where(id_in(self.session, FC.id, ids[i : i + CHUNK]))
                    .values(**values)
                )

    def _insert(self, new: list[dict[str, Any]]) -> None:
        for i in range(0, len(new), CHUNK):
            insert_ignore(
                self.session,
                FixityCoverage,
                new[i : i + CHUNK],
                key=["location_id", "package_id", "content_path"],
            )
        self.added += len(new)


def planned_by_tier(
    session: Session, first: str, last: str
) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per package from ``first`` to ``last``, the locations each tier's payload files are
    at, as replication planned them; packages planned before files had their own tiers are
    left out (every replica holds every file)."""
    return {
        pid: parse_layout(text)[0]
        for pid, text in session.connection().execute(
            select(ReplicationPlan.package_id, ReplicationPlan.tier_locations).where(
                ReplicationPlan.package_id.between(first, last),
                ReplicationPlan.tier_locations != "",
            )
        )
        if text
    }


def location_ids(session: Session) -> dict[str, int]:
    return dict(
        session.connection().execute(select(StorageLocation.name, StorageLocation.id)).all()
    )
