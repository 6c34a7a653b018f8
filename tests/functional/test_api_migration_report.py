"""The format risk report through the archivists' API, on SQLite and PostgreSQL: the JSON is
what ``custos migrate report --json`` gives, the HTML page is the same page; only archivists
may read it (researchers, depositors, registrars and anonymous readers are refused)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from archive.services import Services
from ingest.service import identify_package
from migration import service
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.functional.migrate_helpers import bmp, store
from tests.helpers import deposit

JSON = "/archivist/migration/report"
HTML = "/archivist/migration/report.html"


@pytest.fixture
def migrated(
    make_services: MakeServices, catalog_url: str, tmp_path: Path
) -> Iterator[tuple[Services, TestClient, Users]]:
    services = make_services(catalog_url)
    identify_package(services, deposit(services, SAMPLE, depositor="Sample Mechanism").package_id)
    store(services, tmp_path / "bag", {"images/bitmap.bmp": bmp()})
    service.migrate(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, make_users(services)


def without_time(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "generated_at"}


def test_archivists_read_the_report_as_json_and_html(
    migrated: tuple[Services, TestClient, Users],
) -> None:
    services, client, users = migrated
    r = client.get(JSON, headers=users.bearer("archivist"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert without_time(body) == without_time(service.report(services).as_dict())
    assert body["policy"] == "formats v2"
    rows = {row["puid"]: row for row in body["formats"]}
    assert rows["fmt/116"]["format_name"] == "Windows Bitmap"
    assert (rows["fmt/116"]["action"], rows["fmt/116"]["preserved"]) == ("migrate", 1)
    pdf = next(row for row in body["formats"] if row["migrate"] == "pdf-to-pdfa-2b")
    assert pdf["preserved"] == 1 and pdf["to_do"] == 0  # the sample's PDF, sealed and stored
    assert body["totals"]["preserved"] == 2 and body["migration_events"] == {"success": 2}
    assert {(d["role"], d["extension"]) for d in body["derivatives"]} == {
        ("preservation", "pdf"),
        ("preservation", "png"),
    }

    page = client.get(HTML, headers=users.bearer("archivist"))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<td>fmt/116</td>" in page.text and "Windows Bitmap" in page.text
    assert "<script" not in page.text.lower()


@pytest.mark.parametrize("url", [JSON, HTML])
def test_only_archivists_may_read_it(
    migrated: tuple[Services, TestClient, Users], url: str
) -> None:
    _, client, users = migrated
    for role in ("researcher", "depositor"):
        r = client.get(url, headers=users.bearer(role))
        assert r.status_code == 403, role
        assert r.headers["content-type"] == "application/problem+json"
        assert f"the {role} role may not use this service" in r.json()["detail"]
        assert "Windows Bitmap" not in r.text
    r = client.get(url, headers=users.bearer("registrar", totp=True))
    assert r.status_code == 403
    anonymous = client.get(url)
    assert anonymous.status_code == 401 and "Windows Bitmap" not in anonymous.text
    forged = client.get(url, headers={"Authorization": "Bearer custos_0_not-a-token"})
    assert forged.status_code == 401
