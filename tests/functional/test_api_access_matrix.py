"""The access matrix: role × tier × consent × sunset state × endpoint, with zero leaks.

Every package of the holding carries a unique marker word in its title, its depositor's name,
its description and its file's name. For each public reader (anonymous, researcher) and each
public endpoint (JSON search, browse, facets, a package, a file; the reading room's search
and package pages), material the reader may not see must leave no trace: not its marker, not
a count, not a facet value, and a request for it answers exactly like a request for
something that does not exist (same status, same body).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from archive.config import load_settings
from archive.services import Services, open_services
from tests.api_support import (
    Case,
    Users,
    apply_sunsets,
    cases,
    deposit_case,
    make_users,
    pass_sunsets,
)
from tests.servers import PostgresServer

READERS = ("anonymous", "researcher")


@dataclass
class Holding:
    services: Services
    client: TestClient
    cases: list[Case]
    users: Users

    def headers(self, reader: str) -> dict[str, str]:
        return {} if reader == "anonymous" else self.users.bearer(reader)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def holding(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Holding]:
    """The holding on SQLite (FTS5) and on PostgreSQL (tsvector): each index is tested."""
    tmp = tmp_path_factory.mktemp("matrix")
    overrides: dict[str, Any] = {"fsync": False}
    server: PostgresServer | None = None
    database = ""
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        database = server.create_database()
        overrides["database_url"] = server.url(database)
    settings = load_settings(data_dir=tmp / "data", environ={}, overrides=overrides)
    services = open_services(settings)
    try:
        held = [deposit_case(services, tmp / "bags", c) for c in cases()]
        pass_sunsets(services, held)
        apply_sunsets(services, held)
        users = make_users(services)
        with TestClient(create_app(settings)) as client:
            yield Holding(services, client, held, users)
    finally:
        services.close()
        if server is not None:
            server.drop_database(database)


def _text(response: Any) -> str:
    return response.text


def _missing(holding: Holding, reader: str, url_of: Any) -> tuple[int, str]:
    """What a request for a package that does not exist answers."""
    nowhere = str(uuid.uuid4())
    r = holding.client.get(url_of(nowhere), headers=holding.headers(reader))
    return r.status_code, r.text


ENDPOINTS = {
    "package": lambda c: f"/public/packages/{c}",
    "file": lambda c: f"/public/packages/{c}/files/data/statement.txt",
    "page": lambda c: f"/packages/{c}",
}


def test_the_matrix_covers_every_combination(holding: Holding) -> None:
    combos = {(c.tier, c.consent, c.sunset) for c in holding.cases}
    assert len(combos) == len(holding.cases) == 45
    applied = [c for c in holding.cases if c.sunset == "applied"]
    assert {c.stored_tier for c in applied} == {"public", "protected-identity"}
    # A restricted sunset applied opens it (with consent); a protected one stays closed.
    assert any(c.readable_by("anonymous") for c in applied)
    assert any(c.readable_by("anonymous") for c in holding.cases)
    assert any(
        c.readable_by("researcher") and not c.readable_by("anonymous") for c in holding.cases
    )


@pytest.mark.parametrize("reader", READERS)
def test_search_finds_only_what_the_reader_may_see(holding: Holding, reader: str) -> None:
    for case in holding.cases:
        r = holding.client.get(
            "/public/search", params={"q": case.marker}, headers=holding.headers(reader)
        )
        assert r.status_code == 200
        body = r.json()
        if case.readable_by(reader):
            assert body["total"] == 2, (case, body)  # the package and its file
            assert {h["kind"] for h in body["results"]} == {"package", "file"}
            assert [f["value"] for f in body["facets"]["depositor"]] == [case.depositor]
        else:
            assert body == {
                "query": case.marker,
                "total": 0,
                "total_exact": True,
                "offset": 0,
                "limit": 20,
                "results": [],
                "facets": {"depositor": [], "year": [], "format": []},
            }, (reader, case)


@pytest.mark.parametrize("reader", READERS)
def test_browse_totals_and_facets_count_only_visible_material(
    holding: Holding, reader: str
) -> None:
    visible = [c for c in holding.cases if c.readable_by(reader)]
    hidden = [c for c in holding.cases if not c.readable_by(reader)]
    r = holding.client.get("/public/search", params={"limit": 100}, headers=holding.headers(reader))
    body = r.json()
    assert body["total"] == 2 * len(visible)
    depositors = {f["value"]: f["count"] for f in body["facets"]["depositor"]}
    assert depositors == {c.depositor: 2 for c in visible}
    text = r.text
    for c in hidden:
        assert c.marker not in text
    for c in visible:
        assert c.marker in text
    # Filtering by a hidden depositor finds nothing, exactly as an unknown one does.
    for c in hidden:
        r = holding.client.get(
            "/public/search", params={"depositor": c.depositor}, headers=holding.headers(reader)
        )
        unknown = holding.client.get(
            "/public/search",
            params={"depositor": c.depositor.replace("zq", "qz")},
            headers=holding.headers(reader),
        )
        assert r.json()["total"] == 0
        assert r.json()["results"] == unknown.json()["results"] == []
        assert r.json()["facets"] == unknown.json()["facets"]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("endpoint", ["package", "file", "page", "real-file"])
def test_hidden_material_answers_like_missing_material(
    holding: Holding, reader: str, endpoint: str
) -> None:
    urls = {
        **ENDPOINTS,
        "real-file": None,
    }
    for case in holding.cases:
        if endpoint == "real-file":
            url = f"/public/packages/{case.uuid}/files/{case.file}"
            missing_url = f"/public/packages/{uuid.uuid4()}/files/{case.file}"
        else:
            url = urls[endpoint](case.uuid)  # type: ignore[misc]
            missing_url = urls[endpoint](str(uuid.uuid4()))  # type: ignore[misc]
        r = holding.client.get(url, headers=holding.headers(reader))
        missing = holding.client.get(missing_url, headers=holding.headers(reader))
        assert missing.status_code == 404
        if case.readable_by(reader) and endpoint in ("package", "page", "real-file"):
            assert r.status_code == 200, (reader, endpoint, case, r.text)
            if endpoint == "real-file":
                assert r.content == f"content of {case.marker}\n".encode()
            else:
                assert case.marker in r.text
            continue
        assert r.status_code == missing.status_code, (reader, endpoint, case)
        assert r.text == missing.text, (reader, endpoint, case)
        assert r.headers["content-type"] == missing.headers["content-type"]
        assert case.marker not in r.text


@pytest.mark.parametrize("reader", READERS)
def test_reading_room_search_shows_no_hidden_title(holding: Holding, reader: str) -> None:
    r = holding.client.get("/search", headers=holding.headers(reader))
    assert r.status_code == 200
    for c in holding.cases:
        assert (c.marker in r.text) == c.readable_by(reader), (reader, c)
    for c in holding.cases:
        page = holding.client.get(
            "/search", params={"q": c.marker}, headers=holding.headers(reader)
        )
        assert (c.title in page.text) == c.readable_by(reader)
        if not c.readable_by(reader):
            assert ">0 results" in page.text.replace("\n", "") or "0 results" in page.text


def test_staff_tokens_are_refused_on_public_endpoints(holding: Holding) -> None:
    for role in ("depositor", "archivist"):
        r = holding.client.get("/public/search", headers=holding.users.bearer(role))
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert "zq" not in r.text


@pytest.mark.parametrize("role", ["anonymous", "researcher", "depositor", "archivist"])
def test_staff_endpoints_refuse_other_roles_without_telling_anything(
    holding: Holding, role: str
) -> None:
    headers = {} if role == "anonymous" else holding.users.bearer(role)
    case = holding.cases[-1]
    for url in (
        f"/registrar/packages/{case.uuid}",
        f"/registrar/search?q={case.marker}",
        "/registrar/access-log",
        "/registrar/reviews",
        f"/archivist/packages/{case.uuid}",
        "/archivist/packages",
    ):
        if role == "archivist" and url.startswith("/archivist"):
            continue
        r = holding.client.get(url, headers=headers)
        assert r.status_code in (401, 403), (role, url)
        assert case.marker not in r.text and case.title not in r.text


def test_registrar_and_archivist_see_every_tier_and_each_read_is_logged(
    holding: Holding,
) -> None:
    r = holding.client.get("/archivist/packages", headers=holding.users.bearer("archivist"))
    assert r.status_code == 200
    listed = {p["package_id"]: p["tier"] for p in r.json()["packages"]}
    assert set(listed) == {c.package_id for c in holding.cases}
    for c in holding.cases:
        assert listed[c.package_id] == c.stored_tier
    log = holding.client.get(
        "/registrar/access-log",
        params={"limit": 500},
        headers=holding.users.bearer("registrar", totp=True),
    )
    logged = {e["package_id"] for e in log.json()["events"] if e["type"] == "access"}
    assert logged == {c.package_id for c in holding.cases if c.stored_tier != "public"}
    for e in log.json()["events"]:
        assert "zq" not in e["detail"]  # no titles, paths or names of material in events
    # The reviews pending are those of the protected identities whose sunset was applied.
    reviews = holding.client.get(
        "/registrar/reviews", headers=holding.users.bearer("registrar", totp=True)
    )
    assert {r["package_id"] for r in reviews.json()["reviews"]} == {
        c.package_id
        for c in holding.cases
        if c.tier == "protected-identity" and c.sunset == "applied"
    }


def test_counting_stops_at_the_window(holding: Holding, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the window, the total says so ("N+") and pages stop; the visible set is the same."""
    import access.search.service

    monkeypatch.setattr(access.search.service, "WINDOW", 3)
    researcher = holding.headers("researcher")  # sees 4 entries: 2 packages and their files
    body = holding.client.get("/public/search", params={"limit": 100}, headers=researcher).json()
    assert body["total"] == 3 and body["total_exact"] is False
    assert len(body["results"]) == 3
    page = holding.client.get("/search", headers=researcher)
    assert "3+ results" in page.text
    r = holding.client.get("/public/search", params={"offset": 3}, headers=researcher)
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "SEARCH-PAGE"
