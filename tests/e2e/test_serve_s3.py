"""`custos serve` for real on an archive whose primary copy is an S3 bucket (SeaweedFS with
Object Lock): a large public file is streamed from the bucket, never held in memory, and a
copy that changed in the bucket breaks the transfer instead of completing it. The server is
stopped by its PID."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from archive.catalog.tables import Package
from archive.config import load_settings
from archive.services import open_services
from archive.storage import ocfl
from tests.e2e.test_serve import custos_bin
from tests.helpers import deposit, make_bag
from tests.servers import SeaweedServer, free_port, wait_until_serving
from tests.unit.fixity.conftest import s3_settings

SIZE = 48 * 1024 * 1024
PUBLIC = {
    "Access-Tier": "public",
    "Access-Legal-Basis": "published by the depositor",
    "Consent-Scopes": "public, research",
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, tmp: Path, location: dict[str, Any]) -> Path:
    lines = [
        f"storage_root = {_toml(tmp / 'unused')}",
        f"staging_dir = {_toml(tmp / 'scratch')}",
        'primary_location = "shared"',
        "fsync = false",
        "",
        "[locations.shared]",
        *(f"{k} = {_toml(v)}" for k, v in location.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def peak_memory_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_file_streams_from_an_s3_primary(seaweedfs: SeaweedServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "custos.toml", tmp_path, s3_settings(seaweedfs))
    data = tmp_path / "data"
    content = os.urandom(SIZE)
    bag = make_bag(tmp_path / "bag", {"film-reel.bin": content}, info=PUBLIC)
    services = open_services(load_settings(data_dir=data, config_file=config, environ={}))
    try:
        assert not services.primary.is_local
        package = deposit(services, bag, depositor="Sample Mechanism").package_id
        with services.sessions() as session:
            pkg = session.get(Package, package)
            assert pkg is not None
            rel = pkg.object_path
        stored = ocfl.head_state(services.primary.object(rel).inventory())["bag/data/film-reel.bin"]
        port = free_port()
        log = tmp_path / "server.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(custos_bin()), "--data-dir", str(data), "--config", str(config), "serve",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}/public/packages/{package.removeprefix('urn:uuid:')}"
        url += "/files/data/film-reel.bin"
        try:
            wait_until_serving(f"http://127.0.0.1:{port}", process, log)
            before = peak_memory_kib(process.pid)
            digest, size = hashlib.sha512(), 0
            with httpx.stream("GET", url, timeout=120) as r:
                assert r.status_code == 200
                assert r.headers["content-length"] == str(SIZE)
                assert r.headers["x-custos-sha512"] == hashlib.sha512(content).hexdigest()
                for chunk in r.iter_raw():
                    digest.update(chunk)
                    size += len(chunk)
            assert size == SIZE and digest.hexdigest() == hashlib.sha512(content).hexdigest()
            grown_mib = (peak_memory_kib(process.pid) - before) / 1024
            assert grown_mib < SIZE / 1024 / 1024 / 3, f"peak memory grew by {grown_mib:.0f} MiB"
            # The copy in the bucket changes (a later version of its key): the transfer breaks.
            altered = bytearray(content)
            altered[SIZE // 2] ^= 1
            source = tmp_path / "altered"
            source.write_bytes(altered)
            services.primary.location.put(
                f"{rel}/{stored}",
                source,
                sha256=hashlib.sha256(altered).hexdigest(),
                sha512=hashlib.sha512(altered).hexdigest(),
            )
            received = 0
            with (
                pytest.raises(httpx.RemoteProtocolError),
                httpx.stream("GET", url, timeout=120) as r,
            ):
                assert r.status_code == 200
                for chunk in r.iter_raw():
                    received += len(chunk)
            assert received < SIZE
            assert process.poll() is None  # the server goes on serving
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        said = log.read_text(errors="replace")
        assert "does not match the catalog" in said and "film-reel" not in said
        # No version of the object is under storage_root (what the seal writes there is the
        # proofs' change to make: archive/proofs).
        assert not (tmp_path / "unused" / rel / "v1").exists()
        assert not (tmp_path / "unused" / rel / "inventory.json").exists()
    finally:
        services.close()
