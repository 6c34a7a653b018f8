"""Fixity through the archivists' API, on SQLite and PostgreSQL: status (coverage, oldest
check, damage outstanding, unrecoverable copies) and the auditor's report as JSON and CSV,
with the same numbers as `custos fixity status` and `custos fixity report`; every other role
(and no token) gets nothing."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from api.app import create_app
from archive.catalog.tables import File, Package
from archive.cli import get_app
from archive.config import PRIMARY_LOCATION
from archive.services import Services
from archive.storage.replica import LocalFolderLocation
from fixity.service import run_cycle
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import deposit
from tests.unit.fixity.faults import inject

Held = tuple[Services, TestClient, Users, str]


@pytest.fixture
def held(make_services: MakeServices, catalog_url: str) -> Iterator[Held]:
    services = make_services(catalog_url, identify_formats=False)
    result = deposit(services, SAMPLE, depositor="Sample Mechanism")
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, users, result.package_id


def cli_json(services: Services, *args: str) -> dict[str, Any]:
    """``custos … --json`` on the same data folder and catalog."""
    url = services.settings.database_url
    result = CliRunner().invoke(
        get_app(),
        ["--data-dir", str(services.settings.data_dir), *args, "--json"],
        env={"CUSTOS_FSYNC": "false", **({"CUSTOS_DATABASE_URL": url} if url else {})},
    )
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def test_archivist_gets_fixity_status_and_report_with_the_cli_numbers(held: Held) -> None:
    services, client, users, pid = held
    headers = users.bearer("archivist")
    before = client.get("/archivist/fixity", headers=headers)
    assert before.status_code == 200
    assert before.json()["copies_tracked"] == 0 and before.json()["oldest_check"] is None

    first = run_cycle(services, full=True)
    assert first.ok and first.checked > 0
    # no good copy left: one payload file damaged in the only copy
    with services.sessions() as s:
        obj, path, sha512 = s.execute(
            select(Package.object_path, File.content_path, File.sha512)
            .join(File, File.package_id == Package.id)
            .where(Package.id == pid, File.role == "payload")
            .order_by(File.content_path)
        ).first()  # type: ignore[misc]
    primary = LocalFolderLocation(PRIMARY_LOCATION, services.store.root, fsync=False)
    inject(primary, f"{obj}/{path}", "flip", random.Random(2), None)
    second = run_cycle(services, full=True)
    assert len(second.unrecoverable) == 1

    status = client.get("/archivist/fixity", headers=headers).json()
    assert status["copies_tracked"] == first.checked
    assert status["damage_outstanding"] == 1 and status["oldest_check"] is not None
    assert status["unrecoverable"] == [
        {
            "package_id": pid,
            "location": PRIMARY_LOCATION,
            "kind": "content",
            "file": f"sha512:{sha512}",
            "last_checked_at": status["unrecoverable"][0]["last_checked_at"],
        }
    ]
    assert path not in str(status)  # a content file by its digest, never its path
    cli_status = cli_json(services, "fixity", "status")
    cli_status.pop("status")
    assert status == cli_status

    report = client.get("/archivist/fixity/report", headers=headers).json()
    cli_report = cli_json(services, "fixity", "report")
    assert report["rows"] == cli_report["rows"]
    assert report["coverage_over_time"] == cli_report["coverage_over_time"]
    rows = report["rows"]
    assert {r["location"] for r in rows} == {PRIMARY_LOCATION}
    assert len({r["tier"] for r in rows}) > 1  # the sample's files have their own tiers
    assert sum(r["files_checked"] for r in rows) == 2 * first.checked
    assert sum(r["copies"] for r in rows) == first.checked
    assert sum(r["failures"] for r in rows) == 1 and sum(r["unrecoverable"] for r in rows) == 1

    r = client.get("/archivist/fixity/report.csv", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [
        (x["location"], x["tier"], int(x["files_checked"]), int(x["failures"])) for x in table
    ] == [(x["location"], x["tier"], x["files_checked"], x["failures"]) for x in rows]
    out = services.settings.data_dir / "report.csv"
    cli_json(services, "fixity", "report", "--csv", str(out))
    assert out.read_bytes() == r.content

    # since a day after every check: nothing checked since, copies still counted
    later = client.get("/archivist/fixity/report", params={"since": "2999-01-01"}, headers=headers)
    assert later.status_code == 200
    assert [x["files_checked"] for x in later.json()["rows"]] == [0] * len(rows)
    assert [x["copies"] for x in later.json()["rows"]] == [x["copies"] for x in rows]
    bad = client.get("/archivist/fixity/report", params={"since": "yesterday"}, headers=headers)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("role", ["researcher", "depositor", "registrar", None])
def test_no_one_else_gets_fixity(held: Held, role: str | None) -> None:
    services, client, users, _ = held
    run_cycle(services, full=True)
    headers = {} if role is None else users.bearer(role, totp=role == "registrar")
    for url in ("/archivist/fixity", "/archivist/fixity/report", "/archivist/fixity/report.csv"):
        r = client.get(url, headers=headers)
        assert r.status_code in (401, 403), (url, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "copies" not in r.text and "location" not in r.text


def test_cli_status_names_unrecoverable_copies(held: Held, tmp_path: Path) -> None:
    services, _, _, _ = held
    run_cycle(services, full=True)
    body = cli_json(services, "fixity", "status")
    assert body["unrecoverable"] == [] and body["damage_outstanding"] == 0
