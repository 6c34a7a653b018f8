"""The custody log's files in the storage root (checkpoints, their evidence records, trust
anchors) are copied to every configured location (a folder and S3 on the real SeaweedFS
server), read back, checked by every fixity cycle at every copy, and repaired from a good copy;
records renewed or added later reach the replicas at the next run; a location that dies
midway claims nothing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import select

from archive.audit import verify_log
from archive.catalog.tables import Event, FixityCoverage, LogFile, StorageLocation
from archive.checkpoints import LOG_DIR
from archive.config import PRIMARY_LOCATION, ProofSettings
from archive.proofs.renew import renew
from archive.proofs.seal import seal_now
from archive.services import Services
from archive.storage.readback import read_back
from fixity.logfiles import LOG_KEY
from fixity.replication import replicate
from fixity.report import fixity_status
from fixity.service import run_cycle
from tests.servers import SeaweedServer, start_seaweedfs
from tests.unit.fixity.conftest import (
    ArchiveFactory,
    add_package,
    kill_after,
    local_settings,
    replicate_until_ok,
    s3_settings,
)
from tests.unit.fixity.faults import inject
from tests.unit.fixity.test_fixity import expected_copies, locations

EVERYWHERE = (PRIMARY_LOCATION, "second", "offsite")


def log_rows(services: Services) -> dict[str, LogFile]:
    with services.sessions() as s:
        return {r.path: r for r in s.execute(select(LogFile)).scalars()}


def held(services: Services, name: str) -> set[str]:
    with services.sessions() as s:
        return set(
            s.execute(
                select(FixityCoverage.content_path)
                .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
                .where(FixityCoverage.package_id == LOG_KEY, StorageLocation.name == name)
            ).scalars()
        )


def log_events(services: Services) -> list[tuple[str, str, str | None]]:
    with services.sessions() as s:
        return [
            (r.outcome, r.detail, r.package_id)
            for r in s.execute(
                select(Event).where(
                    Event.type == "replication", Event.detail.contains("custody-log")
                )
            ).scalars()
        ]


def assert_everywhere(services: Services) -> dict[str, LogFile]:
    """Every registered log file reads back intact at every location, and is held there."""
    rows = log_rows(services)
    on_disk = {
        p.relative_to(services.store.root).as_posix()
        for p in (services.store.root / LOG_DIR).rglob("*")
        if p.is_file()
    }
    assert set(rows) == on_disk
    for name, place in locations(services).items():
        for path, row in rows.items():
            check = read_back(place, path, sha512=row.sha512, sha256=row.sha256, size=row.size)
            assert check.ok, (name, check.describe())
        if name != PRIMARY_LOCATION:  # the primary's rows are fixity's, added by its cycle
            assert held(services, name) == set(rows), name
    return rows


def sealed(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer, catalog: str = ""
) -> Services:
    services = archive(
        catalog, second=local_settings(tmp_path / "replica"), offsite=s3_settings(seaweedfs)
    )
    add_package(services, tmp_path, files=2)
    seal_now(services)
    return services


def test_checkpoints_reach_every_location_and_verify(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer, catalog_url: str
) -> None:
    services = sealed(archive, tmp_path, seaweedfs, catalog_url)
    report = replicate(services)
    assert report.ok, report.as_dict()
    # every configured location, even one the package's plan does not name
    assert sorted(c.location for c in report.log_copies) == ["offsite", "second"]
    rows = assert_everywhere(services)
    kinds = {r.kind for r in rows.values()}
    assert {"checkpoint", "record", "anchor"} <= kinds, kinds
    assert all(c.files == len(rows) == c.written for c in report.log_copies)
    assert report.as_dict()["custody_log"][0]["files"] == len(rows)
    # one package-less replication event per location
    events = log_events(services)
    assert sorted(o for o, _, _ in events) == ["success", "success"]
    assert all(pid is None for _, _, pid in events)
    # the S3 copies are locked
    info = locations(services)["offsite"].stat(next(iter(rows)))
    assert info is not None and info.lock_mode == "COMPLIANCE"

    again = replicate(services)
    assert again.ok and again.log_copies == [] and len(log_events(services)) == 2

    # fixity checks every copy; status counts them
    cycle = run_cycle(services, full=True)
    assert cycle.ok and cycle.checked == expected_copies(services), cycle.as_dict()
    with services.sessions() as s:
        status = fixity_status(s)
    assert status.coverage.tracked == status.coverage.expected
    assert verify_log(services).ok


def test_records_renewed_or_added_later_reach_the_replicas(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services = sealed(archive, tmp_path, seaweedfs)
    assert replicate(services).ok
    before = set(log_rows(services))

    # a renewal (hash-tree renewal: the algorithm is retired) adds record files
    services.settings = services.settings.model_copy(
        update={"proofs": ProofSettings(algorithm="sha384", retired_algorithms=("sha512",))}
    )
    assert renew(services).as_dict()
    report = replicate(services)
    assert report.ok, report.as_dict()
    rows = assert_everywhere(services)
    new = set(rows) - before
    assert new and all(p.endswith(".ers") for p in new), new
    assert [c.files for c in report.log_copies] == [len(new), len(new)]

    # a new checkpoint (more custody events, sealed again) reaches them at the next run
    add_package(services, tmp_path, files=1)
    seal_now(services)
    report = replicate(services)
    assert report.ok, report.as_dict()
    rows = assert_everywhere(services)
    assert len([p for p in rows if p.endswith(".json")]) == 2
    assert len(log_events(services)) == 6
    assert verify_log(services).ok


@pytest.mark.parametrize("where", EVERYWHERE)
def test_a_damaged_checkpoint_is_found_and_repaired(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer, where: str
) -> None:
    services = sealed(archive, tmp_path, seaweedfs)
    assert replicate(services).ok
    first = run_cycle(services, full=True)
    assert first.ok and first.damage == [], first.as_dict()
    rows = log_rows(services)
    checkpoint = next(p for p, r in rows.items() if r.kind == "checkpoint")
    record = next(p for p, r in rows.items() if r.kind == "record")
    place = locations(services)[where]
    rng = random.Random(3)
    inject(place, checkpoint, "flip", rng, seaweedfs.client())
    inject(place, record, "delete", rng, seaweedfs.client())

    report = run_cycle(services, full=True)
    assert report.checked == first.checked
    assert len(report.damage) == 2 and len(report.repairs) == 2 and report.ok, report.as_dict()
    assert all(line.startswith(f"{LOG_KEY}: {where}: ") for line in report.damage)
    for path in (checkpoint, record):
        row = rows[path]
        check = read_back(place, path, sha512=row.sha512, sha256=row.sha256, size=row.size)
        assert check.ok, check.describe()
    with services.sessions() as s:
        failures = s.execute(
            select(Event.package_id).where(Event.type == "fixity check", Event.outcome == "failure")
        ).all()
    assert len(failures) == 2 and all(pid is None for (pid,) in failures)
    again = run_cycle(services, full=True)
    assert again.ok and again.damage == []
    assert verify_log(services).ok


def test_a_checkpoint_damaged_everywhere_is_unrecoverable(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services = sealed(archive, tmp_path, seaweedfs)
    assert replicate(services).ok
    checkpoint = next(p for p, r in log_rows(services).items() if r.kind == "checkpoint")
    rng = random.Random(7)
    for place in locations(services).values():
        inject(place, checkpoint, "flip", rng, seaweedfs.client())
    report = run_cycle(services, full=True)
    assert not report.ok and len(report.unrecoverable) == 3
    assert all(
        checkpoint in line and "FIXITY-UNRECOVERABLE" in line for line in report.unrecoverable
    )
    with services.sessions() as s:
        found = fixity_status(s)
    assert {(u.package_id, u.location, u.name) for u in found.unrecoverable} == {
        (LOG_KEY, where, checkpoint) for where in EVERYWHERE
    }
    assert not verify_log(services).ok  # the audit reads the primary's damaged checkpoint


def test_a_checkpoint_changed_before_registration_is_not_spread(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    services = archive(second=local_settings(tmp_path / "r"))
    add_package(services, tmp_path, files=1)
    seal_now(services)
    target = next((services.store.root / LOG_DIR).rglob("checkpoint-*.json"))
    rel = target.relative_to(services.store.root).as_posix()
    target.write_text(target.read_text().replace('"seq"', '"seq" ', 1))
    link = target.parent / "elsewhere.json"
    link.symlink_to(tmp_path / "outside.json")  # never followed, never copied

    report = replicate(services)
    assert report.ok, report.as_dict()
    assert not (tmp_path / "r" / rel).exists()  # not spread
    assert rel not in log_rows(services)
    assert log_rows(services)  # its records and anchors are
    cycle = run_cycle(services, full=True)
    assert not cycle.ok
    assert any(rel in line and "DOES NOT MATCH" in line for line in cycle.unrecoverable)
    assert any(
        "elsewhere.json" in line and "NOT A PLAIN FILE" in line for line in cycle.unrecoverable
    )
    assert not any(p.name == "elsewhere.json" for p in (tmp_path / "r").rglob("*"))


def test_s3_killed_mid_copy_claims_nothing_and_resumes(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    server = start_seaweedfs(Path("/tmp") / "custos-tests")
    try:
        services = archive(offsite=s3_settings(server))
        pid = add_package(services, tmp_path, files=1)
        seal_now(services)
        assert replicate(services, pid).ok  # the package alone: the log's files wait
        assert held(services, "offsite") == set()
        report = replicate(services, progress=kill_after(server, 2))
        assert not report.ok and report.log_copies == []
        assert report.failures and report.failures[0][:2] == (LOG_KEY, "offsite")
        assert held(services, "offsite") == set()
        assert [o for o, _, _ in log_events(services)] == ["failure"]

        server.restart()
        resumed = replicate_until_ok(services)
        assert resumed.ok, resumed.as_dict()
        outcome = resumed.log_copies[0]
        assert 0 < outcome.written < outcome.files  # what was there was read back, not resent
        rows = log_rows(services)
        assert held(services, "offsite") == set(rows)
        place = locations(services)["offsite"]
        for path, row in rows.items():
            assert read_back(place, path, sha512=row.sha512, sha256=row.sha256, size=row.size).ok
        assert [o for o, _, _ in log_events(services)][-1] == "success"
    finally:
        server.stop()
