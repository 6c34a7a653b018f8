"""Replication: copy each package's OCFL object to the locations its replication plan names,
read every copy back, and only then record it.

For each package (one, or every package not safely stored):

1. The replication policy and the package's tier give the plan (``replication_plans``):
   how many copies and at which configured locations; the primary storage root holds one.
2. For each planned location without a current copy, every file of the object up to the
   catalog's head version is copied: content files against the catalog's sha512/sha256 (a
   primary file that changed since ingest is refused, never spread), version inventories
   against the catalog's sha512, the root inventory last (from the head version's folder, so
   a version appended meanwhile is not half-copied). A file already at the location is read
   back first and kept if it verifies: a run stopped midway (the S3 server died) resumes
   without writing, and locking, the same bytes again.
3. Every copy is read back in full (``read_back``: sha512 and sha256, never sizes or ETags).
4. Only then, in one transaction per batch of packages: the ``storage_locations`` and
   ``replicas`` rows and one PREMIS ``replication`` event per package per location.

A location that cannot be reached stops that location for the run, with one ``replication``
event (outcome failure); nothing is recorded as stored that was not read back.

Files added to an object outside its versions after a copy was made (evidence records sealed
or renewed later, their trust anchors: ``stored_files`` rows registered after the copy was
last read back) are copied to each current copy by the next run, read back, and recorded the
same way, without waiting for a new version.

The primary is read through its location (:class:`~archive.storage.primary.Primary`): a local
primary's files are put straight from the folder, as ever; a file of a primary elsewhere (an
S3 bucket several hosts share) is streamed into this host's scratch space (``staging_dir``)
while both digests are computed, put from there and removed. A primary that cannot be reached
stops the run (:class:`~fixity.primary_copy.PrimaryUnavailable`): no replica location is
blamed for it.

A run over every package also copies the custody log's files in the storage root
(``extensions/custos-custody-log/…``: checkpoints, their evidence records, trust anchors;
see :mod:`fixity.logfiles`) to every configured location, at the same key: each file a
location holds no read-back copy of yet (records renewed or added later are copied by the
next run), each read back against its registered sha512 and sha256. A location's copies are
recorded (their fixity coverage rows, one package-less ``replication`` event) only when all
of that run's files read back; a location that fails midway records nothing but a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from archive.catalog.queries import resolve_package_id
from archive.catalog.tables import (
    File,
    Package,
    Replica,
    ReplicationPlan,
    StorageLocation,
    StoredFile,
    Version,
)
from archive.catalog.upsert import upsert
from archive.checkpoints import LOG_DIR
from archive.clock import now
from archive.config import CONFIG_FILE_NAME, Settings, location_example
from archive.custody import new_event, record_events
from archive.digest import CopyResult, copy_with_digests, digest_file
from archive.errors import ConfigError, StorageError
from archive.journal import scratch
from archive.model import EventRecord, Link
from archive.replicas import STORED, location_id, replication_state, replication_summary
from archive.services import Services
from archive.storage import ocfl
from archive.storage.locations import open_location
from archive.storage.primary import Primary, StoredObject
from archive.storage.readback import read_back
from archive.storage.replica import (
    LocationUnavailable,
    ObjectMissing,
    ReplicaLocation,
    prepare_storage_root,
)
from fixity import logfiles
from fixity.policy import replication_policy
from fixity.primary_copy import PrimaryUnavailable, require, unavailable
from fixity.stored import is_content, local_oddities, register
from fixity.tiers import PackageTiers, file_tiers, layout_json, parse_layout
from policies.preservation import PackagePlan, ReplicationPolicy, plan_for_tiers

AGENT = "Custos replication"
Progress = Callable[[int], None]
#: Packages whose replica rows and events are written in one transaction.
BATCH = 50


@dataclass(frozen=True, slots=True)
class Expected:
    """What one file of the object must be: (sha512, sha256, size) when known."""

    sha512: str | None
    sha256: str | None
    size: int | None


class PrimaryFile:
    """One file of the primary copy, as the copier puts it: a local primary's own file, or
    the file streamed into this host's scratch space for the put (removed after)."""

    def __init__(self, primary: Primary, key: str, staging: Path) -> None:
        self.primary = primary
        self.key = key
        self.staging = staging

    @property
    def where(self) -> str:
        local = self.primary.local_path(self.key)
        return str(local) if local is not None else f"{self.primary.name}:{self.key}"

    @contextmanager
    def fetch(self, size: int | None = None) -> Iterator[tuple[Path, CopyResult | None]]:
        """A local file holding the bytes, and their digests when they were computed on
        the way (a streamed copy). Raises :class:`StorageError` (:class:`PrimaryUnavailable`
        when the primary does not answer)."""
        local = self.primary.local_path(self.key)
        if local is not None:
            if not local.is_file():
                raise self._lacks()
            yield local, None
            return
        with scratch(self.staging, "replicate-") as folder:
            path = folder / "copy"
            try:
                with self.primary.open(self.key) as reader:
                    got = copy_with_digests(reader, path, size_hint=size or 0)
            except ObjectMissing as exc:
                raise self._lacks() from exc
            except LocationUnavailable as exc:
                raise unavailable(self.primary, exc) from exc
            except OSError as exc:
                raise StorageError(
                    f"cannot copy {self.where} into the scratch folder {folder}: {exc}",
                    hint="check that staging_dir is writable and has room",
                ) from exc
            yield path, got

    def _lacks(self) -> StorageError:
        return StorageError(
            f"the primary copy lacks {self.where}, which the catalog registered",
            hint="run `custos fixity run` to repair the primary copy first",
        )


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    location: str
    files: int
    bytes: int
    written: int  # files put (the rest were already there and read back intact)
    late: bool = False  # only files added after the copy (records sealed later)
    kinds: str = ""  # the custody log's files: what they were (checkpoints, records, …)


