"""Every list of the API is paged the same way (api.deps.page), on SQLite and PostgreSQL:
``offset`` and ``limit`` (default 50, at most 500), the answer's ``total`` and
``next_offset``; a page out of bounds is refused (422, problem+json naming the parameter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from archive.catalog.tables import Event
from archive.services import Services
from tests.api_support import Users, make_users
from tests.conftest import MakeServices
from tests.helpers import deposit, make_bag

Held = tuple[Services, TestClient, Users, list[str]]

#: Every paged list, and the role that reads it.
LISTS = {
    "/deposits": "depositor",
    "/archivist/packages": "archivist",
    "/registrar/requests": "registrar",
    "/registrar/reviews": "registrar",
    "/registrar/access-log": "registrar",
}


@pytest.fixture
def held(
    make_services: MakeServices, catalog_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Held]:
    """Three packages (undeclared tiers: restricted, so listing them is logged)."""
    services = make_services(catalog_url)
    tmp = tmp_path_factory.mktemp("bags")
    packages = [
        deposit(
            services,
            make_bag(tmp / f"bag{n}", {f"minutes-{n}.txt": f"minutes {n}\n".encode()}),
            depositor="Sample Mechanism",
        ).package_id
        for n in range(3)
    ]
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, users, packages


def headers(users: Users, role: str) -> dict[str, str]:
    return users.bearer(role, totp=role == "registrar")


def listed_events(services: Services) -> list[str | None]:
    with services.sessions() as session:
        return list(
            session.execute(
                select(Event.package_id).where(
                    Event.type == "access", Event.detail.startswith("package metadata listed;")
                )
            ).scalars()
        )


def test_archivists_list_packages_page_by_page(held: Held) -> None:
    services, client, users, packages = held

    def page(**params: int) -> dict[str, Any]:
        r = client.get("/archivist/packages", params=params, headers=headers(users, "archivist"))
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    first = page(limit=2)
    assert (first["total"], first["offset"], first["limit"], first["next_offset"]) == (3, 0, 2, 2)
    # Only the packages on the page were read: only theirs are logged.
    on_first = [p["package_id"] for p in first["packages"]]
    assert sorted(listed_events(services)) == sorted(on_first)
    rest = page(offset=2)
    assert (rest["total"], rest["limit"], rest["next_offset"]) == (3, 50, None)
    whole = page()
    assert [p["package_id"] for p in whole["packages"]] == on_first + [
        p["package_id"] for p in rest["packages"]
    ]
    assert sorted(p["package_id"] for p in whole["packages"]) == sorted(packages)


def test_registrars_list_requests_and_the_access_log_page_by_page(held: Held) -> None:
    _, client, users, packages = held
    recorded = []
    for n, package in enumerate(packages):
        body = {
            "requester": "Special Tribunal",
            "reference": f"ST/2026/{n}",
            "purpose": "prosecution",
            "package": package.removeprefix("urn:uuid:"),
        }
        r = client.post("/registrar/requests", json=body, headers=headers(users, "registrar"))
        assert r.status_code == 201, r.text
        recorded.append(r.json()["request_id"])

    def requests(**params: int) -> dict[str, Any]:
        r = client.get("/registrar/requests", params=params, headers=headers(users, "registrar"))
        answer: dict[str, Any] = r.json()
        return answer

    first = requests(limit=2)
    assert [q["request_id"] for q in first["requests"]] == recorded[:2]  # oldest first
    assert (first["total"], first["next_offset"]) == (3, 2)
    rest = requests(offset=2, limit=2)
    assert [q["request_id"] for q in rest["requests"]] == recorded[2:]
    assert (rest["total"], rest["next_offset"]) == (3, None)

    # The access log has no total (counting would read the whole custody log); next_offset
    # says whether more follow.
    log = client.get(
        "/registrar/access-log", params={"limit": 1}, headers=headers(users, "registrar")
    ).json()
    assert len(log["events"]) == 1 and log["total"] is None and log["next_offset"] == 1
    everything = client.get("/registrar/access-log", headers=headers(users, "registrar")).json()
    assert everything["next_offset"] is None and everything["limit"] == 50
    assert everything["events"][0] == log["events"][0]  # newest first


@pytest.mark.parametrize("url", list(LISTS))
@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": "next"}]
)
def test_a_page_out_of_bounds_is_refused_the_same_way_everywhere(
    held: Held, url: str, params: dict[str, object]
) -> None:
    _, client, users, _ = held
    r = client.get(url, params=params, headers=headers(users, LISTS[url]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "InputRejected" and problem["hint"]
    [finding] = problem["findings"]
    assert finding["code"] == "REQUEST-INVALID" and finding["path"] == f"query.{next(iter(params))}"


@pytest.mark.parametrize("url", list(LISTS))
def test_every_list_answers_its_page(held: Held, url: str) -> None:
    _, client, users, _ = held
    body = client.get(url, params={"limit": 500}, headers=headers(users, LISTS[url])).json()
    assert body["offset"] == 0 and body["limit"] == 500 and body["next_offset"] is None
    assert "total" in body
