"""Two hosts that share nothing but PostgreSQL, an S3 primary (SeaweedFS, with Object Lock),
Redis and one `custos tsa serve`: host A accepts a deposit through its API; host B's worker
characterises, seals and replicates it, B's fixity run finds no damage, B's `custos serve`
downloads the same bytes, B's `custos verify` and `audit verify` pass; no object file lies in
either host's folders. The same bag deposited on both hosts at once is stored once."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from archive.catalog.tables import Deposit, Package
from archive.config import load_settings
from archive.services import Services, open_services
from tests.conftest import SAMPLE
from tests.e2e.test_one_workflow import DEPOSITOR, ENV, custos, deposit_through_the_api
from tests.e2e.test_tsa_serve import start as start_tsa
from tests.e2e.test_workers import write_config
from tests.servers import (
    PostgresServer,
    RedisServer,
    SeaweedServer,
    free_port,
    wait_until_serving,
)
from tests.unit.fixity.conftest import s3_settings

pytestmark = pytest.mark.slow


class Hosts:
    """Two data folders, each with its settings, sharing the servers."""

    def __init__(self, base: Path, values: dict[str, Any]) -> None:
        self.folders: dict[str, tuple[Path, Path]] = {}
        for name in ("a", "b"):
            folder = base / f"host-{name}"
            folder.mkdir()
            self.folders[name] = (folder / "data", write_config(folder / "custos.toml", values))

    def run(self, host: str, *args: str) -> tuple[int, Any, str]:
        data, config = self.folders[host]
        return custos(data, config, *args)

    def start(
        self, host: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """``custos ARGS`` on ``host`` in a new process (``env``: its environment), its output
        kept for ``communicate()``."""
        data, config = self.folders[host]
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "custos"),
                "--data-dir",
                str(data),
                "--config",
                str(config),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**(env if env is not None else ENV), "CUSTOS_FSYNC": "false"},
        )

    @contextmanager
    def catalog(self) -> Iterator[Session]:
        """A session on the shared catalog, opened without the archive (nothing recovered,
        no storage reached: to look while a server is down)."""
        data, config = self.folders["a"]
        url = load_settings(data_dir=data, config_file=config, environ={}).catalog_url
        engine = create_engine(url)
        try:
            with Session(engine) as session:
                yield session
        finally:
            engine.dispose()

    @contextmanager
    def services(self, host: str) -> Iterator[Services]:
        """``host``'s services, opened without recovering anything (to look, not to act)."""
        data, config = self.folders[host]
        opened = open_services(
            load_settings(data_dir=data, config_file=config, environ={}), recover=False
        )
        try:
            yield opened
        finally:
            opened.close()

    def object_files(self) -> list[Path]:
        """Files of an OCFL object (or of the storage root) in either host's folders."""
        found = []
        for data, _ in self.folders.values():
            storage = data / "storage"
            if storage.exists():
                found += [p for p in storage.rglob("*") if p.is_file()]
        return found


@contextmanager
def two_hosts(
    tmp_path: Path,
    postgres: PostgresServer,
    redis_server: RedisServer,
    seaweedfs: SeaweedServer,
    **extra: Any,
) -> Iterator[Hosts]:
    """Two hosts sharing ``postgres`` (a new database), ``redis_server``, ``seaweedfs`` (the
    primary and a replica location, new buckets) and a new `custos tsa serve`; ``extra``:
    more settings of both."""
    database = postgres.create_database()
    port = free_port()
    tsa = start_tsa(tmp_path / "tsa", port, tmp_path / "tsa.log")
    values: dict[str, Any] = {
        "database_url": postgres.url(database),
        "fsync": False,
        "primary_location": "shared",
        "queue": {
            "backend": "redis",
            "redis_url": redis_server.url,
            "name": database,
            "in_serve": False,
        },
        "tsa": {
            "local": False,
            "urls": [f"http://127.0.0.1:{port}/"],
            "roots": [str(tmp_path / "tsa" / "root.pem")],
        },
        # The replica is never the server a fault test stops: a request that its busy server
        # answers with a 500 ("please try again") is tried again, as a deployment would.
        "locations": {
            "shared": s3_settings(seaweedfs),
            "offsite": s3_settings(seaweedfs, max_attempts=5),
        },
        **extra,
    }
    try:
        yield Hosts(tmp_path, values)
    finally:
        tsa.send_signal(signal.SIGTERM)
        tsa.wait(timeout=30)
        postgres.drop_database(database)