@dataclass
class ReplicationReport:
    """What a run did: copies recorded, failures, and each package's state after it."""

    copied: list[tuple[str, CopyOutcome]] = field(default_factory=list)
    #: The custody log's files copied, per location (see :mod:`fixity.logfiles`).
    log_copies: list[CopyOutcome] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # package, location, why
    states: dict[str, Any] = field(default_factory=dict)
    #: When a package needs more locations than the settings configure: what to add.
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and all(s["safely_stored"] for s in self.states.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "copied": [
                {
                    "package_id": pid,
                    "location": c.location,
                    "files": c.files,
                    "bytes": c.bytes,
                    "written": c.written,
                    "late_files_only": c.late,
                }
                for pid, c in self.copied
            ],
            "custody_log": [
                {
                    "location": c.location,
                    "files": c.files,
                    "bytes": c.bytes,
                    "written": c.written,
                    "kinds": c.kinds,
                }
                for c in self.log_copies
            ],
            "failures": [
                {"package_id": p, "location": loc, "reason": why} for p, loc, why in self.failures
            ],
            "packages": self.states,
            "hint": self.hint,
        }


def location_hint(settings: Settings, policy: ReplicationPolicy, shortfall: int) -> str:
    """What to add to the settings when plans lack ``shortfall`` locations: where the
    settings file is, and a ``[locations.NAME]`` table for a folder and for an S3 bucket
    (named as the policy names them, where it names locations the settings lack)."""
    tiers = ("public", "restricted", "protected-identity")
    named = [n for t in tiers for n in policy.for_tier(t).locations]
    wanted = sorted({n for n in named if n not in settings.replica_locations})
    folder = wanted[0] if wanted else "second-disk"
    bucket = wanted[-1] if wanted else "offsite"
    lead = (
        f"the replication policy ({policy.label}) names location(s) the settings lack: "
        f"{', '.join(wanted)}; add each under that key"
        if wanted
        else f"add {shortfall} more replica location(s), each under a key of its own"
    )
    return (
        f"{lead}, in the settings file ({settings.data_dir / CONFIG_FILE_NAME}, or the one "
        "given with --config or CUSTOS_CONFIG); a folder on another disk or a mounted share:\n\n"
        f"{location_example('local', folder)}\n"
        "or an S3 bucket (created with Object Lock if missing):\n\n"
        f"{location_example('s3', bucket)}\n"
        "then run `custos replicate` again (README: Settings, for every key)"
    )


def configured_location(settings: Settings, name: str) -> ReplicaLocation:
    entry = settings.replica_locations.get(name)
    if entry is None:
        raise ConfigError(
            f"the replication policy names location {name!r}, which the settings do not configure",
            hint=f"add [locations.{name}] to the settings, or change the policy",
        )
    return open_location(name, entry)


