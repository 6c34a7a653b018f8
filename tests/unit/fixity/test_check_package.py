"""A check of one package (fixity.service.check_package), and the Storage Service interface's
check that runs it (fixity.storage_service): the same check as a fixity cycle, recorded the
same way (coverage rows, one event per copy, repairs), on that package's copies only."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from archive.catalog.tables import Event, File, FixityCoverage, FixityTally, Package
from archive.config import PRIMARY_LOCATION
from archive.errors import NotFound
from archive.services import Services
from archive.storage.readback import Verdict
from fixity.replication import replicate
from fixity.service import check_package, run_cycle
from fixity.storage_service import check_fixity
from tests.unit.fixity.conftest import ArchiveFactory, add_package, checks_per_copy, local_settings
from tests.unit.fixity.faults import inject
from tests.unit.fixity.test_fixity import locations


def replicated(
    archive: ArchiveFactory, tmp_path: Path, catalog: str = ""
) -> tuple[Services, str, str]:
    """Two packages, each copied to a folder replica: (services, the one checked, the other)."""
    services = archive(catalog, second=local_settings(tmp_path / "replica"))
    checked, other = (add_package(services, tmp_path, files=3) for _ in range(2))
    assert replicate(services).ok
    return services, checked, other


def coverage_of(
    services: Services, package_id: str
) -> list[tuple[str, datetime | None, str | None]]:
    """(path, last check, last outcome) of every copy of the package's files."""
    with services.sessions() as s:
        return [
            tuple(r)  # type: ignore[misc]
            for r in s.execute(
                select(
                    FixityCoverage.content_path,
                    FixityCoverage.last_checked_at,
                    FixityCoverage.last_outcome,
                ).where(FixityCoverage.package_id == package_id)
            )
        ]


def payload_paths(services: Services, package_id: str) -> tuple[str, list[str]]:
    with services.sessions() as s:
        pkg = s.get(Package, package_id)
        assert pkg is not None
        paths = s.execute(
            select(File.content_path)
            .where(File.package_id == package_id, File.role == "payload")
            .order_by(File.content_path)
        ).scalars()
        return pkg.object_path, list(paths)


