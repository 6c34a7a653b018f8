"""A disk that fills (or turns read-only) during a deposit is the storage's failure, never the
depositor's: exit 74 and HTTP 507 (503 read-only) naming the staging folder, no finding
against the bag, no traceback, and nothing left behind (staging emptied, no object, no
catalog row, no journal).

Staging and the storage root are put on a real filesystem of 2 MiB (tmpfs), mounted for each
test; the bags are bigger than that."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.app import create_app
from archive.catalog.tables import Upload
from archive.cli import get_app
from archive.depositors import register
from archive.services import Services
from tests.api_support import make_users
from tests.conftest import MakeServices
from tests.helpers import catalog_counts, make_bag, staging_debris, tar_folder, zip_folder

DISK = 2 * 1024 * 1024
MIB = 1024 * 1024
MS_RDONLY, MS_REMOUNT, MNT_DETACH = 1, 32, 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount(target: Path, flags: int = 0) -> int:
    """mount(2) a tmpfs of :data:`DISK` bytes at ``target``; the errno, or 0."""
    done = _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, f"size={DISK}".encode())
    return 0 if done == 0 else ctypes.get_errno()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 2 MiB, for staging and the storage root of the archive."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    refused = _mount(mount)
    if refused == errno.EPERM:
        pytest.skip("mount(2) refused with EPERM: a tmpfs needs root (or CAP_SYS_ADMIN)")
    assert refused == 0, os.strerror(refused)
    try:
        yield mount
    finally:
        if _libc.umount2(os.fsencode(mount), 0) != 0:
            assert _libc.umount2(os.fsencode(mount), MNT_DETACH) == 0
        shutil.rmtree(mount, ignore_errors=True)


def read_only(mount: Path) -> None:
    assert _mount(mount, MS_REMOUNT | MS_RDONLY) == 0


def on_disk(mount: Path) -> dict[str, str]:
    return {"storage_root": str(mount / "storage"), "staging_dir": str(mount / "staging")}


def state(services: Services, mount: Path) -> tuple[dict[str, int], int]:
    """The catalog's rows (uploads too) and the bytes used on the disk."""
    with services.sessions() as session:
        uploads = session.scalar(select(func.count()).select_from(Upload)) or 0
    return {**catalog_counts(services), "uploads": uploads}, shutil.disk_usage(mount).used


def assert_nothing_left(
    services: Services, mount: Path, before: tuple[dict[str, int], int]
) -> None:
    """Staging empty (no journal, ready or not), no object, not one catalog row more (not
    even an event: nothing was refused), and the disk's space given back."""
    assert staging_debris(services.store.staging) == []
    assert list(services.store.iter_objects()) == []
    rows, space = state(services, mount)
    assert rows == before[0] and space <= before[1]


def random_bytes(n: int, seed: str) -> bytes:
    """``n`` bytes that no compressor shrinks (so that a packed bag is as big unpacked)."""
    out, block = bytearray(), hashlib.sha512(seed.encode()).digest()
    while len(out) < n:
        block = hashlib.sha512(block).digest()
        out += block
    return bytes(out[:n])


def small_files(tmp: Path) -> Path:
    return make_bag(
        tmp / "small", {f"f{i:02}.bin": random_bytes(100_000, str(i)) for i in range(40)}
    )


def many_small_files(tmp: Path) -> Path:
    """Enough files that worker processes copy them (ingest.folder.PROCESS_THRESHOLD)."""
    return make_bag(tmp / "many", {f"d{i % 20}/f{i}.txt": b"x" * 1000 for i in range(2100)})


def one_large_file(tmp: Path) -> Path:
    """A file of 9 MiB: copied with its digests on threads (archive.digest.PARALLEL_THRESHOLD)."""
    return make_bag(tmp / "large", {"scan.tif": random_bytes(9 * MIB, "large")})


BAGS: dict[str, Callable[[Path], Path]] = {
    "small files": small_files,
    "many small files": many_small_files,
    "one file of 9 MiB": one_large_file,
    "zip": lambda tmp: zip_folder(small_files(tmp), tmp / "small.zip"),
    "zip with a file of 9 MiB": lambda tmp: zip_folder(one_large_file(tmp), tmp / "large.zip"),
    "tar.gz": lambda tmp: tar_folder(small_files(tmp), tmp / "small.tar.gz"),
}


DEPOSITOR = "Mechanism"


def registered(services: Services) -> Services:
    """The services, with the depositor of :func:`custos_ingest` registered."""
    with services.session_scope() as session:
        register(session, DEPOSITOR)
    return services