def plan_package(
    session: Any, policy: ReplicationPolicy, settings: Settings, package_id: str
) -> tuple[PackagePlan, PackageTiers, bool]:
    """Evaluate the policy for one package (each payload file's own tier, the object's
    other files the most closed) and record the plan (the caller commits). Also says whether
    the locations per tier changed since the last plan (copies made before must be
    completed)."""
    tiers = file_tiers(session, [package_id])[package_id]
    found = plan_for_tiers(policy, tiers.governing, tiers.present, list(settings.replica_locations))
    plan = found.plan
    counts = {
        loc: sum(1 for t in tiers.files.values() if found.holds(loc, t)) for loc in plan.locations
    }
    layout = layout_json(found.by_tier, counts)
    before = session.get(ReplicationPlan, package_id)
    changed = (
        before is not None
        and before.tier_locations != ""
        and parse_layout(before.tier_locations)[0] != found.by_tier
    )
    upsert(
        session,
        ReplicationPlan,
        {
            "package_id": package_id,
            "tier": plan.tier,
            "copies": plan.copies,
            "locations": ",".join(plan.locations),
            "shortfall": plan.shortfall,
            "policy": plan.policy,
            "planned_at": now(),
            "tier_locations": layout,
        },
        key=["package_id"],
    )
    return found, tiers, changed


def replicate(
    services: Services, package: str | None = None, *, progress: Progress | None = None
) -> ReplicationReport:
    """Replicate one package (``package``: id or unique UUID prefix) or every package not
    safely stored and, then, the custody log's files. Raises :class:`NotFound`,
    :class:`PolicyError`; location failures are recorded and reported, not raised (see the
    module docstring)."""
    policy = replication_policy(services.settings)
    require(services.primary, services.settings)
    with services.session_scope() as session:
        if package is not None:
            targets = [resolve_package_id(session, package)]
        problems = register(session, services.primary, now(), None if package is None else targets)
        if package is None:  # a log file that does not match the catalog is not spread
            problems += logfiles.register(session, services.primary, now())
    with services.sessions() as session:
        if package is None:
            targets = sorted(set(replication_summary(session).waiting) | set(late_files(session)))
    report = ReplicationReport()
    run = _Run(services, policy, report, progress)
    for p in problems:  # a primary file that does not verify is not spread (fixity reports it)
        run.unverified.setdefault(p.package_id, set()).add(p.path)
    try:
        for pid in targets:
            run.package(pid)
    finally:
        run.flush()
    if package is None:
        run.log()
    with services.sessions() as session:
        for pid in targets:
            report.states[pid] = replication_state(session, pid).as_dict()
    shortfall = max(
        (s["plan"]["shortfall"] for s in report.states.values() if s["plan"]), default=0
    )
    if shortfall:
        report.hint = location_hint(services.settings, policy, shortfall)
    return report


