"""Fixity with repair, against a folder replica and an S3 replica (real SeaweedFS) beside the
primary storage root: every injected fault is found in the next cycle and repaired where a
good copy is left, marked unrecoverable (with an alert) where none is, and clean cycles
raise no alarm."""

from __future__ import annotations

import random
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archive.audit import verify_log
from archive.catalog.tables import Event, File, FixityCoverage, Package, StoredFile
from archive.config import PRIMARY_LOCATION
from archive.errors import PolicyError
from archive.fixity_state import coverage
from archive.replicas import replication_state
from archive.services import Services
from archive.storage.locations import open_location
from archive.storage.replica import LocalFolderLocation, ObjectLocked, ReplicaLocation
from archive.storage.s3 import S3Location
from fixity.check import Expected
from fixity.repair import repair_copy
from fixity.replication import replicate
from fixity.service import run_cycle, run_sample
from policies.load import POLICY_DIR
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import (
    ArchiveFactory,
    add_package,
    local_settings,
    s3_settings,
    small_batches,
)
from tests.unit.fixity.faults import KINDS, inject


def three_copies(tmp_path: Path) -> Path:
    """The shipped policies, with three copies of everything."""
    folder = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (folder / "replication.toml").read_text().replace("copies = 2", "copies = 3")
    (folder / "replication.toml").write_text(text)
    return folder


def replicated_archive(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer, catalog: str = ""
) -> tuple[Services, list[str]]:
    services = archive(
        catalog, second=local_settings(tmp_path / "replica"), offsite=s3_settings(seaweedfs)
    )
    services.settings = services.settings.model_copy(update={"policy_dir": three_copies(tmp_path)})
    packages = [add_package(services, tmp_path, files=5) for _ in range(2)]
    report = replicate(services)
    assert report.ok, report.as_dict()
    return services, packages


def expected_copies(services: Services) -> int:
    with services.sessions() as s:
        return coverage(s).expected


def locations(services: Services) -> dict[str, ReplicaLocation]:
    found: dict[str, ReplicaLocation] = {
        PRIMARY_LOCATION: LocalFolderLocation(PRIMARY_LOCATION, services.store.root, fsync=False)
    }
    for name, entry in services.settings.locations.items():
        found[name] = open_location(name, entry)
    return found


def payload_keys(services: Services) -> list[tuple[str, str, str]]:
    """(package id, content path, key) of every payload file."""
    with services.sessions() as s:
        return [
            (pid, path, f"{obj}/{path}")
            for pid, path, obj in s.execute(
                select(File.package_id, File.content_path, Package.object_path)
                .join(Package, Package.id == File.package_id)
                .where(File.role == "payload")
                .order_by(File.package_id, File.content_path)
            )
        ]


def fixity_events(services: Services) -> list[tuple[str, str]]:
    with services.sessions() as s:
        return [
            (o, d)
            for o, d in s.execute(
                select(Event.outcome, Event.detail)
                .where(Event.type == "fixity check")
                .order_by(Event.id)
            )
        ]


# batches of 500: one batch, read in the run; of 4: local copies read by the helper process
@pytest.mark.parametrize(("seed", "batch"), [(1, 500), (2, 4)])
def test_random_faults_are_all_found_and_repaired(
    archive: ArchiveFactory,
    tmp_path: Path,
    seaweedfs: SeaweedServer,
    catalog_url: str,
    seed: int,
    batch: int,
) -> None:
    services, _ = replicated_archive(archive, tmp_path, seaweedfs, catalog_url)
    small_batches(services, batch)
    first = run_cycle(services, full=True)
    assert first.ok and first.damage == [], first.as_dict()
    copies = first.checked
    assert copies == expected_copies(services)

    rng = random.Random(seed)
    places = locations(services)
    client = seaweedfs.client()
    faults: dict[tuple[str, str], str] = {}
    for _pid, path, key in rng.sample(payload_keys(services), 7):
        where = rng.choice(sorted(places))
        kind = rng.choice(KINDS)
        inject(places[where], key, kind, rng, client)
        faults[(where, path)] = kind
    # each kind at least once over the run, at each location at least once
    report = run_cycle(services, full=True)
    assert report.checked == copies
    found = {(line.split(": ")[1], line.split(": ")[2]) for line in report.damage}
    assert found == set(faults), (faults, report.damage)  # 100% detected, no false alarm
    assert len(report.repairs) == len(faults) and report.ok  # 100% repaired
    again = run_cycle(services, full=True)
    assert again.ok and again.damage == [] and again.checked == copies
    with services.sessions() as s:
        outcomes = dict(
            s.execute(
                select(FixityCoverage.last_outcome, func.count()).group_by(
                    FixityCoverage.last_outcome
                )
            ).all()
        )
    assert outcomes == {"ok": copies}
    assert verify_log(services).ok