def custos_ingest(data: Path, bag: Path, mount: Path) -> tuple[int, dict[str, Any], str]:
    env = {
        "CUSTOS_FSYNC": "false",
        "CUSTOS_STORAGE_ROOT": str(mount / "storage"),
        "CUSTOS_STAGING_DIR": str(mount / "staging"),
    }
    result = CliRunner().invoke(
        get_app(),
        [
            "--data-dir",
            str(data),
            "ingest",
            str(bag),
            "--depositor",
            DEPOSITOR,
            "--json",
        ],
        env=env,
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, json.loads(result.stdout), result.stderr


@pytest.mark.parametrize("kind", list(BAGS))
def test_a_disk_that_fills_during_ingest_is_a_storage_failure(
    make_services: MakeServices, small_disk: Path, tmp_path: Path, kind: str
) -> None:
    bag = BAGS[kind](tmp_path)
    services = registered(make_services(**on_disk(small_disk)))
    before = state(services, small_disk)
    code, body, stderr = custos_ingest(services.settings.data_dir, bag, small_disk)
    assert code == 74, body
    assert body["status"] == "error" and body["error"] == "StorageFull"
    assert "findings" not in body  # no finding against the bag
    staging = str(services.store.staging)
    assert staging in body["message"] and "ENOSPC" in body["message"]
    assert "not at fault" in body["message"] and "free space" in body["hint"]
    assert "Traceback" not in stderr and staging in "".join(stderr.split())  # wrapped anywhere
    assert_nothing_left(services, small_disk, before)


def test_a_read_only_disk_is_a_storage_failure(
    make_services: MakeServices, small_disk: Path, tmp_path: Path
) -> None:
    services = registered(make_services(**on_disk(small_disk)))
    before = state(services, small_disk)
    read_only(small_disk)
    code, body, stderr = custos_ingest(
        services.settings.data_dir, small_files(tmp_path), small_disk
    )
    assert code == 74, body
    assert body["error"] == "StorageError" and "EROFS" in body["message"]
    assert str(services.store.staging) in body["message"] and "findings" not in body
    assert "read-only" in body["hint"] and "Traceback" not in stderr
    assert_nothing_left(services, small_disk, before)


@pytest.fixture
def depositor(
    make_services: MakeServices, small_disk: Path
) -> Iterator[tuple[Services, TestClient, dict[str, str]]]:
    services = make_services(**on_disk(small_disk))
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, users.bearer("depositor")


def put_deposit(client: TestClient, headers: dict[str, str], archive: Path) -> Any:
    data = archive.read_bytes()
    return client.put(
        "/deposits",
        params={"filename": archive.name},
        content=data,
        headers={**headers, "X-Custos-Checksum": f"sha256:{hashlib.sha256(data).hexdigest()}"},
    )


@pytest.mark.parametrize(
    ("upload_size", "where"),
    [(3 * MIB, "the upload itself"), (1200 * 1024, "unpacking the upload")],
)
def test_a_deposit_through_the_api_on_a_full_disk_is_refused_with_507(
    depositor: tuple[Services, TestClient, dict[str, str]],
    small_disk: Path,
    tmp_path: Path,
    upload_size: int,
    where: str,
) -> None:
    """3 MiB fill the disk while the upload is written; 1.2 MiB fit, but not unpacked
    beside it."""
    services, client, headers = depositor
    bag = make_bag(tmp_path / "bag", {"scan.tif": random_bytes(upload_size, where)})
    archive = zip_folder(bag, tmp_path / "bag.zip")
    before = state(services, small_disk)
    r = put_deposit(client, headers, archive)
    assert r.status_code == 507, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "StorageFull" and "findings" not in problem
    assert str(services.store.staging) in problem["detail"] and "ENOSPC" in problem["detail"]
    assert problem["hint"]
    assert_nothing_left(services, small_disk, before)


def test_a_deposit_through_the_api_on_a_read_only_disk_is_refused_with_503(
    depositor: tuple[Services, TestClient, dict[str, str]], small_disk: Path, tmp_path: Path
) -> None:
    services, client, headers = depositor
    before = state(services, small_disk)
    read_only(small_disk)
    archive = zip_folder(small_files(tmp_path), tmp_path / "bag.zip")
    r = put_deposit(client, headers, archive)
    assert r.status_code == 503, r.text
    problem = r.json()
    assert problem["code"] == "StorageError" and "EROFS" in problem["detail"]
    assert str(services.store.staging) in problem["detail"] and "findings" not in problem
    assert_nothing_left(services, small_disk, before)