class _Run:
    """One replication run: locations opened once, results written in batches."""

    def __init__(
        self,
        services: Services,
        policy: ReplicationPolicy,
        report: ReplicationReport,
        progress: Progress | None,
    ) -> None:
        self.services = services
        self.policy = policy
        self.report = report
        self.progress = progress
        self.ready: dict[str, ReplicaLocation] = {}
        self.down: dict[str, str] = {}  # location -> why, for the rest of the run
        self.pending: list[tuple[str, int, ReplicaLocation, CopyOutcome]] = []
        self.failed_events: list[tuple[str, EventRecord]] = []
        self.unverified: dict[str, set[str]] = {}  # package -> primary files not registered

    def location(self, name: str) -> ReplicaLocation:
        if name not in self.ready:
            loc = configured_location(self.services.settings, name)
            loc.ensure()
            prepare_storage_root(loc)
            self.ready[name] = loc
        return self.ready[name]

    def package(self, package_id: str) -> None:
        with self.services.session_scope() as session:
            found, tiers, changed = plan_package(
                session, self.policy, self.services.settings, package_id
            )
            plan = found.plan
            state = replication_state(session, package_id)
            pkg = session.get(Package, package_id)
            assert pkg is not None
            head, object_path = pkg.head, pkg.object_path
            expected = _expected(session, package_id)
            late = late_files(session, package_id)[package_id] if state.replicas else {}
        for name in plan.locations:
            only: set[str] | None = None
            # Payload files whose tier's plan does not name this location stay off it.
            skip = {p for p, t in tiers.files.items() if not found.holds(name, t)}
            skip |= self.unverified.get(package_id, set())
            if state.current(name) and not changed:
                only = late.get(name)
                if not only:
                    continue
            if name in self.down:
                self.report.failures.append((package_id, name, self.down[name]))
                continue
            try:
                loc = self.location(name)
                outcome = copy_object(
                    loc,
                    self.services.primary.object(object_path),
                    head,
                    expected,
                    staging=self.services.store.staging,
                    progress=self.progress,
                    only=only,
                    skip=skip,
                )
            except PrimaryUnavailable:
                raise
            except (StorageError, ConfigError) as exc:
                self._failed(package_id, name, exc)
                continue
            self.pending.append((package_id, head, loc, outcome))
            self.report.copied.append((package_id, outcome))
        if len({p for p, *_ in self.pending}) >= BATCH:
            self.flush()

    def _failed(self, package_id: str, name: str, exc: StorageError | ConfigError) -> None:
        self.report.failures.append((package_id, name, exc.message))
        if isinstance(exc, LocationUnavailable | ConfigError):
            self.down[name] = exc.message
        event = new_event(
            "replication",
            "failure",
            f"no copy recorded at {name}: {exc.message}",
            links=[Link("package", package_id)],
            agent=AGENT,
        )
        self.failed_events.append((package_id, event))

    def log(self) -> None:
        """Copy the custody log's files each configured location lacks, read each back, and
        record each location's copies (coverage rows, one event) in one transaction."""
        with self.services.sessions() as session:
            files = logfiles.wanted(session)
            held = logfiles.held(session)
        if not files:
            return
        bad = self.unverified.get(logfiles.LOG_KEY, set())
        at_locations: list[tuple[ReplicaLocation, CopyOutcome, list[str]]] = []
        failed: list[EventRecord] = []
        for name in sorted(self.services.settings.replica_locations):
            todo = [f for f in files if f.path not in held.get(name, set()) and f.path not in bad]
            if not todo:
                continue
            if name in self.down:
                self.report.failures.append((logfiles.LOG_KEY, name, self.down[name]))
                continue
            try:
                loc = self.location(name)
                total = written = 0
                for f in todo:
                    source = PrimaryFile(self.services.primary, f.path, self.services.store.staging)
                    want = Expected(f.sha512, f.sha256, f.size)
                    size, put = copy_file(loc, f.path, source, want, self.progress)
                    total += size
                    written += put
            except PrimaryUnavailable:
                raise
            except (StorageError, ConfigError) as exc:
                self.report.failures.append((logfiles.LOG_KEY, name, exc.message))
                if isinstance(exc, LocationUnavailable | ConfigError):
                    self.down[name] = exc.message
                failed.append(
                    new_event(
                        "replication",
                        "failure",
                        f"custody-log files: no copy recorded at {name}: {exc.message}",
                        agent=AGENT,
                    )
                )
                continue
            paths = [f.path for f in todo]
            kinds = logfiles.describe_kinds(paths)
            outcome = CopyOutcome(name, len(todo), total, written, kinds=kinds)
            at_locations.append((loc, outcome, paths))
            self.report.log_copies.append(outcome)
        if not at_locations and not failed:
            return
        at = now()
        with self.services.session_scope() as session:
            events = list(failed)
            for loc, outcome, paths in at_locations:
                logfiles.add_copies(
                    session, location_id(session, loc.name, _kind(loc), loc.uri, at), paths
                )
                events.append(
                    new_event(
                        "replication",
                        "success",
                        f"custody-log files at {loc.name} ({loc.uri}): {outcome.files} file(s) "
                        f"({outcome.kinds}) of {LOG_DIR}, {outcome.bytes} bytes, every "
                        f"one read back with sha512 and sha256 ({outcome.written} written, "
                        f"{outcome.files - outcome.written} already there)",
                        agent=AGENT,
                        at=at,
                    )
                )
            record_events(session, events)

    def flush(self) -> None:
        """Record the copies read back so far, and the failures, in one transaction."""
        if not self.pending and not self.failed_events:
            return
        at = now()
        with self.services.session_scope() as session:
            by_package: dict[str, list[EventRecord]] = {}
            for package_id, head, loc, outcome in self.pending:
                loc_id = location_id(session, loc.name, _kind(loc), loc.uri, at)
                upsert(
                    session,
                    Replica,
                    {
                        "package_id": package_id,
                        "location_id": loc_id,
                        "version": head,
                        "status": STORED,
                        "stored_at": at,
                        "verified_at": at,
                    },
                    key=["package_id", "location_id"],
                )
                what = (
                    f"{outcome.files} file(s) added to the object since its copy there was "
                    "last read back (evidence records, trust anchors)"
                    if outcome.late
                    else f"{outcome.files} files"
                )
                by_package.setdefault(package_id, []).append(
                    new_event(
                        "replication",
                        "success",
                        f"copy of v{head} at {loc.name} ({loc.uri}): {what}, "
                        f"{outcome.bytes} bytes, every one read back with sha512 and sha256 "
                        f"({outcome.written} written, {outcome.files - outcome.written} "
                        f"already there); policy {self.policy.label}",
                        links=[Link("package", package_id)],
                        agent=AGENT,
                        at=at,
                    )
                )
            for package_id, event in self.failed_events:
                by_package.setdefault(package_id, []).append(event)
            for package_id, events in by_package.items():
                record_events(session, events, package_id=package_id)
        self.pending.clear()
        self.failed_events.clear()


