"""The primary copy behind the location interface: a local storage root, or an S3 bucket that
several hosts share (SeaweedFS, real, with Object Lock)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from archive.errors import ConfigError, StorageError
from archive.storage import ocfl
from tests.conftest import MakeServices, MakeSettings
from tests.helpers import deposit, make_bag
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import s3_settings


def stored_object(make_services: MakeServices, tmp_path: Path) -> tuple[str, Path]:
    """A package ingested into a local archive: its id and object folder."""
    local = make_services()
    bag = make_bag(tmp_path / "bag", {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 40})
    result = deposit(local, bag, depositor="Mechanism")
    pkg = result.package_id
    assert local.primary.is_local and local.primary.root is not None
    return pkg, local.primary.root / ocfl.object_rel_path(pkg)


def test_the_embedded_default_is_the_local_storage_root(make_services: MakeServices) -> None:
    services = make_services()
    assert services.primary.is_local
    assert services.primary.root == services.settings.storage_path
    assert services.primary.uri == services.settings.storage_path.as_uri()


def test_an_s3_primary_holds_whole_objects_only(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    pkg, folder = stored_object(make_services, tmp_path)
    services = make_services(
        storage_root=str(tmp_path / "other-storage"),
        staging_dir=str(tmp_path / "scratch"),
        locations={"shared": s3_settings(seaweedfs)},
        primary_location="shared",
    )
    primary = services.primary
    assert not primary.is_local and primary.uri.startswith("s3://")
    assert primary.exists(ocfl.ROOT_NAMASTE)  # a storage root any OCFL tool reads
    staged = tmp_path / "scratch" / "build"
    shutil.copytree(folder, staged)
    rel = primary.install(staged, pkg)
    assert rel == ocfl.object_rel_path(pkg)
    assert primary.has_object(pkg)
    assert list(primary.iter_objects()) == [rel]
    obj = primary.object(rel)
    assert obj.inventory() == ocfl.read_inventory(folder)
    assert obj.inventory("v1") == ocfl.read_inventory(folder, "v1")
    content = ocfl.head_state(obj.inventory())["bag/data/sub/b.bin"]
    assert obj.read_bytes(content) == (folder / content).read_bytes()
    assert sorted(obj.iter_files()) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
    )
    assert obj.local_path(content) is None  # no path into the bucket
    # a second install of the same object is refused, and changes nothing
    with pytest.raises(StorageError, match="already exists"):
        primary.install(staged, pkg)
    # an install cut short (no declaration yet) is no object
    other = "urn:uuid:00000000-0000-4000-8000-000000000001"
    half = ocfl.object_rel_path(other)
    primary.put_file(f"{half}/v1/content/data/a.txt", folder / content)
    assert not primary.has_object(other)
    assert list(primary.iter_objects()) == [rel]
    # Object Lock keeps it: hidden behind a delete marker, its version stays
    assert primary.remove_partial(other) == (0, 1)
    assert list(primary.location.iter_keys(half + "/")) == []
    with pytest.raises(StorageError, match="whole object"):
        primary.remove_partial(pkg)


def test_a_damaged_inventory_is_named(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    pkg, folder = stored_object(make_services, tmp_path)
    services = make_services(
        storage_root=str(tmp_path / "other-storage"),
        staging_dir=str(tmp_path / "scratch"),
        locations={"shared": s3_settings(seaweedfs)},
        primary_location="shared",
    )
    staged = tmp_path / "scratch" / "build"
    shutil.copytree(folder, staged)
    (staged / "inventory.json.sha512").write_text("0" * 128 + "  inventory.json\n")
    rel = services.primary.install(staged, pkg)
    with pytest.raises(StorageError, match=r"primary:.*inventory.json does not match"):
        services.primary.object(rel).inventory()


def test_primary_location_must_name_a_location(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError, match="primary_location names 'elsewhere'"):
        make_settings(primary_location="elsewhere")


def test_the_primary_is_no_replica_target(
    make_settings: MakeSettings, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    settings = make_settings(
        locations={"shared": s3_settings(seaweedfs), "offsite": s3_settings(seaweedfs)},
        primary_location="shared",
    )
    assert list(settings.replica_locations) == ["offsite"]
