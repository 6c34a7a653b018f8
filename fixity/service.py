"""Fixity: what the CLI, the API and the jobs call to check copies, repair them and say how it
went.

:func:`run_cycle` checks every copy that is due (``full=True``: every copy, now), in batches a
worker claims (see :mod:`fixity.sweep`); :func:`run_sample` checks copies picked at random;
:func:`check_package` checks every copy of one package now (the Storage Service interface's
check: see :mod:`fixity.storage_service`).
Each batch: read every byte of every claimed copy (:mod:`fixity.check`), repair what is
damaged from a copy that still verifies (:mod:`fixity.repair`), then one transaction writes
the coverage rows, one PREMIS ``fixity check`` event per copy, the repairs (``replication``
events), alerts for copies no good copy is left of, and the batch's tallies.

Every stored file of every copy is checked: content files, and the objects' other files
(version inventories and sidecars, the root inventory and sidecar, the declaration, evidence
records and trust anchors; see :mod:`fixity.stored`).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from archive import steps
from archive.catalog import locks
from archive.catalog.tables import (
    File,
    FixitySnapshot,
    FixityTally,
    Package,
    Replica,
    StorageLocation,
)
from archive.clock import now
from archive.config import PRIMARY_LOCATION
from archive.custody import new_event, record_batches, record_events
from archive.errors import NotFound, StorageError
from archive.fixity_state import coverage
from archive.model import EventRecord, Link
from archive.replicas import DAMAGED
from archive.services import Services
from archive.storage.locations import open_location
from archive.storage.primary import StoredObject
from archive.storage.replica import ReplicaLocation
from fixity import logfiles, primary_copy, reader, stored, sweep
from fixity.check import CheckResult, judge
from fixity.policy import fixity_policy
from fixity.repair import RepairResult, repair_copy
from policies.preservation import FixityPolicy

AGENT = "Custos fixity"
Progress = Callable[[int], None]
#: A damaged copy that could not be repaired is checked again after this long...
RETRY_DAMAGED = timedelta(hours=1)
#: ...and a copy no good copy is left of, daily (each check raises the alert again).
RETRY_UNRECOVERABLE = timedelta(days=1)
#: The lock a run holds while it seeds the coverage rows (see _Run.seed).
SEED_LOCK = "fixity-seed"
#: A run reads ahead (see fixity.reader) when its first batch's copies average less than this.
READ_AHEAD_BELOW = 1 << 20


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Tally:
    files: int = 0
    bytes: int = 0
    failures: int = 0
    repairs: int = 0
    unrecoverable: int = 0

    def add(self, other: Tally) -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.failures += other.failures
        self.repairs += other.repairs
        self.unrecoverable += other.unrecoverable


@dataclass
class FixityReport:
    """What a run checked and found. ``ok``: no damage left unrepaired, no location that
    could not be read."""

    kind: str
    worker: str
    policy: str
    started_at: datetime
    finished_at: datetime | None = None
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    damage: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    #: The copies found missing, short or different (repaired or not), as checked.
    damaged: list[CheckResult] = field(default_factory=list)
    #: Primary files that do not match the catalog (see :mod:`fixity.stored`); a cycle and a
    #: package check report them (``unrecoverable`` too), each run.
    mismatched: list[stored.Problem] = field(default_factory=list)
    #: A package check: files in the object's content folders the catalog does not list.
    untracked: list[str] = field(default_factory=list)
    #: A package check: its copies left unchecked (held by another run's claim, or at a
    #: location that could not be read).
    unchecked: int = 0

    @property
    def checked(self) -> int:
        return sum(t.files for t in self.tallies.values())

    @property
    def bytes_read(self) -> int:
        return sum(t.bytes for t in self.tallies.values())

    @property
    def ok(self) -> bool:
        return not (self.unrecoverable or self.refused or self.unreachable or self.untracked)

    @property
    def primary_unreachable(self) -> bool:
        """Whether the primary stopped answering during the run (its copies left unchecked,
        for a host that can read them)."""
        return PRIMARY_LOCATION in self.unreachable

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "worker": self.worker,
            "policy": self.policy,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "checked": self.checked,
            "bytes_read": self.bytes_read,
            "damage": self.damage,
            "repairs": self.repairs,
            "unrecoverable": self.unrecoverable,
            "repair_refused": self.refused,
            "unreachable": self.unreachable,
            "by_location_and_tier": [
                {"location": loc, "tier": tier, **t.__dict__}
                for (loc, tier), t in sorted(self.tallies.items())
            ],
            **(
                {"untracked": self.untracked, "unchecked": self.unchecked}
                if self.kind == "package"
                else {}
            ),
        }


@dataclass
class _Outcome:
    """What one checked copy adds to the batch's record, prepared before the transaction."""

    package_id: str
    key: tuple[str, str]  # location, tier
    events: list[EventRecord]
    tally: Tally
    lines: list[tuple[str, str]] = field(default_factory=list)  # report list, line
    damaged: bool = False