def _kind(loc: ReplicaLocation) -> str:
    return str(getattr(loc, "kind", "unknown"))


def _expected(session: Any, package_id: str) -> dict[str, Expected]:
    """Catalog digests of the object's files: content files and version inventories."""
    out = {
        content: Expected(sha512, sha256, size)
        for content, sha512, sha256, size in session.execute(
            select(File.content_path, File.sha512, File.sha256, File.size).where(
                File.package_id == package_id
            )
        )
    }
    for number, digest in session.execute(
        select(Version.number, Version.inventory_sha512).where(Version.package_id == package_id)
    ):
        out[f"v{number}/inventory.json"] = Expected(digest, None, None)
    for path, sha512, sha256, size in session.execute(
        select(StoredFile.path, StoredFile.sha512, StoredFile.sha256, StoredFile.size).where(
            StoredFile.package_id == package_id
        )
    ):
        out[path] = Expected(sha512, sha256, size)
    return out


def late_files(session: Any, package_id: str | None = None) -> dict[str, dict[str, set[str]]]:
    """Package -> location -> files outside the version folders (evidence records sealed,
    or renewed, and trust anchors added after the copy there was last read back) that a
    current copy lacks. With ``package_id``, that package only (present even if empty)."""
    stmt = (
        select(StorageLocation.name, Replica.package_id, StoredFile.path)
        .join(Replica, Replica.location_id == StorageLocation.id)
        .join(Package, Package.id == Replica.package_id)
        .join(StoredFile, StoredFile.package_id == Replica.package_id)
        .where(
            Replica.status == STORED,
            Replica.version == Package.head,
            StoredFile.version == 0,
            or_(Replica.verified_at.is_(None), StoredFile.added_at > Replica.verified_at),
        )
    )
    out: dict[str, dict[str, set[str]]] = {}
    if package_id is not None:
        stmt = stmt.where(Replica.package_id == package_id)
        out[package_id] = {}
    for name, pid, path in session.execute(stmt):
        out.setdefault(pid, {}).setdefault(name, set()).add(path)
    return out


def object_files(source: StoredObject, head: int) -> list[tuple[str, str]]:
    """(key inside the object, the primary file it is copied from) of every file a replica
    of version ``head`` holds, in the order they are copied: the root inventory's sidecar and
    the root inventory last, both taken from the head version's folder. Refuses links and
    special files (in a local primary)."""
    if not source.exists(ocfl.OBJECT_NAMASTE):
        raise StorageError(
            f"{source.where()} is not an OCFL object (no {ocfl.OBJECT_NAMASTE})",
            hint="run `custos fixity run` to find and repair damage in the primary copy",
        )
    odd = local_oddities(source.primary, source.rel_path)
    if odd:
        raise StorageError(
            f"{source.primary.local_path(odd[0])} is not a plain file or folder; not replicating it"
        )
    found: list[tuple[str, str]] = []
    for rel in sorted(source.iter_files()):
        if rel in (ocfl.ROOT_INVENTORY, ocfl.ROOT_SIDECAR) or rel.endswith(".tmp"):
            continue
        first = rel.partition("/")[0]
        if first.startswith("v") and first[1:].isdigit() and int(first[1:]) > head:
            continue  # a version appended after the catalog's head: the next run copies it
        found.append((rel, rel))
    found.append((ocfl.ROOT_SIDECAR, f"v{head}/inventory.json.sha512"))
    found.append((ocfl.ROOT_INVENTORY, f"v{head}/inventory.json"))
    return found


