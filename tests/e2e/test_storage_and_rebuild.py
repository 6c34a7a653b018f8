"""Storage is self-describing: an independent OCFL validator accepts it, and the catalog can be
recreated from it alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocfl import StorageRoot
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive.catalog.rebuild import rebuild
from archive.catalog.tables import Deposit, Depositor, Event, File, Package
from archive.errors import InputRejected
from archive.services import Services
from ingest.service import identify_package
from tests.conftest import CONFORMANCE, SAMPLE, MakeServices
from tests.helpers import deposit

INDEX = json.loads((CONFORMANCE / "index.json").read_text())["cases"]
VALID = sorted(c for c, m in INDEX.items() if m["expected"] == "valid")


def fill(services: Services) -> list[str]:
    """The sample holding (identified: two versions) and every storable conformance bag."""
    stored = [deposit(services, SAMPLE, depositor="Sample Mechanism").package_id]
    identify_package(services, stored[0])
    for case in VALID:
        try:
            result = deposit(services, CONFORMANCE / case, depositor=f"Suite {case[:5]}")
        except InputRejected:  # the bags archive policy refuses (holey, colliding names)
            continue
        if result.status == "stored":  # several cases share one payload: held once
            stored.append(result.package_id)
    return stored


def validate_root(root: Path) -> StorageRoot:
    sr = StorageRoot(root=str(root))
    ok = sr.validate(validate_objects=True, check_digests=True, log_warnings=True)
    assert ok, str(sr.log)
    assert sr.num_objects == sr.good_objects, str(sr.log)
    return sr


def test_storage_root_is_valid_ocfl(services: Services) -> None:
    stored = fill(services)
    assert len(stored) >= 10
    sr = validate_root(services.store.root)
    assert sr.num_objects == len(stored) == sr.good_objects
    assert "[W" not in str(sr.log), str(sr.log)


def test_validator_catches_damage(services: Services) -> None:
    """The validation test can fail: a flipped byte in stored content is reported."""
    package_id = deposit(services, SAMPLE, depositor="Sample Mechanism").package_id
    with services.sessions() as s:
        pkg = s.get(Package, package_id)
        assert pkg is not None
        target = services.store.object_root(pkg.object_path) / "v1/content/bag/data/README.txt"
    target.write_bytes(target.read_bytes().replace(b"SAMPLE", b"SAMPLF", 1))
    sr = StorageRoot(root=str(services.store.root))
    sr.validate(validate_objects=True, check_digests=True)
    assert sr.num_objects == 1 and sr.good_objects == 0


def snapshot(services: Services) -> dict[str, Any]:
    with services.sessions() as s:
        packages = s.execute(select(Package).options(selectinload(Package.versions))).scalars()
        events = s.execute(
            select(Event).where(Event.package_id.is_not(None)).options(selectinload(Event.links))
        ).scalars()
        return {
            # The depositors storage names: one registered without a deposit (here, for a bag
            # refused or already held) is the catalog's alone.
            "depositors": sorted(
                s.execute(
                    select(Depositor.name)
                    .join(Package, Package.depositor_id == Depositor.id)
                    .distinct()
                ).scalars()
            ),
            "deposits": sorted(
                (
                    d.id,
                    d.source_name,
                    d.received_at,
                    d.stored_at,
                    d.bagit_version,
                    d.fingerprint,
                    d.payload_files,
                    d.payload_bytes,
                )
                for d in s.execute(select(Deposit)).scalars()
            ),
            "packages": sorted(
                (
                    p.id,
                    p.deposit_id,
                    p.title,
                    p.created_at,
                    p.head,
                    p.object_path,
                    tuple(
                        (v.number, v.created_at, v.message, v.agent, v.inventory_sha512)
                        for v in p.versions
                    ),
                )
                for p in packages
            ),
            "files": sorted(
                (
                    f.package_id,
                    f.version,
                    f.logical_path,
                    f.content_path,
                    f.role,
                    f.size,
                    f.sha512,
                    f.sha256,
                    f.puid,
                    f.mime_type,
                    f.format_name,
                )
                for f in s.execute(select(File)).scalars()
            ),
            "events": sorted(
                (
                    e.uuid,
                    e.type,
                    e.occurred_at,
                    e.agent,
                    e.outcome,
                    e.detail,
                    e.package_id,
                    tuple(sorted((lk.object_type, lk.object_id, lk.role) for lk in e.links)),
                )
                for e in events
            ),
        }


def test_catalog_rebuild_from_storage_alone(
    make_services: MakeServices, catalog_url: str, tmp_path: Path, request: Any
) -> None:
    services = make_services(catalog_url)
    stored = fill(services)
    before = snapshot(services)
    assert len(before["packages"]) == len(stored)
    assert any(f[8] == "fmt/11" for f in before["files"])  # identification results included

    # A second catalog that has never seen these packages: a new SQLite file or PG database.
    if catalog_url:
        server = request.getfixturevalue("postgres")
        fresh_db = server.create_database()
        fresh_url = server.url(fresh_db)
    else:
        fresh_url = f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}"
    rebuilt = make_services(
        fresh_url, storage_root=services.store.root, staging_dir=services.store.staging
    )
    assert snapshot(rebuilt)["packages"] == []
    report = rebuild(rebuilt)
    assert report.failed == []
    assert sorted(report.indexed) == sorted(stored)
    assert snapshot(rebuilt) == before

    # Rebuilding in place gives the same catalog again.
    again = rebuild(services)
    assert again.failed == []
    assert snapshot(services) == before
    if catalog_url:
        rebuilt.close()
        server.drop_database(fresh_db)


def test_rebuild_reports_a_damaged_object(services: Services) -> None:
    package_id = deposit(services, SAMPLE, depositor="Sample Mechanism").package_id
    with services.sessions() as s:
        pkg = s.get(Package, package_id)
        assert pkg is not None
        root = services.store.object_root(pkg.object_path)
    (root / "inventory.json.sha512").write_text("0" * 128 + "  inventory.json\n")
    report = rebuild(services)
    assert report.indexed == []
    assert report.failed and "sidecar" in report.failed[0][1]
