"""Start-up of the command line, kept fast by what it imports (never by a timing threshold):
`custos --help` and `custos status` are run in a new interpreter under ``python -X importtime``
and the packages they imported are compared with those they have no use for.

`bench/cli_start.py` measures the times themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Packages no start-up needs: the API server, the PDF signer, S3, password hashing, the
# migration framework, the job queue and its clients (status asks huey, see below).
SERVER_AND_ADAPTERS = {
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "pyhanko",
    "boto3",
    "botocore",
    "argon2",
    "alembic",
}
# What the services of the function packages bring: the catalog, the settings' validation,
# the proofs (ASN.1, X.509), BagIt, the job queue.
SERVICES = {"sqlalchemy", "pydantic", "asn1crypto", "cryptography", "bagit", "huey"}
FUNCTION_PACKAGES = {"ingest", "access", "fixity", "migration", "api"}


def imported(code: str, *args: str) -> set[str]:
    """The top-level packages a new interpreter imports running ``code`` with ``args``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CUSTOS_FSYNC": "false"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def custos(*args: str) -> set[str]:
    """What `custos ARGS` imports (as the console script runs it)."""
    code = "import sys; from archive.cli import main; sys.argv = ['custos', *sys.argv[1:]]; main()"
    return imported(code, *args)


def test_help_loads_no_server_nor_adapter() -> None:
    modules = custos("--help")
    assert "archive" in modules  # the measure sees the project's own imports
    assert modules & (SERVER_AND_ADAPTERS | {"redis", "psycopg"}) == set()


def test_help_loads_no_service() -> None:
    assert custos("--help") & SERVICES == set()


def test_a_sub_app_help_loads_no_service() -> None:
    """`custos depositors --help` lists its commands without the registry (the catalog):
    Typer's reading of the root's options loads pydantic for any command, nothing more."""
    assert custos("depositors", "--help") & SERVICES == {"pydantic"}


def test_status_loads_no_function_package_nor_server(tmp_path: Path) -> None:
    """A core command does not load the sub-apps (see ``archive.cli.shell._RootGroup``), and a
    catalog at the newest schema is opened without Alembic. The catalog and the settings are
    status's own work; the seal backlog is read without the proofs (ASN.1, X.509), and the
    queued work is counted in the catalog's outbox, without huey (nor redis, nor psycopg)."""
    data = str(tmp_path / "data")
    custos("--data-dir", data, "status")  # makes the catalog (this run upgrades: Alembic)
    modules = custos("--data-dir", data, "status")
    assert {"sqlalchemy", "archive"} <= modules
    assert modules & (SERVER_AND_ADAPTERS | FUNCTION_PACKAGES) == set()
    assert modules & {"asn1crypto", "cryptography", "huey", "redis", "psycopg"} == set()


@pytest.mark.parametrize(
    "module",
    [
        "access.cli",
        "fixity.cli",
        "migration.cli",
        "api.cli",
        "ingest.cli",
    ],
)
def test_a_sub_app_loads_without_its_services(module: str) -> None:
    """Listing the commands (`custos --help`) loads every sub-app: each imports its services
    in the commands that call them."""
    before = imported("import archive.cli")
    after = imported(f"import archive.cli, {module}")
    assert after - before & (SERVICES | SERVER_AND_ADAPTERS) == set()