def copy_object(
    location: ReplicaLocation,
    source: StoredObject,
    head: int,
    expected: dict[str, Expected],
    *,
    staging: Path,
    progress: Progress | None = None,
    only: set[str] | None = None,
    skip: set[str] | None = None,
) -> CopyOutcome:
    """Copy version ``head`` of the primary's object ``source`` to ``location`` and read
    every copy back (``only``: just those files, for a copy of ``head`` already there;
    ``skip``: content files that this location does not hold, by their tier's plan).
    ``staging``: this host's scratch space, for files of a primary that is not local.

    Raises :class:`StorageError` (:class:`ChecksumMismatch` when a primary file does not
    match the catalog, :class:`LocationUnavailable` when the location stops answering,
    :class:`~fixity.primary_copy.PrimaryUnavailable` when the primary does)."""
    object_path = source.rel_path
    try:
        files = object_files(source, head)
    except LocationUnavailable as exc:
        raise unavailable(source.primary, exc) from exc
    if skip:
        files = [(rel, src) for rel, src in files if rel not in skip]
    if only is not None:
        files = [(rel, src) for rel, src in files if rel in only]
        lost = sorted(only - {rel for rel, _ in files})
        if lost:
            raise StorageError(
                f"the primary copy of {object_path} lacks {len(lost)} file(s) the catalog "
                f"lists, e.g. {lost[0]}",
                hint="run `custos fixity run` to repair the primary copy from a replica first",
            )
    known_content = {k for k in expected if is_content(k) and k not in (skip or ())}
    listed = {rel for rel, _ in files}
    absent = sorted(k for k in known_content if int(k[1:].partition("/")[0]) <= head)
    absent = [k for k in absent if k not in listed]
    if absent and only is None:
        raise StorageError(
            f"the primary copy of {object_path} lacks {len(absent)} file(s) the catalog lists, "
            f"e.g. {absent[0]}",
            hint="run `custos fixity run` to repair the primary copy from a replica first",
        )
    total = written = 0
    for rel, src in files:
        want = expected.get(rel if rel != ocfl.ROOT_INVENTORY else f"v{head}/inventory.json")
        primary_file = PrimaryFile(source.primary, source.key(src), staging)
        size, put = copy_file(location, f"{object_path}/{rel}", primary_file, want, progress)
        total += size
        written += put
    return CopyOutcome(location.name, len(files), total, written, only is not None)


def copy_file(
    location: ReplicaLocation,
    key: str,
    source: PrimaryFile,
    want: Expected | None,
    progress: Progress | None = None,
) -> tuple[int, bool]:
    """Put ``source`` at ``key`` unless a copy there already reads back intact, and read the
    new copy back in full; (bytes, whether it was written). ``want``: the catalog's digests
    (a file it holds no sha256 for, or nothing, is digested first, and must match the sha512
    given). Raises :class:`StorageError` (:class:`ChecksumMismatch`: the source does not
    have the expected digests)."""
    if want is not None and want.sha512 is not None and want.sha256 is not None:
        return _copy(location, key, source, want, progress)
    with source.fetch(None if want is None else want.size) as (path, got):
        got = got or digest_file(path)
        if want is not None and got.digests["sha512"] != want.sha512:
            raise StorageError(
                f"{source.where} does not match the sha512 the catalog holds for it; not "
                "replicating a damaged inventory",
                hint="run `custos fixity run` to repair the primary copy first",
            )
        full = Expected(got.digests["sha512"], got.digests["sha256"], got.size)
        return _copy(location, key, source, full, progress, fetched=path)


def _copy(
    location: ReplicaLocation,
    key: str,
    source: PrimaryFile,
    want: Expected,
    progress: Progress | None,
    fetched: Path | None = None,
) -> tuple[int, bool]:
    assert want.sha512 is not None and want.sha256 is not None
    info = location.stat(key)
    if info is not None and (want.size is None or info.size == want.size):
        check = read_back(location, key, sha512=want.sha512, sha256=want.sha256, size=want.size)
        if check.ok:
            if progress:
                progress(check.size or 0)
            return check.size or 0, False
    if fetched is not None:
        location.put(key, fetched, sha256=want.sha256, sha512=want.sha512)
    else:
        with source.fetch(want.size) as (path, _):
            location.put(key, path, sha256=want.sha256, sha512=want.sha512)
    check = read_back(location, key, sha512=want.sha512, sha256=want.sha256, size=want.size)
    if not check.ok:
        raise StorageError(
            f"the copy just written did not read back intact: {check.describe()}",
            hint=f"check the location {location.name}; nothing was recorded as stored",
        )
    if progress:
        progress(check.size or 0)
    return check.size or 0, True
