"""Small files written into the primary (checkpoints, evidence records, file seals) and files
digested from it: in place by rename into a local primary, put and read back into an S3 one
(SeaweedFS, real, with Object Lock), with no trace left in the host's scratch space."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from archive.errors import StorageError
from archive.services import Services
from archive.storage.replica import ObjectMissing
from tests.conftest import MakeServices
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import s3_settings

KEY = "extensions/custos-custody-log/chain/checkpoint-000000000001.json"


def s3_primary(make_services: MakeServices, tmp_path: Path, server: SeaweedServer) -> Services:
    return make_services(
        storage_root=str(tmp_path / "unused"),
        staging_dir=str(tmp_path / "scratch"),
        locations={"shared": s3_settings(server)},
        primary_location="shared",
    )


@pytest.mark.parametrize("fsync", [True, False])
def test_a_local_primary_writes_in_place(make_services: MakeServices, fsync: bool) -> None:
    services = make_services()
    primary = services.primary
    primary.write_bytes(KEY, b"first\n", fsync=fsync)
    primary.write_bytes(KEY, b"second\n", fsync=fsync)
    target = services.settings.storage_path / KEY
    assert target.read_bytes() == b"second\n"
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no partial file left
    assert primary.read_bytes(KEY) == b"second\n"
    assert primary.digest(KEY).digests["sha512"] == hashlib.sha512(b"second\n").hexdigest()
    with pytest.raises(ObjectMissing):
        primary.digest("extensions/nothing-here")


def test_a_local_primary_that_cannot_be_written_is_named(make_services: MakeServices) -> None:
    services = make_services()
    (services.settings.storage_path / "extensions/custos-custody-log").write_bytes(b"a file")
    with pytest.raises(StorageError, match=r"cannot write .*checkpoint-000000000001\.json"):
        services.primary.write_bytes(KEY, b"x")


def test_an_s3_primary_puts_and_reads_back(
    make_services: MakeServices, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services = s3_primary(make_services, tmp_path, seaweedfs)
    primary = services.primary
    primary.write_bytes(KEY, b"first\n")
    primary.write_bytes(KEY, b"second\n")
    assert primary.read_bytes(KEY) == b"second\n"
    location: Any = primary.location
    assert len(location.versions(KEY)) == 2  # the bucket keeps the first as a version
    assert primary.digest(KEY, ("sha256",)).digests == {
        "sha256": hashlib.sha256(b"second\n").hexdigest()
    }
    assert [p.name for p in (tmp_path / "scratch").iterdir() if p.is_file()] in (
        [],
        [".commit.lock"],
    )
    assert not (tmp_path / "unused").exists() or not any((tmp_path / "unused").rglob("*.json"))
    with pytest.raises(ObjectMissing):
        primary.digest("extensions/nothing-here")


def test_an_s3_primary_without_scratch_space_is_named(
    make_services: MakeServices, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    services = s3_primary(make_services, tmp_path, seaweedfs)
    services.store.staging.rmdir()
    services.store.staging.write_bytes(b"not a folder")
    with pytest.raises(StorageError, match="cannot write to the scratch folder"):
        services.primary.write_bytes(KEY, b"x")
    assert not services.primary.exists(KEY)
