"""Fixity and replication with the primary copy in an S3 bucket (real SeaweedFS with Object
Lock), as several hosts share it: every copy is read through the locations, damage to the
primary is repaired through its location, and nothing of an object is ever written under
this host's storage root."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archive.catalog.tables import Event, File, FixityCoverage, Package, StorageLocation
from archive.config import PRIMARY_LOCATION
from archive.digest import digest_file
from archive.fixity_state import coverage
from archive.services import Services, primary_location
from archive.storage import ocfl
from archive.storage.primary import Primary
from archive.storage.readback import read_back
from fixity.primary_copy import PrimaryUnavailable
from fixity.replication import replicate
from fixity.service import check_package, run_cycle
from tests.conftest import MakeServices
from tests.servers import SeaweedServer, start_seaweedfs
from tests.unit.fixity.conftest import add_package, local_settings, s3_settings, small_batches


def s3_primary(
    make_services: MakeServices, tmp_path: Path, primary: dict[str, Any], replica: dict[str, Any]
) -> Services:
    """An archive whose primary is a bucket (``shared``), with one replica location
    (``offsite``)."""
    return make_services(
        storage_root=str(tmp_path / "unused"),
        staging_dir=str(tmp_path / "scratch"),
        locations={"shared": primary, "offsite": replica},
        primary_location="shared",
        identify_formats=False,
    )


def no_object_here(tmp_path: Path) -> None:
    """Nothing of any object lies under the host's storage root (nor is left in scratch)."""
    local = tmp_path / "unused"
    assert not list(local.rglob(ocfl.OBJECT_NAMASTE))
    assert not [p for p in local.rglob("*") if "/content/" in p.as_posix()]
    scratch = tmp_path / "scratch"
    assert not [p for p in scratch.rglob("*") if p.is_file() and p.name != ".lock"], list(
        scratch.rglob("*")
    )


def payload(services: Services, package_id: str) -> list[tuple[str, str, str, str, int]]:
    """(key, content path, sha512, sha256, size) of each payload file of a package."""
    with services.sessions() as s:
        return [
            (f"{obj}/{path}", path, sha512, sha256, size)
            for obj, path, sha512, sha256, size in s.execute(
                select(Package.object_path, File.content_path, File.sha512, File.sha256, File.size)
                .join(Package, Package.id == File.package_id)
                .where(File.package_id == package_id, File.role == "payload")
                .order_by(File.content_path)
            )
        ]


@pytest.fixture
def shared(seaweedfs: SeaweedServer) -> dict[str, Any]:
    return s3_settings(seaweedfs)


def test_a_full_cycle_checks_every_copy_through_the_locations(
    make_services: MakeServices, tmp_path: Path, seaweedfs: SeaweedServer, shared: dict[str, Any]
) -> None:
    services = s3_primary(make_services, tmp_path, shared, s3_settings(seaweedfs))
    assert not services.primary.is_local
    packages = [add_package(services, tmp_path, files=3) for _ in range(2)]
    report = replicate(services)
    assert report.ok, report.as_dict()
    assert {c.location for _, c in report.copied} == {"offsite"}
    cycle = run_cycle(services, full=True)
    assert cycle.ok and cycle.damage == [] and not cycle.unreachable, cycle.as_dict()
    with services.sessions() as s:
        expected = coverage(s).expected
        primary_row = s.execute(
            select(StorageLocation.kind, StorageLocation.uri).where(
                StorageLocation.name == PRIMARY_LOCATION
            )
        ).one()
        rows = dict(
            s.execute(
                select(StorageLocation.name, func.count())
                .join(FixityCoverage, FixityCoverage.location_id == StorageLocation.id)
                .where(FixityCoverage.last_checked_at.is_not(None))
                .group_by(StorageLocation.name)
            ).all()
        )
    assert cycle.checked == expected > 0  # every copy, each once
    by_location = {loc: 0 for loc, _ in cycle.tallies}
    for (loc, _), t in cycle.tallies.items():
        by_location[loc] += t.files
    assert set(by_location) == {PRIMARY_LOCATION, "offsite"}
    assert by_location == rows
    # every primary file was read from the bucket: its content files and the objects' others
    for pid in packages:
        for key, *_ in payload(services, pid):
            assert services.primary.location.stat(key) is not None
    assert by_location[PRIMARY_LOCATION] > sum(len(payload(services, p)) for p in packages)
    assert primary_row == ("s3", services.primary.uri)
    no_object_here(tmp_path)


@pytest.mark.parametrize("replica_kind", ["local", "s3"])
def test_a_bad_primary_copy_is_repaired_from_the_replica_through_its_location(
    make_services: MakeServices,
    tmp_path: Path,
    seaweedfs: SeaweedServer,
    shared: dict[str, Any],
    replica_kind: str,
) -> None:
    replica = (
        local_settings(tmp_path / "replica") if replica_kind == "local" else s3_settings(seaweedfs)
    )
    services = s3_primary(make_services, tmp_path, shared, replica)
    pid = add_package(services, tmp_path, files=3)
    assert replicate(services).ok
    key, path, sha512, sha256, size = payload(services, pid)[1]
    location = services.primary.location
    good_version = location.stat(key)
    assert good_version is not None and good_version.version_id
    # Object Lock keeps the stored version; a put of other bytes makes a new, latest one.
    bad = tmp_path / "bad.bin"
    bad.write_bytes(os.urandom(size))
    digests = digest_file(bad).digests
    location.put(key, bad, sha256=digests["sha256"], sha512=digests["sha512"])
    assert not read_back(location, key, sha512=sha512, sha256=sha256, size=size).ok

    cycle = run_cycle(services, full=True)
    assert [line.split(": ")[1:3] for line in cycle.damage] == [[PRIMARY_LOCATION, path]]
    assert len(cycle.repairs) == 1 and "from offsite" in cycle.repairs[0], cycle.as_dict()
    assert cycle.ok and not cycle.unrecoverable
    now_stored = location.stat(key)
    assert now_stored is not None and now_stored.version_id not in (None, good_version.version_id)
    assert read_back(location, key, sha512=sha512, sha256=sha256, size=size).ok
    with services.sessions() as s:
        repairs = s.execute(
            select(Event.detail).where(
                Event.package_id == pid, Event.type == "replication", Event.outcome == "success"
            )
        ).scalars()
        assert any(f"repair of {path} at {PRIMARY_LOCATION} from offsite" in d for d in repairs)
    again = run_cycle(services, full=True)
    assert again.ok and again.damage == [], again.as_dict()
    no_object_here(tmp_path)