@pytest.fixture
def hosts(
    tmp_path: Path,
    postgres: PostgresServer,
    redis_server: RedisServer,
    seaweedfs: SeaweedServer,
) -> Iterator[Hosts]:
    with two_hosts(tmp_path, postgres, redis_server, seaweedfs) as made:
        yield made


def serve(data: Path, config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "custos"),
                "--data-dir",
                str(data),
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, server, log)
    return server, url


def test_a_deposit_on_one_host_is_kept_by_the_other(hosts: Hosts, tmp_path: Path) -> None:
    data_a, config_a = hosts.folders["a"]
    stored = deposit_through_the_api(data_a, config_a, SAMPLE, tmp_path)
    assert stored["state"] == "stored"
    package_id = stored["package_id"]

    code, ran, said = hosts.run("b", "worker", "--until-idle", "--json")
    assert code == 0, said
    assert ran["failed"] == []
    assert {r["job"] for r in ran["ran"]} >= {"characterise", "seal", "replicate"}
    code, st, said = hosts.run("b", "status", "--json")
    assert code == 0, said
    assert st["characterisation"]["files_awaiting_identification"] == 0
    assert st["seal_backlog"]["pending"] == 0
    assert st["replication"]["safely_stored"] == st["replication"]["packages"] == 1

    code, checked, said = hosts.run("b", "fixity", "run", "--all", "--json")
    assert code == 0, said
    assert checked["checked"] > 0 and checked["damage"] == [] and checked["repairs"] == []

    for host in ("a", "b"):
        code, _, said = hosts.run(host, "verify", package_id, "--json")
        assert code == 0, said
        code, _, said = hosts.run(host, "audit", "verify", "--json")
        assert code == 0, said

    data_b, config_b = hosts.folders["b"]
    server, url = serve(data_b, config_b, tmp_path / "serve-b.log")
    try:
        uuid = package_id.removeprefix("urn:uuid:")
        files = sorted(p for p in (SAMPLE / "data").rglob("*") if p.is_file())
        assert len(files) > 1
        closed = "data/documents/transfer-letter.txt"  # restricted (custos-access.txt)
        for path in files:
            rel = path.relative_to(SAMPLE).as_posix()
            r = httpx.get(f"{url}/public/packages/{uuid}/files/{rel}", timeout=60)
            if rel == closed:
                assert r.status_code == 404  # the public is never given it, from any host
                continue
            assert r.status_code == 200, r.text
            expected = path.read_bytes()
            assert r.content == expected
            assert r.headers["X-Custos-SHA512"] == hashlib.sha512(expected).hexdigest()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    assert hosts.object_files() == []


def test_the_same_bag_on_both_hosts_at_once_is_stored_once(hosts: Hosts) -> None:
    args = ("ingest", str(SAMPLE), "--depositor", DEPOSITOR, "--new-depositor", "--json")
    hosts.run("a", "depositors", "add", DEPOSITOR, "--json")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda h: hosts.run(h, *args), ("a", "b")))
    for code, _, said in results:
        assert code == 0, said
    states = sorted(body["status"] for _, body, _ in results)
    assert states == ["already-held", "stored"]
    data, config = hosts.folders["a"]
    services = open_services(load_settings(data_dir=data, config_file=config, environ={}))
    try:
        with services.sessions() as s:
            assert s.execute(select(func.count()).select_from(Package)).scalar_one() == 1
            assert s.execute(select(func.count()).select_from(Deposit)).scalar_one() == 1
        assert len(list(services.primary.iter_objects())) == 1  # no orphan in the bucket
    finally:
        services.close()
    # both hosts stay usable
    for host in ("a", "b"):
        code, _, said = hosts.run(host, "status", "--json")
        assert code == 0, said
    assert hosts.object_files() == []