def test_clean_cycles_raise_no_alarm(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services, packages = replicated_archive(archive, tmp_path, seaweedfs)
    for _ in range(3):
        report = run_cycle(services, full=True)
        assert report.ok and report.damage == [] and report.checked > 0
    sample = run_sample(services, 10)
    assert sample.ok and sample.checked == 10 and sample.damage == []
    events = fixity_events(services)
    assert len(events) == 3 * report.checked + 10
    assert {o for o, _ in events} == {"success"}
    with services.sessions() as s:
        assert all(replication_state(s, p).safely_stored for p in packages)


def test_a_cycle_checks_only_what_is_due(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services, _ = replicated_archive(archive, tmp_path, seaweedfs)
    first = run_cycle(services)
    assert first.checked > 0
    assert run_cycle(services).checked == 0  # nothing due until the tier's period has passed
    new = add_package(services, tmp_path, files=2)
    replicate(services)
    # the new package's copies (3 of each of its files) are due, nothing else
    report = run_cycle(services)
    with services.sessions() as s:
        files = s.execute(select(func.count(File.id)).where(File.package_id == new)).scalar_one()
        others = s.execute(
            select(func.count(StoredFile.id)).where(StoredFile.package_id == new)
        ).scalar_one()
    assert others >= 3  # v1's inventory and sidecar, the declaration (and any records)
    assert report.checked == 3 * (files + others + 2)  # + the root inventory and sidecar
    assert report.checked == expected_copies(services) - first.checked


def test_no_good_copy_left_is_unrecoverable_and_alerts(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services, _ = replicated_archive(archive, tmp_path, seaweedfs)
    rng = random.Random(7)
    places = locations(services)
    pid, _path, key = payload_keys(services)[0]
    for _name, loc in places.items():
        inject(loc, key, "flip", rng, seaweedfs.client())
    report = run_cycle(services, full=True)
    assert not report.ok
    assert len(report.damage) == 3 and len(report.unrecoverable) == 3
    assert report.repairs == []
    alerts = [d for o, d in fixity_events(services) if o == "failure" and "ALERT" in d]
    assert len(alerts) == 3 and all("FIXITY-UNRECOVERABLE" in a for a in alerts)
    with services.sessions() as s:
        state = replication_state(s, pid)
        assert not state.safely_stored and "damaged" in state.describe()
    # never a silent pass: the next check raises it again
    later = run_cycle(services, full=True)
    assert len(later.unrecoverable) == 3


def test_repair_on_s3_writes_a_new_version_and_keeps_the_locked_one(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services, _ = replicated_archive(archive, tmp_path, seaweedfs)
    offsite = locations(services)["offsite"]
    assert isinstance(offsite, S3Location)
    _, _, key = payload_keys(services)[0]
    original = offsite.versions(key)
    assert len(original) == 1
    inject(offsite, key, "replace", random.Random(3), seaweedfs.client())
    report = run_cycle(services, full=True)
    assert len(report.repairs) == 1 and "new object version" in report.repairs[0]
    after = offsite.versions(key)
    assert len(after) == 3 and original[0] in after  # original, damage, repair
    # the archive never deletes a locked object: asked to, it refuses and says why
    with pytest.raises(ObjectLocked) as refused:
        offsite.delete(key)
    assert "COMPLIANCE" in refused.value.diagnostics()
    assert offsite.versions(key) == after
    # nor can anyone else remove the locked version
    with pytest.raises(Exception, match=r"AccessDenied|Forbidden|locked|retention"):
        seaweedfs.client().delete_object(
            Bucket=offsite.bucket, Key=offsite.prefix + key, VersionId=original[0]
        )


def test_a_refused_repair_is_reported_not_retried(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services, _ = replicated_archive(archive, tmp_path, seaweedfs)
    with services.sessions() as s:
        pid, path, size, sha512, sha256, version, obj = s.execute(
            select(
                File.package_id,
                File.content_path,
                File.size,
                File.sha512,
                File.sha256,
                File.version,
                Package.object_path,
            ).join(Package, Package.id == File.package_id)
        ).first()  # type: ignore[misc]
    expected = Expected(pid, obj, path, size, sha512, sha256, version)
    # a bucket that refuses writes: it does not exist (ensure() was never called for it)
    refusing = open_location(
        "offsite",
        services.settings.locations["offsite"].model_copy(update={"bucket": "no-such-bucket-here"}),
    )
    primary = locations(services)[PRIMARY_LOCATION]
    result = repair_copy(refusing, expected, [primary], services.store.staging)
    assert not result.repaired and result.source == PRIMARY_LOCATION
    assert "AccessDenied" in result.error and result.tried == ()


def test_bad_fixity_policy_is_refused(archive: ArchiveFactory, tmp_path: Path) -> None:
    services = archive()
    add_package(services, tmp_path)
    folder = three_copies(tmp_path)
    (folder / "fixity.toml").write_text(
        (folder / "fixity.toml").read_text().replace('algorithm = "sha256"', 'algorithm = "md5"')
    )
    services.settings = services.settings.model_copy(update={"policy_dir": folder})
    with pytest.raises(PolicyError) as caught:
        run_cycle(services)
    assert "fixity.toml" in caught.value.diagnostics() and "algorithm" in caught.value.message
    with services.sessions() as s:
        assert s.execute(select(func.count()).select_from(FixityCoverage)).scalar_one() == 0


def seeded(
    services: Services, tmp_path: Path, *, files: int, size: int
) -> tuple[Services, datetime]:
    """An archive holding one package of ``files`` files, its coverage rows made (the claim
    tests' start); and the time they were made."""
    from archive.clock import now
    from fixity import sweep
    from fixity.policy import fixity_policy

    add_package(services, tmp_path, files=files, size=size)
    at = now()
    with services.session_scope() as s:
        sweep.seed(s, fixity_policy(services.settings), services.store.uri, at)
    return services, at


def test_claims_share_out_large_files_by_bytes(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    """A claim stops before the content file that would take it past ``max_bytes`` (but
    always takes one row), so two workers asking in turn both get large files; claims never
    overlap and together take every row."""
    from datetime import timedelta

    from fixity import sweep

    services, at = seeded(archive(catalog_url), tmp_path, files=6, size=40_000)
    sizes: dict[int, int] = {}
    with services.sessions() as s:
        for row_id, size in s.execute(
            select(FixityCoverage.id, File.size).join(
                File,
                (File.package_id == FixityCoverage.package_id)
                & (File.content_path == FixityCoverage.content_path),
            )
        ):
            sizes[row_id] = size
        rows = s.execute(select(func.count(FixityCoverage.id))).scalar_one()
    big = [i for i, n in sizes.items() if n >= 40_000]
    assert len(big) == 6
    claims: list[list[int]] = []
    for turn in range(100):
        with services.session_scope() as s:
            ids = sweep.claim(
                s, f"w{turn % 2}", 500, at=at, lease=timedelta(hours=1), max_bytes=100_000
            )
        if not ids:
            break
        claims.append(ids)
    taken = [i for c in claims for i in c]
    assert len(taken) == len(set(taken)) == rows  # every row once, none twice
    for c in claims:
        content = sum(sizes.get(i, 0) for i in c)
        assert content <= 100_000 or len([i for i in c if i in sizes]) == 1
    # 6 files of ~40 kB: two per claim at most, so at least three claims hold large files,
    # and both workers got some
    holding = [c for c in claims if set(c) & set(big)]
    assert len(holding) >= 3
    assert {claims.index(c) % 2 for c in holding} == {0, 1}
    # with no byte bound, the first claim takes everything
    with services.session_scope() as s:
        s.execute(FixityCoverage.__table__.update().values(claimed_by=None, claimed_at=None))
        assert len(sweep.claim(s, "w0", 500, at=at, lease=timedelta(hours=1))) == rows


def test_a_claim_that_loses_a_race_claims_other_rows(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    """Another worker claims rows between this claim's pick and its UPDATE (forced here, at
    the UPDATE): the claim still takes rows, other ones, and does not come back empty, which
    would tell its worker that no work is left (on SQLite, which cannot lock the rows it
    picks, a worker used to stop its cycle that way)."""
    from datetime import timedelta

    from sqlalchemy import event

    from fixity import sweep

    services, at = seeded(archive(catalog_url), tmp_path, files=6, size=1000)
    lease = timedelta(hours=1)
    other: list[int] = []
    raced: list[bool] = []

    def cut_in(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE FIXITY_COVERAGE") and not raced:
            raced.append(True)
            with services.session_scope() as s2:  # a second connection: the other worker
                other.extend(sweep.claim(s2, "other", 3, at=at, lease=lease))

    event.listen(services.engine, "before_cursor_execute", cut_in)
    try:
        with services.session_scope() as s:
            mine = sweep.claim(s, "mine", 3, at=at, lease=lease)
    finally:
        event.remove(services.engine, "before_cursor_execute", cut_in)
    assert len(other) == 3
    assert len(mine) == 3 and not set(mine) & set(other)
    with services.sessions() as s:
        holders = dict(
            s.execute(
                select(FixityCoverage.id, FixityCoverage.claimed_by).where(
                    FixityCoverage.claimed_by.is_not(None)
                )
            ).all()
        )
    assert holders == {**{i: "mine" for i in mine}, **{i: "other" for i in other}}


def test_a_claim_past_its_cursor_still_finds_rows_given_back_below_it(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    """A run's picks start after the highest row it claimed; a row below that is due again
    (given back by a worker whose location did not answer) is still claimed before a claim
    comes back empty, and then every row was claimed exactly once."""
    from datetime import timedelta

    from fixity import sweep

    services, at = seeded(archive(catalog_url), tmp_path, files=6, size=1000)
    with services.sessions() as s:
        rows = s.execute(select(func.count(FixityCoverage.id))).scalar_one()
    lease = timedelta(hours=1)

    def take(after: int) -> list[int]:
        with services.session_scope() as s:
            return sweep.claim(s, "w", 3, at=at, lease=lease, after=after)

    first = take(0)
    assert len(first) == 3
    rest: list[int] = []
    while got := take(max(first + rest)):
        assert min(got) > max(first + rest)  # past the cursor
        rest += got
    assert sorted(first + rest) == sorted(set(first + rest)) and len(first + rest) == rows
    with services.session_scope() as s:
        sweep.release(s, "w", [first[0]])
    assert take(max(rest)) == [first[0]]
    assert take(first[0]) == []


def test_a_claim_never_takes_rows_checked_since_its_pick(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    """Between a claim's pick and its UPDATE (forced here, at the UPDATE), another worker
    claims the same rows, checks them and records the results, so they are free again but
    no longer due. The UPDATE must not take them: on SQLite, which cannot lock the rows a
    pick reads, that checked copies twice in one cycle."""
    from datetime import timedelta

    from sqlalchemy import event

    from fixity import sweep

    services, at = seeded(archive(catalog_url), tmp_path, files=6, size=1000)
    lease = timedelta(hours=1)
    other: list[int] = []
    raced: list[bool] = []

    def cut_in(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE FIXITY_COVERAGE") and not raced:
            raced.append(True)
            with services.session_scope() as s2:  # the other worker's whole batch
                other.extend(sweep.claim(s2, "other", 3, at=at, lease=lease))
            with services.session_scope() as s2:
                results = [sweep.Result(i, "ok", at + timedelta(days=1), False) for i in other]
                assert sweep.finish(s2, "other", at, results) == set(other)

    event.listen(services.engine, "before_cursor_execute", cut_in)
    try:
        with services.session_scope() as s:
            mine = sweep.claim(s, "mine", 3, at=at, lease=lease)
    finally:
        event.remove(services.engine, "before_cursor_execute", cut_in)
    assert len(other) == 3
    assert mine and not set(mine) & set(other)
    with services.sessions() as s:
        checked = s.execute(
            select(FixityCoverage.id).where(FixityCoverage.last_checked_at.is_not(None))
        ).scalars()
        assert set(checked) == set(other)


def test_a_claim_waits_for_rows_another_claim_holds_locked(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    """On PostgreSQL a claim locks every row it picked until it commits, though it may take
    only the first (the byte bound): another worker's pick then finds every due row locked.
    It waits for that claim to commit instead of coming back empty, which would end its
    cycle with work left. (SQLite locks no rows; the test holds its write lock instead.)"""
    import threading
    from datetime import timedelta

    from fixity import sweep

    services, at = seeded(archive(catalog_url), tmp_path, files=3, size=1000)
    postgres = services.engine.dialect.name == "postgresql"
    other = services.sessions()
    if postgres:  # another claim in progress: every due row locked, none taken yet
        locked = other.execute(select(FixityCoverage.id).with_for_update(skip_locked=True)).all()
        assert locked
    else:  # another writer holding SQLite's write lock
        other.execute(
            FixityCoverage.__table__.update().where(FixityCoverage.id < 0).values(claimed_by=None)
        )
    threading.Timer(0.5, other.commit).start()
    try:
        with services.session_scope() as s:
            mine = sweep.claim(s, "mine", 500, at=at, lease=timedelta(hours=1), max_bytes=1)
    finally:
        other.close()
    assert len(mine) == 1  # the byte bound: one row, not an empty claim