class _Locations:
    """Locations by name, opened once per run: the primary storage root and the settings'."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.opened: dict[str, ReplicaLocation] = {}

    def get(self, name: str) -> ReplicaLocation:
        if name not in self.opened:
            if name == PRIMARY_LOCATION:
                self.opened[name] = self.services.primary.location
            else:
                entry = self.services.settings.replica_locations.get(name)
                if entry is None:
                    raise StorageError(
                        f"location {name} holds replicas by the catalog but is not configured",
                        hint=f"restore [locations.{name}] in the settings",
                    )
                self.opened[name] = open_location(name, entry)
        return self.opened[name]


def run_cycle(
    services: Services,
    *,
    full: bool = False,
    worker: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> FixityReport:
    """Check every due copy (``full``: every copy), batch by batch, until none is left
    unclaimed (or ``limit`` copies were checked). Raises :class:`PolicyError`, and
    :class:`~fixity.primary_copy.PrimaryUnavailable` before anything is claimed or recorded
    when this host cannot read the primary copy."""
    policy = fixity_policy(services.settings)
    primary_copy.require(services.primary, services.settings)
    run = _Run(services, policy, "cycle", worker or worker_name(), progress)
    run.seed()
    checked_before = run.report.started_at if full else None

    def next_size(pending: int = 0) -> int:
        """The next batch's size, once ``pending`` more copies are checked."""
        size = services.settings.fixity.batch_files
        if limit is not None:
            size = max(0, min(size, limit - run.report.checked - pending))
        return size

    try:
        while next_size() > 0:
            if not run.batch(checked_before=checked_before, size=next_size(), ahead=next_size):
                break
    finally:
        run.give_back()
    run.snapshot()
    return run.report


def run_sample(
    services: Services, count: int, *, worker: str | None = None, progress: Progress | None = None
) -> FixityReport:
    """Check ``count`` copies picked at random, with both digests. Raises :class:`PolicyError`
    and :class:`~fixity.primary_copy.PrimaryUnavailable` (see :func:`run_cycle`)."""
    policy = fixity_policy(services.settings)
    primary_copy.require(services.primary, services.settings)
    run = _Run(services, policy, "sample", worker or worker_name(), progress)
    run.seed()
    try:
        if count > 0:
            run.batch(size=count, random_pick=True)
    finally:
        run.give_back()
    run.report.finished_at = now()
    return run.report


def check_package(
    services: Services,
    package_id: str,
    *,
    worker: str | None = None,
    progress: Progress | None = None,
) -> FixityReport:
    """Check every copy of one package now, with both digests: every stored file of it at the
    primary storage root and at each location holding a replica, batch by batch as a cycle
    checks them (damage repaired from a copy that still verifies; the coverage rows, one
    ``fixity check`` event per copy, the repairs and the tallies recorded). Also reports, and
    records as a ``fixity check`` failure each, the files in the primary object's content
    folders that the catalog does not list. Copies another run holds a claim on are left to
    it (counted in ``unchecked``). Raises :class:`NotFound`, :class:`PolicyError` and
    :class:`~fixity.primary_copy.PrimaryUnavailable` (see :func:`run_cycle`)."""
    with services.sessions() as session:
        pkg = session.get(Package, package_id)
        if pkg is None:
            raise NotFound(
                f"no package {package_id} in the catalog",
                hint="`custos list` shows the packages held",
            )
        object_path, head = pkg.object_path, pkg.head
        known = set(
            session.execute(
                select(File.content_path).where(File.package_id == package_id)
            ).scalars()
        )
    policy = fixity_policy(services.settings)
    primary_copy.require(services.primary, services.settings)
    # Claims are a worker's: two checks at once in one process (the API's threads) are two.
    worker = worker or f"{worker_name()}:{threading.get_native_id()}"
    run = _Run(services, policy, "package", worker, progress, package_id)
    run.seed()
    started = run.report.started_at
    try:
        while run.batch(checked_before=started, size=services.settings.fixity.batch_files):
            pass
    finally:
        run.give_back()
    run.untracked(services.primary.object(object_path), head, known)
    with services.sessions() as session:
        run.report.unchecked = sweep.unchecked(session, package_id, started)
    run.report.finished_at = now()
    return run.report