def test_a_package_check_is_the_cycles_check_of_that_package_only(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    services, pid, other = replicated(archive, tmp_path, catalog_url)
    report = check_package(services, pid)
    assert report.ok and report.kind == "package" and report.damaged == [], report.as_dict()
    rows = coverage_of(services, pid)
    # every stored file of the package, at the primary and at the replica, read once
    assert {loc for (_, _, loc) in checks_per_copy(services)} == {PRIMARY_LOCATION, "second"}
    assert report.checked == len(rows) and report.unchecked == 0
    assert all(at is not None and at >= report.started_at and out == "ok" for _, at, out in rows)
    counts = checks_per_copy(services)
    assert len(counts) == len(rows) and set(counts.values()) == {1}
    assert {p for p, _, _ in counts} == {pid}
    # the other package's copies were not touched
    untouched = coverage_of(services, other)
    assert untouched and all(at is None for _, at, _ in untouched)
    with services.sessions() as s:
        kinds = set(s.execute(select(FixityTally.kind)).scalars())
    assert kinds == {"package"}
    # a cycle afterwards checks what is due: the other package's copies, not these again
    cycle = run_cycle(services)
    assert cycle.checked == len(coverage_of(services, other))
    assert set(checks_per_copy(services).values()) == {1}


def test_damage_is_found_repaired_and_answered_as_the_storage_service_does(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    services, pid, _ = replicated(archive, tmp_path)
    rel, payload = payload_paths(services, pid)
    where = locations(services)
    rng = random.Random(4998)
    inject(where["second"], f"{rel}/{payload[0]}", "flip", rng, None)
    inject(where[PRIMARY_LOCATION], f"{rel}/{payload[1]}", "delete", rng, None)
    result = check_fixity(services, pid)
    answer = result.as_storage_service()
    assert answer["success"] is False
    assert answer["failures"]["files"] == {
        "changed": [f"{payload[0]} (copy at second)"],
        "missing": [payload[1]],
        "untracked": [],
    }
    assert "1 changed, 1 missing, 0 untracked" in answer["message"]
    assert "2 repaired from an intact copy, 0 not" in answer["message"]
    # recorded as a cycle records it: the failed checks, the repairs, the coverage rows
    with services.sessions() as s:
        events = s.execute(
            select(Event.type, Event.outcome, Event.detail).where(Event.package_id == pid)
        ).all()
    failed = [d for t, o, d in events if (t, o) == ("fixity check", "failure")]
    assert len(failed) == 2
    assert any(f"second: {payload[0]}: DOES NOT MATCH" in d for d in failed)
    assert any(f"{PRIMARY_LOCATION}: {payload[1]}: MISSING" in d for d in failed)
    repairs = [d for t, o, d in events if d.startswith("repair of ")]
    assert len(repairs) == 2
    outcomes = {(path, out) for path, _, out in coverage_of(services, pid) if out != "ok"}
    assert outcomes == {(payload[0], "repaired"), (payload[1], "repaired")}
    # the next check finds every copy intact
    again = check_fixity(services, pid).as_storage_service()
    assert again["success"] is True, again


def test_the_report_keeps_each_damaged_copys_verdict(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    services, pid, _ = replicated(archive, tmp_path)
    rel, payload = payload_paths(services, pid)
    inject(locations(services)["second"], f"{rel}/{payload[0]}", "truncate", random.Random(1), None)
    report = check_package(services, pid)
    ((found,),) = [report.damaged]
    assert (found.location, found.expected.content_path) == ("second", payload[0])
    assert found.verdict is Verdict.TRUNCATED and len(report.repairs) == 1


def test_untracked_files_are_reported_and_recorded(archive: ArchiveFactory, tmp_path: Path) -> None:
    services = archive()
    pid = add_package(services, tmp_path, files=2)
    rel, _ = payload_paths(services, pid)
    stray = "v1/content/bag/data/stray.txt"
    (services.store.object_root(rel) / stray).write_bytes(b"put here behind the archive's back")
    answer = check_fixity(services, pid).as_storage_service()
    assert answer["success"] is False
    assert answer["failures"]["files"] == {"changed": [], "missing": [], "untracked": [stray]}
    with services.sessions() as s:
        (detail,) = s.execute(
            select(Event.detail).where(
                Event.package_id == pid, Event.detail.like("FIXITY-UNTRACKED%")
            )
        ).scalars()
    assert stray in detail and "no fixity check covers it" in detail


def test_links_in_a_local_primary_object_are_untracked_and_never_replicated(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    """A folder's listing leaves links out; a local primary's are still named: a package
    check reports them untracked, and replication refuses the object rather than copy it
    without them."""
    services = archive(second=local_settings(tmp_path / "replica"))
    pid = add_package(services, tmp_path, files=1)
    rel, _ = payload_paths(services, pid)
    link = "v1/content/bag/data/elsewhere.txt"
    (tmp_path / "outside.txt").write_bytes(b"outside the archive")
    (services.store.object_root(rel) / link).symlink_to(tmp_path / "outside.txt")
    report = check_package(services, pid)
    assert report.untracked == [link]
    copied = replicate(services, pid)
    ((_, where, why),) = copied.failures
    assert where == "second" and "elsewhere.txt is not a plain file or folder" in why
    assert not (tmp_path / "replica" / rel).exists()


def test_a_primary_file_that_does_not_match_the_catalog_is_changed(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    """A version inventory altered before it was ever registered is not registered (so no
    copy of it is checked): the check still names it, and records the alert a cycle does."""
    services = archive()
    pid = add_package(services, tmp_path, files=2)
    rel, _ = payload_paths(services, pid)
    inventory = services.store.object_root(rel) / "v1/inventory.json"
    inventory.write_bytes(inventory.read_bytes().replace(b'"head"', b'"head" '))
    answer = check_fixity(services, pid).as_storage_service()
    assert answer["success"] is False
    assert answer["failures"]["files"]["changed"] == ["v1/inventory.json"]
    with services.sessions() as s:
        alerts = (
            s.execute(
                select(Event.detail).where(
                    Event.package_id == pid, Event.detail.like("%FIXITY-PRIMARY-MISMATCH%")
                )
            )
            .scalars()
            .all()
        )
    assert len(alerts) == 1 and "v1/inventory.json" in alerts[0]


def test_an_unknown_package_is_not_found(archive: ArchiveFactory) -> None:
    services = archive()
    missing = "urn:uuid:00000000-0000-4000-8000-000000000000"
    with pytest.raises(NotFound, match="no package"):
        check_package(services, missing)
    with pytest.raises(NotFound, match="no AIP 00000000-") as caught:
        check_fixity(services, missing)
    assert "GET /api/v2/file/" in caught.value.diagnostics()
