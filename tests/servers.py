"""Real servers for the tests, started on 127.0.0.1 in temporary folders and stopped by PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

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