class _Run:
    def __init__(
        self,
        services: Services,
        policy: FixityPolicy,
        kind: str,
        worker: str,
        progress: Progress | None,
        package: str | None = None,
    ) -> None:
        self.services = services
        self.policy = policy
        self.worker = worker
        self.progress = progress
        #: A check of one package: only its copies are claimed.
        self.package = package
        self.locations = _Locations(services)
        self.report = FixityReport(kind, worker, policy.label, now())
        self.down_ids: set[int] = set()
        #: The rows of the next batch, claimed in the transaction that recorded the last one
        #: (one write transaction per batch instead of two: fewer turns at SQLite's write
        #: lock). When reading ahead, the batch after the one being read: its reads start as
        #: soon as the current batch's are in, and run (in a helper process, see
        #: fixity.reader) while that batch is recorded.
        self.next: list[int] | None = None
        #: The batch being read: its rows and its reads under way.
        self.reading: tuple[list[sweep.Claimed], reader.Pending] | None = None
        self.reader = reader.Reader(self.locations.get)
        self.checked_before: datetime | None = None
        #: Whether another run was seeding when this one started (see seed).
        self.seed_skipped = False
        #: The highest row claimed in this run: the next pick starts after it (see claim).
        self.cursor = 0

    def seed(self) -> None:
        """Register the objects' other files (inventories, sidecars, records, anchors) and
        add coverage rows for every copy; a primary file that does not match the catalog is
        reported and recorded (a cycle reports it every time until it is put right).

        Skipped while another run (another worker's) is seeding: that seed covers what this
        one would, but for what the catalog gained in the second or so between the two starts,
        which the next run's seed adds. Workers started together seed once, not once each (at
        100,000 copies, about a second of each worker's time). See :meth:`batch` for a first
        claim that finds nothing because the other run's seed has not committed yet."""
        # A check of one package waits for another run's seed: it reports its package's
        # primary files that do not match the catalog, which only a seed finds.
        wait = self.package is not None
        with locks.held(self.services.engine, SEED_LOCK, wait=wait) as alone:
            if alone:
                self._seed()
            self.seed_skipped = not alone

    def _seed(self) -> None:
        at = self.report.started_at
        with self.services.session_scope() as session:
            primary = self.services.primary
            problems = stored.register(session, primary, at)
            problems += logfiles.register(session, primary, at)
            sweep.seed(session, self.policy, primary.uri, at, getattr(primary.location, "kind", ""))
            if self.report.kind == "sample":
                return
            for p in problems:
                if self.package is not None and p.package_id != self.package:
                    continue
                self.report.mismatched.append(p)
                text = f"{p.describe()}; not registered for fixity until put right"
                self.report.unrecoverable.append(f"{p.package_id}: {text}")
                owner = None if p.package_id == logfiles.LOG_KEY else p.package_id
                event = new_event(
                    "fixity check",
                    "failure",
                    f"ALERT: FIXITY-PRIMARY-MISMATCH: {text}",
                    links=[
                        *([Link("package", owner)] if owner else []),
                        Link("file", p.path, PRIMARY_LOCATION),
                    ],
                    agent=AGENT,
                    at=at,
                )
                record_events(session, [event], package_id=owner)

    def give_back(self) -> None:
        """Release the batches claimed ahead and not recorded (the run stopped or ended), and
        stop the helper that read them."""
        self.reader.close()
        held = list(self.next or [])
        if self.reading is not None:
            held += [item.id for item in self.reading[0]]
        if held:
            with self.services.session_scope() as session:
                sweep.release(session, self.worker, held)
        self.next, self.reading = None, None

    def _claim(
        self, session: Session, size: int, checked_before: datetime | None, random_pick: bool
    ) -> list[int]:
        ids = sweep.claim(
            session,
            self.worker,
            size,
            at=now(),
            lease=timedelta(seconds=self.services.settings.fixity.claim_timeout),
            checked_before=checked_before,
            random_pick=random_pick,
            skip_locations=self.down_ids,
            # a sample is one batch of the size asked for
            max_bytes=None if random_pick else self.services.settings.fixity.batch_bytes,
            after=self.cursor,
            package=self.package,
        )
        if ids and not random_pick:
            self.cursor = max(ids)
        return ids

    def batch(
        self,
        *,
        size: int,
        checked_before: datetime | None = None,
        random_pick: bool = False,
        ahead: Callable[[int], int] | None = None,
    ) -> bool:
        """Claim, check, repair and record one batch; False when nothing was left to claim.
        With ``ahead``, the transaction that records it claims the next batch (of the size
        ``ahead(copies checked or being read meanwhile)`` gives); and when the copies are
        small, the batch after this one is read (by the helper) while this one is recorded."""
        self.checked_before = checked_before
        if self.reading is None:
            ids = self.next if self.next is not None else self._claim_alone(size, random_pick)
            self.next = None
            if not ids and self.seed_skipped:
                # Nothing due, maybe because the seed this run skipped has not committed yet
                # (a first cycle's rows are all added by it): wait for it, and claim again.
                self.seed_skipped = False
                with locks.held(self.services.engine, SEED_LOCK, wait=True):
                    pass
                ids = self._claim_alone(size, random_pick)
            if not ids:
                return False
            # Read here unless the helper is running already (it starts up while this batch
            # is read, when the batch is small: see below).
            self.reading = self._start(ids, helper=self.reader.running)
            if ahead is not None and self._small(self.reading[0]) and ahead(len(ids)) > 0:
                # The next batch is claimed now, so that its reads can start (in the helper)
                # while this one is recorded.
                self.next = self._claim_alone(ahead(len(ids)), False)
                if self.next:
                    self.reader.warm()
        claimed, pending = self.reading
        reads = pending.results(skip=lambda name: name in self.report.unreachable)
        self.reading = None
        in_flight = 0
        claim_next = ahead
        if self.next:
            in_flight = len(self.next)
            self.reading = self._start(self.next, helper=True)
            self.next = None
            if not self._small(self.reading[0]):
                # Large copies, read here when their turn comes: nothing more is claimed
                # until then (see _small).
                claim_next = None
        checks: list[tuple[sweep.Claimed, CheckResult]] = []
        untouched: list[int] = []
        for item, job, got in zip(claimed, pending.jobs, reads, strict=True):
            if item.location in self.report.unreachable or isinstance(got, reader.Skipped):
                untouched.append(item.id)
                continue
            if isinstance(got, StorageError):
                self.report.unreachable[item.location] = got.message
                untouched.append(item.id)
                continue
            result = judge(item.location, item.expected, job.algorithms, got)
            if not result.ok and self._moved_on(item):
                continue  # stays claimed: checked again when the lease runs out
            checks.append((item, result))
            if self.progress:
                self.progress(result.size)
        steps.reached("fixity-checked")  # read and judged; nothing written yet
        repairs = {item.id: self._repair(item, result) for item, result in checks if not result.ok}
        self._record(
            checks,
            repairs,
            untouched,
            None if claim_next is None else lambda n: claim_next(n + in_flight),
        )
        return True

    @staticmethod
    def _small(claimed: list[sweep.Claimed]) -> bool:
        """Whether a batch is of small copies (1 MiB on average, or less). Those the helper
        reads while the batch before is recorded: each costs the catalog about as much as
        reading it. A large one costs the catalog nothing beside its reading, which is already
        spread over a thread and the digest (see archive.digest); reading ahead would only
        make the run hold one more claim of it, leaving the other workers less to share out at
        the end of a cycle. A run goes from one way to the other as its batches do (a
        package's small tag files, then its large payload files)."""
        return bool(claimed) and sum(c.expected.size for c in claimed) < READ_AHEAD_BELOW * len(
            claimed
        )

    def _claim_alone(self, size: int, random_pick: bool) -> list[int]:
        with self.services.session_scope() as session:
            return self._claim(session, size, self.checked_before, random_pick)

    def _start(self, ids: list[int], *, helper: bool) -> tuple[list[sweep.Claimed], reader.Pending]:
        """Load the claimed rows and start reading their copies (``helper``: local copies of
        a batch of small copies in the helper process)."""
        with self.services.session_scope() as session:
            claimed = sweep.load(session, ids)  # writes only to drop rows of deleted files
        jobs = []
        for item in claimed:
            algorithms: tuple[str, ...] = ("sha512", "sha256")
            if self.report.kind == "cycle":
                algorithms = self.policy.algorithms(item.last_full_at, now())
            jobs.append(
                reader.Job(item.location, item.expected.key, algorithms, item.expected.size)
            )
        return claimed, self.reader.start(jobs, helper=helper and self._small(claimed))

    def _moved_on(self, item: sweep.Claimed) -> bool:
        """A root inventory (or sidecar) that differs because a newer version is being
        written at that location (its ``vN+1`` inventory is there) is not damage: the row
        stays claimed and is checked again when its lease runs out."""
        if item.expected.content_path not in stored.ROOT_FILES:
            return False
        newer = f"{item.expected.object_path}/v{item.expected.version + 1}/inventory.json"
        try:
            return self.locations.get(item.location).stat(newer) is not None
        except StorageError:
            return False

    def _repair(self, item: sweep.Claimed, result: CheckResult) -> RepairResult:
        with self.services.sessions() as session:
            if item.expected.package_id == logfiles.LOG_KEY:
                holders = logfiles.holders(session, item.expected.content_path)
            else:
                holders = [
                    name
                    for (name,) in session.execute(
                        select(StorageLocation.name)
                        .join(Replica, Replica.location_id == StorageLocation.id)
                        .where(
                            Replica.package_id == item.expected.package_id,
                            Replica.version >= item.expected.version,
                        )
                        .order_by(StorageLocation.name)
                    )
                ]
        sources: list[ReplicaLocation] = []
        for name in [PRIMARY_LOCATION, *holders]:
            if name == item.location or name in self.report.unreachable:
                continue
            try:
                sources.append(self.locations.get(name))
            except StorageError:
                continue
        return repair_copy(
            self.locations.get(item.location),
            item.expected,
            sources,
            self.services.store.staging,
        )

    def _record(
        self,
        checks: list[tuple[sweep.Claimed, CheckResult]],
        repairs: dict[int, RepairResult],
        untouched: list[int],
        ahead: Callable[[int], int] | None = None,
    ) -> None:
        at = now()
        results: list[sweep.Result] = []
        outcomes: dict[int, _Outcome] = {}
        judged = {item.id: result for item, result in checks}
        # Everything that needs no catalog is prepared before the transaction: it holds the
        # catalog's write lock (SQLite's only one), which other workers wait for.
        for item, result in checks:
            full = set(result.algorithms) == {"sha512", "sha256"}
            outcome, due = "ok", at + self.policy.period(item.tier)
            if not result.ok:
                fix = repairs[item.id]
                if fix.repaired:
                    outcome = "repaired"
                elif fix.source is None:
                    outcome, due = "unrecoverable", at + RETRY_UNRECOVERABLE
                else:
                    outcome, due = "repair-failed", at + RETRY_DAMAGED
            results.append(sweep.Result(item.id, outcome, due, full))
            outcomes[item.id] = self._outcome(item, result, repairs.get(item.id), at)
        with self.services.session_scope() as session:
            if self.report.unreachable and untouched:
                ids = session.execute(
                    select(StorageLocation.id).where(
                        StorageLocation.name.in_(list(self.report.unreachable))
                    )
                ).scalars()
                self.down_ids.update(ids)
            # The next batch first: its pick only reads, and on SQLite runs before the write
            # lock is taken (by its UPDATE), which the rest of the transaction holds.
            if ahead is not None and ahead(len(results)) > 0:
                self.next = self._claim(session, ahead(len(results)), self.checked_before, False)
            sweep.release(session, self.worker, untouched)
            owned = sweep.finish(session, self.worker, at, results)
            events: dict[str | None, list[EventRecord]] = {}
            tallies: dict[tuple[str, str], Tally] = {}
            damaged_replicas: set[tuple[str, str]] = set()
            for r in results:
                if r.id not in owned:
                    continue  # taken over after the lease ran out: the other worker records it
                o = outcomes[r.id]
                if not judged[r.id].ok:
                    self.report.damaged.append(judged[r.id])
                owner = None if o.package_id == logfiles.LOG_KEY else o.package_id
                events.setdefault(owner, []).extend(o.events)
                tallies.setdefault(o.key, Tally()).add(o.tally)
                for kind, line in o.lines:
                    getattr(self.report, kind).append(line)
                if o.damaged and owner is not None:
                    damaged_replicas.add((o.package_id, o.key[0]))
            for (loc, tier), t in tallies.items():
                session.add(
                    FixityTally(
                        at=at,
                        kind=self.report.kind,
                        worker=self.worker,
                        location=loc,
                        tier=tier,
                        files=t.files,
                        bytes=t.bytes,
                        failures=t.failures,
                        repairs=t.repairs,
                        unrecoverable=t.unrecoverable,
                    )
                )
                self.report.tallies.setdefault((loc, tier), Tally()).add(t)
            for pid, loc in damaged_replicas:
                if loc == PRIMARY_LOCATION:
                    continue
                session.execute(
                    update(Replica)
                    .where(
                        Replica.package_id == pid,
                        Replica.location_id
                        == select(StorageLocation.id)
                        .where(StorageLocation.name == loc)
                        .scalar_subquery(),
                    )
                    .values(status=DAMAGED)
                )
            # Last: appending to the custody log locks its head until the commit, and other
            # workers' batches wait for it (on PostgreSQL; SQLite has one write lock anyway).
            record_batches(session, list(events.items()))

    def _outcome(
        self, item: sweep.Claimed, result: CheckResult, fix: RepairResult | None, at: datetime
    ) -> _Outcome:
        """The events, tallies and report lines of one checked copy."""
        pid = item.expected.package_id
        tally = Tally(files=1, bytes=result.size)
        links = [Link("file", item.expected.content_path, item.location)]
        if pid != logfiles.LOG_KEY:
            links.insert(0, Link("package", pid))
        events = [
            new_event(
                "fixity check",
                "success" if result.ok else "failure",
                f"{result.describe()}; policy {self.policy.label}",
                links=links,
                agent=AGENT,
                at=at,
            )
        ]
        out = _Outcome(pid, (item.location, item.tier), events, tally)
        if result.ok or fix is None:
            return out
        tally.failures += 1
        out.lines.append(("damage", f"{pid}: {result.describe()}"))
        path = item.expected.content_path
        if fix.repaired:
            tally.repairs += 1
            version = f" (new object version {fix.version_id})" if fix.version_id else ""
            text = (
                f"repair of {path} at {item.location} from {fix.source}: new copy "
                f"written{version} and read back intact"
            )
            out.lines.append(("repairs", f"{pid}: {text}"))
            events.append(
                new_event("replication", "success", text, links=links, agent=AGENT, at=at)
            )
        elif fix.source is None:
            tally.unrecoverable += 1
            tried = "; ".join(fix.tried) or "no other copy is recorded"
            text = (
                f"ALERT: FIXITY-UNRECOVERABLE: no intact copy of {path} is left to repair the "
                f"copy at {item.location} from (tried: {tried}); marked unrecoverable"
            )
            out.lines.append(("unrecoverable", f"{pid}: {text}"))
            events.append(
                new_event("fixity check", "failure", text, links=links, agent=AGENT, at=at)
            )
            out.damaged = True
        else:
            text = (
                f"repair of {path} at {item.location} from {fix.source} refused: {fix.error}; "
                f"checked again after {RETRY_DAMAGED}"
            )
            out.lines.append(("refused", f"{pid}: {text}"))
            events.append(
                new_event("replication", "failure", text, links=links, agent=AGENT, at=at)
            )
            out.damaged = True
        return out

    def untracked(self, obj: StoredObject, head: int, known: set[str]) -> None:
        """Report, and record, the files in the primary object's content folders that the
        catalog does not list (a package check)."""
        assert self.package is not None
        found = stored.untracked(obj, head, known)
        if not found:
            return
        self.report.untracked = found
        at = now()
        events = [
            new_event(
                "fixity check",
                "failure",
                f"FIXITY-UNTRACKED: {PRIMARY_LOCATION}: {path}: in the object's content folders "
                "but not in the catalog: no fixity check covers it, and an OCFL object holds no "
                "content file its manifest does not list (OCFL validation code E023); find how "
                "it got there, then remove it",
                links=[Link("package", self.package), Link("file", path, PRIMARY_LOCATION)],
                agent=AGENT,
                at=at,
            )
            for path in found
        ]
        with self.services.session_scope() as session:
            record_events(session, events, package_id=self.package)

    def snapshot(self) -> None:
        """Record coverage now, for the report's chart."""
        self.report.finished_at = now()
        with self.services.session_scope() as session:
            cov = coverage(session, at=self.report.finished_at)
            session.add(
                FixitySnapshot(at=self.report.finished_at, covered=cov.covered, total=cov.expected)
            )