def test_a_package_check_lists_untracked_files_in_the_bucket(
    make_services: MakeServices, tmp_path: Path, seaweedfs: SeaweedServer, shared: dict[str, Any]
) -> None:
    services = s3_primary(make_services, tmp_path, shared, s3_settings(seaweedfs))
    pid = add_package(services, tmp_path, files=2)
    assert replicate(services).ok
    with services.sessions() as s:
        pkg = s.get(Package, pid)
        assert pkg is not None
        rel = pkg.object_path
    stray = "v1/content/bag/data/stray.txt"
    source = tmp_path / "stray.txt"
    source.write_bytes(b"put here behind the archive's back")
    digests = digest_file(source).digests
    services.primary.location.put(
        f"{rel}/{stray}", source, sha256=digests["sha256"], sha512=digests["sha512"]
    )
    report = check_package(services, pid)
    assert report.untracked == [stray]
    assert report.damage == [] and report.checked > 0


def test_replication_stops_when_the_primary_does_not_answer(
    make_services: MakeServices, tmp_path: Path, seaweedfs: SeaweedServer, shared: dict[str, Any]
) -> None:
    """A primary that cannot be reached is no replica's failure: nothing is recorded."""
    services = s3_primary(make_services, tmp_path, shared, local_settings(tmp_path / "replica"))
    add_package(services, tmp_path, files=1)
    down = services.settings.model_copy(
        update={
            "locations": {
                **services.settings.locations,
                "shared": services.settings.locations["shared"].model_copy(
                    update={"endpoint_url": "http://127.0.0.1:9"}
                ),
            }
        }
    )
    services.primary = Primary(primary_location(down), services.store)
    with services.sessions() as s:
        before = s.execute(select(func.count()).select_from(Event)).scalar_one()
    with pytest.raises(PrimaryUnavailable) as raised:
        replicate(services)
    assert PRIMARY_LOCATION in raised.value.message and "s3://" in raised.value.message
    assert "[locations.shared]" in (raised.value.hint or "")
    with pytest.raises(PrimaryUnavailable):
        run_cycle(services, full=True)
    with services.sessions() as s:
        assert s.execute(select(func.count()).select_from(Event)).scalar_one() == before
    assert not [p for p in (tmp_path / "replica").rglob("*") if p.is_file()]


def test_a_primary_that_stops_answering_mid_cycle_is_left_unchecked_not_damaged(
    make_services: MakeServices, tmp_path: Path
) -> None:
    """The primary's server dies during a cycle: its copies not read yet are released, with
    no fixity event, no damage and no repair; the replica's are checked; the run says the
    primary was unreachable (the command's exit status 74). Once it answers again, a cycle
    checks them all and finds nothing wrong."""
    server = start_seaweedfs(Path("/tmp") / "custos-tests")
    try:
        services = s3_primary(
            make_services, tmp_path, s3_settings(server), local_settings(tmp_path / "replica")
        )
        add_package(services, tmp_path, files=4)
        assert replicate(services).ok
        small_batches(services, 4)
        seen = 0

        def kill_soon(_n: int) -> None:
            nonlocal seen
            seen += 1
            if seen == 2:
                server.kill()

        cycle = run_cycle(services, full=True, progress=kill_soon)
        assert cycle.primary_unreachable and not cycle.ok, cycle.as_dict()
        assert PRIMARY_LOCATION in cycle.unreachable[PRIMARY_LOCATION]
        assert cycle.damage == [] and cycle.repairs == [] and cycle.unrecoverable == []
        with services.sessions() as s:
            expected = coverage(s).expected
            failures = s.execute(
                select(func.count())
                .select_from(Event)
                .where(Event.type.in_(["fixity check", "replication"]), Event.outcome != "success")
            ).scalar_one()
            claimed = s.execute(
                select(func.count())
                .select_from(FixityCoverage)
                .where(FixityCoverage.claimed_by.is_not(None))
            ).scalar_one()
        assert failures == 0 and claimed == 0  # nothing judged, nothing held
        assert cycle.checked < expected
        assert {loc for loc, _ in cycle.tallies} >= {"offsite"}

        server.restart()  # S3 may answer errors until its volume server is up: try again
        again = run_cycle(services, full=True)
        deadline = time.monotonic() + 60
        while again.primary_unreachable and time.monotonic() < deadline:
            assert again.damage == [], again.as_dict()
            time.sleep(1)
            again = run_cycle(services, full=True)
        assert again.ok and again.damage == [] and again.checked == expected, again.as_dict()
    finally:
        server.stop()
