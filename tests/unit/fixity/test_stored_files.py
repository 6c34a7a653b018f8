"""Fixity over every stored file of every copy, not only content files: version inventories
and their sidecars, the root inventory, evidence records and trust anchors. Damage to any of
them, in the primary, a folder replica or an S3 replica (real SeaweedFS), is found by the next
cycle and repaired from a good copy; a primary inventory that does not match the catalog is
reported, never passed. Evidence records sealed or renewed after a package was replicated
reach every replica at the next replication run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archive.audit import verify_log
from archive.catalog.tables import Event, FixityCoverage, Package, StorageLocation, StoredFile
from archive.config import PRIMARY_LOCATION, ProofSettings
from archive.proofs.renew import renew
from archive.proofs.seal import seal_now
from archive.services import Services
from archive.storage.readback import read_back
from archive.storage.replica import LocalFolderLocation
from fixity.replication import replicate
from fixity.report import fixity_status
from fixity.service import run_cycle
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import ArchiveFactory, add_package, local_settings, s3_settings
from tests.unit.fixity.faults import inject
from tests.unit.fixity.test_fixity import expected_copies, locations, three_copies

FAULTS = ("flip", "truncate", "delete")


def sealed_archive(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer, catalog: str = ""
) -> tuple[Services, str]:
    """One package, sealed (evidence records, trust anchors), with three copies."""
    services = archive(
        catalog, second=local_settings(tmp_path / "replica"), offsite=s3_settings(seaweedfs)
    )
    services.settings = services.settings.model_copy(update={"policy_dir": three_copies(tmp_path)})
    pid = add_package(services, tmp_path, files=3)
    seal_now(services)
    assert replicate(services).ok
    return services, pid


def stored_paths(services: Services, pid: str) -> dict[str, str]:
    """Kind -> one path of that kind (the first in order), and the object's path."""
    with services.sessions() as s:
        found: dict[str, str] = {}
        for kind, path in s.execute(
            select(StoredFile.kind, StoredFile.path)
            .where(StoredFile.package_id == pid)
            .order_by(StoredFile.path)
        ):
            found.setdefault(kind, path)
        obj = s.execute(select(Package.object_path).where(Package.id == pid)).scalar_one()
    found["object"] = obj
    return found


@pytest.mark.parametrize("where", [PRIMARY_LOCATION, "second", "offsite"])
def test_damage_to_inventories_sidecars_and_records_is_found_and_repaired(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer, where: str, catalog_url: str
) -> None:
    services, pid = sealed_archive(archive, tmp_path, seaweedfs, catalog_url)
    first = run_cycle(services, full=True)
    assert first.ok and first.damage == [], first.as_dict()
    assert first.checked == expected_copies(services)
    paths = stored_paths(services, pid)
    assert {"inventory", "sidecar", "declaration", "record", "anchor"} <= set(paths)

    # every kind of file, every kind of fault (rotated by location so each pair is tried)
    targets = [
        paths["inventory"],
        paths["sidecar"],
        paths["record"],
        paths["anchor"],
        "inventory.json",
        "inventory.json.sha512",
    ]
    shift = [PRIMARY_LOCATION, "second", "offsite"].index(where)
    rng = random.Random(shift)
    place = locations(services)[where]
    faults = {}
    for i, rel in enumerate(targets):
        kind = FAULTS[(i + shift) % len(FAULTS)]
        inject(place, f"{paths['object']}/{rel}", kind, rng, seaweedfs.client())
        faults[(where, rel)] = kind
    report = run_cycle(services, full=True)
    assert report.checked == first.checked
    found = {(line.split(": ")[1], line.split(": ")[2]) for line in report.damage}
    assert found == set(faults), (faults, report.damage)  # all found, no false alarm
    assert len(report.repairs) == len(faults) and report.ok, report.as_dict()
    with services.sessions() as s:
        damaged = s.execute(
            select(func.count())
            .select_from(Event)
            .where(Event.type == "fixity check", Event.outcome == "failure")
        ).scalar_one()
    assert damaged == len(faults)  # each recorded, as content damage is

    # the repaired copies read back as the catalog says, and the next cycle is clean
    with services.sessions() as s:
        rows = {
            r.path: r
            for r in s.execute(select(StoredFile).where(StoredFile.package_id == pid)).scalars()
        }
    for rel in targets:
        row = rows[rel if rel not in ("inventory.json", "inventory.json.sha512") else f"v1/{rel}"]
        check = read_back(
            place, f"{paths['object']}/{rel}", sha512=row.sha512, sha256=row.sha256, size=row.size
        )
        assert check.ok, check.describe()
    again = run_cycle(services, full=True)
    assert again.ok and again.damage == [] and again.checked == first.checked
    with services.sessions() as s:
        outcomes = dict(
            s.execute(
                select(FixityCoverage.last_outcome, func.count()).group_by(
                    FixityCoverage.last_outcome
                )
            ).all()
        )
    assert outcomes == {"ok": first.checked}
    assert verify_log(services).ok


