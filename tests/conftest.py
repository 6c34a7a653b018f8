"""Shared fixtures: settings in a temporary data folder, SQLite and a real PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from archive.config import Settings, load_settings
from archive.services import Services, open_services
from tests.servers import (
    PostgresServer,
    RedisServer,
    SeaweedServer,
    start_postgres,
    start_redis,
    start_seaweedfs,
)
from tests.totp import CLOCK, TotpClock

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "data" / "bagit-conformance"
SHARED_CORPORA = ROOT.parent / "shared" / "corpora"
SAMPLE = ROOT / "samples" / "sample-holding"


@pytest.fixture(autouse=True)
def totp_clock(monkeypatch: pytest.MonkeyPatch) -> TotpClock:
    """The server checks TOTP codes at :data:`tests.totp.CLOCK`'s time (real time
    until a test asks for a fresh code), so tests need not wait 30 seconds per request."""
    monkeypatch.setattr("access.accounts.totp.clock", CLOCK)
    return CLOCK


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = start_postgres(Path("/tmp") / "custos-tests")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty catalog database: SQLite in the data folder, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


MakeSettings = Callable[..., Settings]
MakeServices = Callable[..., Services]


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    def make(catalog: str = "", **overrides: Any) -> Settings:
        values: dict[str, Any] = {"fsync": False, **overrides}
        if catalog:
            values["database_url"] = catalog
        return load_settings(data_dir=tmp_path / "data", environ={}, overrides=values)

    return make


@pytest.fixture
def make_services(make_settings: MakeSettings) -> Iterator[MakeServices]:
    opened: list[Services] = []

    def make(catalog: str = "", **overrides: Any) -> Services:
        services = open_services(make_settings(catalog, **overrides))
        opened.append(services)
        return services

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def services(make_services: MakeServices) -> Services:
    return make_services()


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedServer]:
    """A real S3 server with Object Lock (SeaweedFS `weed mini`) on 127.0.0.1, for the session."""
    server = start_seaweedfs(Path("/tmp") / "custos-tests")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis (Debian's redis-server) on 127.0.0.1, for the session."""
    server = start_redis(Path("/tmp") / "custos-tests")
    try:
        yield server
    finally:
        server.stop()


BC_JARS = [Path("/usr/share/java") / j for j in ("bcprov.jar", "bcpkix.jar", "bcutil.jar")]


@pytest.fixture(scope="session")
def bouncycastle(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs tests/ers/ErsCheck.java (compiled once) against BouncyCastle, an
    RFC 4998 implementation that is not ours: ``[*bouncycastle, RECORD, DOCUMENT]``."""
    missing = [str(j) for j in BC_JARS if not j.exists()]
    assert not missing, f"{missing} absent: `make test` installs Debian's libbcpkix-java"
    out = tmp_path_factory.mktemp("ers-check")
    classpath = ":".join(str(j) for j in BC_JARS)
    source = Path(__file__).resolve().parent / "ers" / "ErsCheck.java"
    subprocess.run(["javac", "-cp", classpath, "-d", str(out), str(source)], check=True)
    return ["java", "-cp", f"{classpath}:{out}", "ErsCheck"]
