"""`custos storage migrate-primary`: a single host's storage root copied to an S3 bucket while
the archive keeps working, then made the primary; what the catalog says, the seals and the
custody log hold in the bucket, with nothing of the old folder needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from archive.errors import ConfigError
from archive.primary_move import migrate_primary
from archive.proofs.seal import seal_now
from archive.proofs.verify import verify_package
from archive.storage import ocfl
from archive.storage.locations import open_location
from fixity.service import run_cycle
from tests.conftest import SAMPLE, MakeServices
from tests.functional.test_cli import custos
from tests.helpers import deposit, make_bag
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import s3_settings


def test_the_storage_root_moves_to_a_bucket_and_becomes_the_primary(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    shared = s3_settings(seaweedfs)
    services = make_services(locations={"shared": shared})
    first = deposit(services, SAMPLE, depositor="Moving Mechanism")
    seal_now(services)

    report = migrate_primary(services, "shared")
    assert report.objects == 1 and 0 < report.copied <= report.files
    root = services.settings.storage_path
    local = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert len(local) == report.files
    bucket = open_location("shared", services.settings.locations["shared"])
    assert set(bucket.iter_keys()) == local  # every file, the storage root's declaration too
    again = migrate_primary(services, "shared")  # started again: nothing sent twice
    assert again.copied == 0 and again.files == report.files

    # the archive went on meanwhile: a new deposit, then the final run under the lock
    bag = make_bag(tmp_path / "bag", {"later.txt": b"deposited during the move\n"})
    second = deposit(services, bag, depositor="Moving Mechanism")
    seal_now(services)  # the seals, the custody log's checkpoint and its record too
    final = migrate_primary(services, "shared", final=True)
    assert final.objects == 2 and 0 < final.copied < final.files
    assert "primary_location" in final.as_dict()["next"]

    # the switch: the same catalog, the bucket as the primary, the old folder gone
    old_root = services.settings.storage_path
    services.close()
    shutil.rmtree(old_root)
    moved = make_services(
        locations={"shared": shared},
        primary_location="shared",
        storage_root=str(tmp_path / "no-longer-used"),
    )
    assert sorted(moved.primary.iter_objects()) == sorted(
        ocfl.object_rel_path(p) for p in (first.package_id, second.package_id)
    )
    for package_id in (first.package_id, second.package_id):
        assert verify_package(moved, package_id, []).ok
    cycle = run_cycle(moved, full=True)
    assert cycle.ok and cycle.checked > 0 and cycle.damage == []
    obj = moved.primary.object(ocfl.object_rel_path(second.package_id))
    content = ocfl.head_state(obj.inventory())["bag/data/later.txt"]
    assert obj.read_bytes(content) == b"deposited during the move\n"
    code, _, said = custos(moved.settings.data_dir, "audit", "verify", "--json", env=env(shared))
    assert code == 0, said


def env(shared: dict[str, object]) -> dict[str, str]:
    """The settings of the switched archive, for the command line."""
    out = {"CUSTOS_PRIMARY_LOCATION": "shared"}
    for key, value in shared.items():
        out[f"CUSTOS_LOCATIONS__SHARED__{key.upper()}"] = str(value)
    return out


def test_a_move_is_refused_when_it_cannot_be_one(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    services = make_services(locations={"shared": s3_settings(seaweedfs)})
    with pytest.raises(ConfigError, match="no location 'elsewhere'"):
        migrate_primary(services, "elsewhere")
    moved = make_services(
        locations={"shared": s3_settings(seaweedfs)},
        primary_location="shared",
        storage_root=str(tmp_path / "unused"),
    )
    with pytest.raises(ConfigError, match="is the primary already"):
        migrate_primary(moved, "shared")
    code, _, said = custos(moved.settings.data_dir, "storage", "migrate-primary", "--to", "x")
    assert code == 78 and "no location 'x'" in said
