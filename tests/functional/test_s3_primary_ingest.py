"""Deposit, identification, text extraction and format migration with the primary copy in an
S3 bucket (SeaweedFS, real, with Object Lock): every file reaches the bucket and is read from
it; nothing of an object lies in the host's folders, and nothing is left in its scratch."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from archive.catalog.tables import ExtractedText, File, Package
from archive.services import Services
from archive.storage import ocfl
from ingest.characterise import characterise
from ingest.service import identify_package
from migration import service as migration
from tests.conftest import MakeServices
from tests.functional.migrate_helpers import bmp
from tests.helpers import deposit, make_bag, make_pdf, pending_install, staging_debris
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import s3_settings


def s3_primary(make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path) -> Services:
    return make_services(
        storage_root=str(tmp_path / "host-storage"),
        staging_dir=str(tmp_path / "scratch"),
        locations={"shared": s3_settings(seaweedfs)},
        primary_location="shared",
    )


def host_files(tmp_path: Path) -> list[Path]:
    """Files under the host's storage root (there should be none)."""
    root = tmp_path / "host-storage"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_deposit_is_stored_identified_and_read_for_text_in_the_bucket(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    services = s3_primary(make_services, seaweedfs, tmp_path)
    bag = make_bag(
        tmp_path / "bag",
        {
            "report.pdf": make_pdf("Field report quokkafrond recorded at the site"),
            "notes.txt": b"Plain notes about the ferryman crossing\n",
            "images/map.bmp": bmp(),
        },
        info={
            "Title": "Holding on a shared primary",
            "Access-Tier": "public",
            "Access-Legal-Basis": "Published",
            "Consent-Scopes": "public, research",
        },
    )
    package_id = deposit(services, bag, depositor="Shared Mechanism").package_id
    report = characterise(services)
    assert report.failures == []
    with services.sessions() as s:
        pkg = s.get(Package, package_id)
        assert pkg is not None
        files = {
            f.logical_path: f
            for f in s.execute(select(File).where(File.package_id == package_id)).scalars()
        }
        texts = dict(s.execute(select(ExtractedText.sha512, ExtractedText.outcome)).all())
    # identified: a new version (v2) committed to the bucket, the catalog's head
    assert pkg.head == 2
    obj = services.primary.object(pkg.object_path)
    assert obj.inventory()["head"] == "v2"
    assert services.primary.has_object(package_id)
    assert files["bag/data/report.pdf"].puid and files["bag/data/report.pdf"].puid.startswith(
        "fmt/"
    )
    assert files["bag/data/images/map.bmp"].mime_type == "image/bmp"
    # the stored bytes are the deposited ones
    for name in ("report.pdf", "notes.txt", "images/map.bmp"):
        row = files[f"bag/data/{name}"]
        assert obj.read_bytes(row.content_path) == (bag / "data" / name).read_bytes()
    # text was read from the bucket's copy
    assert texts[files["bag/data/report.pdf"].sha512] == "text"
    assert texts[files["bag/data/notes.txt"].sha512] == "text"
    assert texts[files["bag/data/images/map.bmp"].sha512] == "none"  # never fetched
    # nothing on the host: no object file, no scratch left behind
    assert host_files(tmp_path) == []
    assert staging_debris(services.store.staging) == []
    # the bucket is a storage root holding one whole object
    assert list(services.primary.iter_objects()) == [ocfl.object_rel_path(package_id)]


def test_a_migration_reads_its_originals_from_the_bucket(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    services = s3_primary(make_services, seaweedfs, tmp_path)
    bag = make_bag(tmp_path / "bag", {"images/map.bmp": bmp()})
    package_id = deposit(services, bag, depositor="Shared Mechanism").package_id
    identify_package(services, package_id)
    result = migration.migrate(services, package_id.removeprefix("urn:uuid:")[:8])
    [done] = result.packages
    assert (done.succeeded, done.failed) == (1, 0)
    with services.sessions() as s:
        pkg = s.get(Package, package_id)
        assert pkg is not None
        made = (
            s.execute(select(File).where(File.package_id == package_id, File.version == pkg.head))
            .scalars()
            .all()
        )
    png = [f for f in made if f.logical_path.endswith(".png")]
    assert len(png) == 1
    data = services.primary.object(pkg.object_path).read_bytes(png[0].content_path)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert host_files(tmp_path) == []
    assert staging_debris(services.store.staging) == []


def test_an_orphan_in_the_bucket_is_hidden_when_its_deposit_was_held_meanwhile(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    """Object Lock forbids deleting what an interrupted deposit stored: recovery hides it
    (a delete marker on each key, the declaration first), so it is no object any listing or
    rebuild finds, and says that its versions stay until their retention ends."""
    from archive.catalog.index import remove_package
    from archive.services import open_services
    from tests.conftest import SAMPLE

    services = s3_primary(make_services, seaweedfs, tmp_path)
    lost = deposit(services, SAMPLE, depositor="Recovery Test")
    with services.session_scope() as s:
        remove_package(s, lost.package_id)
    won = deposit(services, SAMPLE, depositor="Recovery Test")
    folder = services.store.staging / "d1"
    folder.mkdir()
    ready = {"kind": "deposit", "state": "ready"}
    (folder / "journal.json").write_text(
        json.dumps({**ready, "deposit_id": lost.deposit_id, "object_id": lost.package_id})
    )
    again = open_services(services.settings)
    try:
        [action] = again.recovered
        assert "nothing was stored twice" in action and "stay, hidden" in action
        assert not again.primary.has_object(lost.package_id)
        assert list(again.primary.iter_objects()) == [ocfl.object_rel_path(won.package_id)]
        third = open_services(services.settings)
        assert third.recovered == []
        third.close()
    finally:
        again.close()


def test_part_of_an_object_another_host_left_in_the_bucket_is_rolled_back(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    from archive.catalog.tables import PendingInstall
    from archive.services import open_services

    services = s3_primary(make_services, seaweedfs, tmp_path)
    object_id = "urn:uuid:00000000-0000-4000-8000-0000000000b1"
    rel = ocfl.object_rel_path(object_id)
    pending_install(services, object_id, "d-b1")
    part = tmp_path / "part.bin"
    part.write_bytes(b"the first file of an object whose host stopped")
    services.primary.put_file(f"{rel}/v1/content/bag/data/a.bin", part)
    again = open_services(services.settings)
    try:
        [action] = again.recovered
        assert "cut short on host-b (process 4242)" in action and "rolled back" in action
        assert "1 hidden until their Object Lock retention ends" in action
        assert list(again.primary.location.iter_keys(rel + "/")) == []
        with again.sessions() as s:
            assert s.query(PendingInstall).count() == 0
    finally:
        again.close()