def test_a_primary_inventory_that_does_not_match_the_catalog_is_never_passed(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    services = archive(catalog_url)
    pid = add_package(services, tmp_path, files=2)
    with services.sessions() as s:
        obj = s.execute(select(Package.object_path).where(Package.id == pid)).scalar_one()
    primary = LocalFolderLocation(PRIMARY_LOCATION, services.store.root, fsync=False)
    inject(primary, f"{obj}/v1/inventory.json", "flip", random.Random(1), None)
    for _ in range(2):  # reported at every cycle until put right
        report = run_cycle(services, full=True)
        assert not report.ok
        assert len(report.unrecoverable) == 1
        assert "v1/inventory.json" in report.unrecoverable[0]
        assert "DOES NOT MATCH" in report.unrecoverable[0]
    with services.sessions() as s:
        alerts = s.execute(
            select(Event.detail).where(Event.detail.like("%FIXITY-PRIMARY-MISMATCH%"))
        ).all()
        registered = s.execute(
            select(StoredFile.path).where(StoredFile.package_id == pid)
        ).scalars()
        assert len(alerts) == 2
        assert "v1/inventory.json" not in set(registered)


@pytest.mark.parametrize("name", ["second", "offsite"])
def test_records_sealed_or_renewed_after_replication_reach_the_replicas(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer, name: str, catalog_url: str
) -> None:
    where = local_settings(tmp_path / "r") if name == "second" else s3_settings(seaweedfs)
    services = archive(catalog_url, **{name: where})
    pid = add_package(services, tmp_path, files=2)
    assert replicate(services).ok  # before any seal: no records yet
    place = locations(services)[name]
    seal_now(services)  # records written after the copy
    paths = stored_paths(services, pid)

    report = replicate(services)
    assert report.ok, report.as_dict()
    late = [c for p, c in report.copied if p == pid]
    assert len(late) == 1 and late[0].late and late[0].files >= 2, report.as_dict()
    with services.sessions() as s:
        records = {
            r.path: r
            for r in s.execute(
                select(StoredFile).where(StoredFile.package_id == pid, StoredFile.version == 0)
            ).scalars()
        }
    assert any(p.endswith(".ers") for p in records) and len(records) == late[0].files
    for path, row in records.items():
        check = read_back(
            place, f"{paths['object']}/{path}", sha512=row.sha512, sha256=row.sha256, size=row.size
        )
        assert check.ok, check.describe()
    details = [d for d in _events(services, "replication") if "added to the object since" in d]
    assert len(details) == 1
    assert replicate(services).copied == []  # nothing late any more: nothing copied

    # a renewal (hash-tree renewal: the record's algorithm is retired) adds new record files
    services.settings = services.settings.model_copy(
        update={"proofs": ProofSettings(algorithm="sha384", retired_algorithms=("sha512",))}
    )
    renewed = renew(services)
    assert renewed.as_dict()
    again = replicate(services)
    assert again.ok and [c.late for _, c in again.copied] == [True], again.as_dict()
    with services.sessions() as s:
        now_records = set(
            s.execute(
                select(StoredFile.path).where(
                    StoredFile.package_id == pid, StoredFile.kind == "record"
                )
            ).scalars()
        )
    assert len(now_records) > len([p for p in records if p.endswith(".ers")])
    for path in now_records:
        assert place.stat(f"{paths['object']}/{path}") is not None
    # and fixity checks every one of them at every copy
    cycle = run_cycle(services, full=True)
    assert cycle.ok and cycle.checked == expected_copies(services)
    with services.sessions() as s:
        at_replica = s.execute(
            select(func.count())
            .select_from(FixityCoverage)
            .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
            .where(FixityCoverage.content_path.in_(now_records), StorageLocation.name == name)
        ).scalar_one()
    assert at_replica == len(now_records)


def _events(services: Services, type_: str) -> list[str]:
    with services.sessions() as s:
        return list(s.execute(select(Event.detail).where(Event.type == type_)).scalars())


def test_a_record_damaged_in_every_copy_is_unrecoverable_and_named_by_its_path(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services, pid = sealed_archive(archive, tmp_path, seaweedfs)
    paths = stored_paths(services, pid)
    record = paths["record"]
    rng = random.Random(5)
    for place in locations(services).values():
        inject(place, f"{paths['object']}/{record}", "flip", rng, seaweedfs.client())
    report = run_cycle(services, full=True)
    assert not report.ok and len(report.unrecoverable) == 3
    assert all(record in line and "FIXITY-UNRECOVERABLE" in line for line in report.unrecoverable)
    with services.sessions() as s:
        found = fixity_status(s)
    assert {(u.location, u.kind, u.name) for u in found.unrecoverable} == {
        (where, "record", record) for where in (PRIMARY_LOCATION, "second", "offsite")
    }
    assert found.coverage.bad == 3


def test_a_broken_record_in_the_primary_is_reported_and_not_spread(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    services = archive(second=local_settings(tmp_path / "r"))
    pid = add_package(services, tmp_path, files=2)
    seal_now(services)
    with services.sessions() as s:
        obj = s.execute(select(Package.object_path).where(Package.id == pid)).scalar_one()
    records = sorted((services.store.root / obj).rglob("*.ers"))
    assert records
    broken = records[0]
    broken.write_bytes(broken.read_bytes()[:40])  # before anything registered it
    rel = broken.relative_to(services.store.root / obj).as_posix()

    report = replicate(services)
    assert not (tmp_path / "r" / obj / rel).exists()  # not spread
    assert (tmp_path / "r" / obj / records[1].relative_to(services.store.root / obj)).is_file()
    assert report.ok
    cycle = run_cycle(services, full=True)
    assert not cycle.ok
    assert [line for line in cycle.unrecoverable if rel in line]
    assert "IS NOT A READABLE EVIDENCE RECORD" in cycle.unrecoverable[0]
