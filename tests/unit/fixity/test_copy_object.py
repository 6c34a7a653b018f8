"""The one copier of OCFL objects to replica locations (``fixity.replication``), run through
``replicate`` on a folder and on S3 with Object Lock (real SeaweedFS): every file of the
object arrives and reads back intact, the root inventory is written last (a replica holding it
is complete), the location is an OCFL storage root, and what the catalog does not vouch for is
never spread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ocfl.storage_root import StorageRoot
from sqlalchemy import func, select

from archive.catalog.tables import Event, File, Package, Replica
from archive.services import Services
from archive.storage import ocfl
from archive.storage.locations import open_location
from archive.storage.readback import read_back
from archive.storage.replica import LocalFolderLocation, ReplicaLocation, prepare_storage_root
from archive.storage.s3 import S3Location
from fixity.replication import replicate
from tests.conftest import SAMPLE
from tests.helpers import deposit
from tests.unit.fixity.conftest import ArchiveFactory, local_settings, s3_settings

KINDS = ["local", "s3"]
NAME = "replica"


@pytest.fixture(params=KINDS)
def copier(
    request: pytest.FixtureRequest, archive: ArchiveFactory, tmp_path: Path
) -> tuple[Services, ReplicaLocation]:
    """An archive with one replica location (a folder, or an S3 bucket) holding the sample
    holding, not replicated yet; and that location, opened as the copier opens it."""
    if request.param == "local":
        entry = local_settings(tmp_path / "replica")
    else:
        entry = s3_settings(request.getfixturevalue("seaweedfs"))
    services = archive(**{NAME: entry})
    deposit(services, SAMPLE, depositor="Sample Closing Mechanism")
    return services, open_location(NAME, services.settings.locations[NAME])


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys every location is asked to put, in order."""
    written: list[str] = []
    for cls in (LocalFolderLocation, S3Location):
        original: Callable[..., Any] = cls.put

        def put(self: Any, key: str, *args: Any, _orig: Any = original, **kw: Any) -> Any:
            written.append(key)
            return _orig(self, key, *args, **kw)

        monkeypatch.setattr(cls, "put", put)
    return written


def the_package(services: Services) -> tuple[str, str, Path]:
    """(package id, object path, object root) of the one package held."""
    with services.sessions() as s:
        pid, rel = s.execute(select(Package.id, Package.object_path)).one()
    return pid, rel, services.store.object_root(rel)


def object_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def replica_rows(services: Services) -> int:
    with services.sessions() as s:
        return s.execute(select(func.count()).select_from(Replica)).scalar_one()


def test_every_file_is_copied_and_read_back_root_inventory_last(
    copier: tuple[Services, ReplicaLocation], puts: list[str]
) -> None:
    services, location = copier
    _, rel, root = the_package(services)
    report = replicate(services)
    assert report.ok, report.as_dict()
    written = [k for k in puts if k.startswith(f"{rel}/")]
    assert written[-2:] == [f"{rel}/{ocfl.ROOT_SIDECAR}", f"{rel}/{ocfl.ROOT_INVENTORY}"]
    assert sorted(written) == [f"{rel}/{f}" for f in object_files(root)]
    assert sorted(location.iter_keys(f"{rel}/")) == sorted(written)
    # The location was declared an OCFL storage root (before the object), once.
    assert set(ocfl.storage_root_files()) <= set(puts[: puts.index(written[0])])
    assert prepare_storage_root(location) == []
    if isinstance(location, S3Location):
        for key in written:
            info = location.stat(key)
            assert info is not None and info.version_id and info.lock_mode == "COMPLIANCE"
    # Every copy reads back intact against the inventory's own digests (sha512 + sha256).
    inventory = ocfl.read_inventory(root)
    fixity = {p: d for d, paths in inventory["fixity"]["sha256"].items() for p in paths}
    for sha512, paths in inventory["manifest"].items():
        for path in paths:
            size = (root / path).stat().st_size
            check = read_back(
                location, f"{rel}/{path}", sha512=sha512, sha256=fixity[path], size=size
            )
            assert check.ok, check.describe()
    if isinstance(location, LocalFolderLocation):  # an independent OCFL validator agrees
        sr = StorageRoot(root=str(location.root))
        assert sr.validate(validate_objects=True, check_digests=True), str(sr.log)
        assert sr.num_objects == sr.good_objects == 1


def test_a_catalog_that_disagrees_with_the_object_stops_the_copy_before_any_write(
    copier: tuple[Services, ReplicaLocation], puts: list[str]
) -> None:
    """A file the catalog lists and the primary object lacks: nothing of the object is
    written, nothing is recorded as stored."""
    services, location = copier
    pid, rel, root = the_package(services)
    with services.sessions() as s:
        gone = (
            s.execute(
                select(File.content_path).where(File.package_id == pid).order_by(File.content_path)
            )
            .scalars()
            .first()
        )
    (root / str(gone)).unlink()
    report = replicate(services)
    assert not report.ok
    ((package, where, why),) = report.failures
    assert (package, where) == (pid, NAME)
    assert f"lacks 1 file(s) the catalog lists, e.g. {gone}" in why
    assert not [k for k in puts if k.startswith(f"{rel}/")]
    assert list(location.iter_keys(f"{rel}/")) == []
    assert replica_rows(services) == 0


def test_a_file_changed_since_ingest_is_never_spread(
    copier: tuple[Services, ReplicaLocation],
) -> None:
    """A content file damaged on the primary is refused by the location (a folder digests
    what it writes; S3 checks the sha256 sent with the bytes); the replica gets no root
    inventory, so it never looks complete, and nothing is recorded as stored."""
    services, location = copier
    _, rel, root = the_package(services)
    payload = sorted(p for p in object_files(root) if "/content/bag/data/" in p)[0]
    target = root / payload
    target.write_bytes(target.read_bytes() + b"tampered")
    report = replicate(services)
    assert not report.ok
    ((_, where, why),) = report.failures
    assert where == NAME and f"{rel}/{payload}" in why and "nothing was stored" in why, why
    assert location.stat(f"{rel}/{payload}") is None
    assert location.stat(f"{rel}/{ocfl.ROOT_INVENTORY}") is None
    assert replica_rows(services) == 0
    with services.sessions() as s:
        outcomes = s.execute(select(Event.outcome).where(Event.type == "replication")).all()
    assert [o for (o,) in outcomes] == ["failure"]
