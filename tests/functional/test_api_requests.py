"""Justice requests through the API, on SQLite and PostgreSQL: a purpose the access policy does
not declare is refused with the accepted ones in the finding and the hint; a registrar
downloads an answered request's bundle as a streamed zip that unzips to a bag `custos verify
--bundle` accepts, the download is an access event, and every other caller is refused."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from access.decisions.rules import access_policy, require_purpose
from api.app import create_app
from archive.catalog.tables import Event
from archive.errors import InputRejected
from archive.proofs.bundle import verify_bundle
from archive.proofs.seal import seal_now
from archive.proofs.verify import trust_anchors
from archive.services import Services
from ingest.service import identify_package
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.functional.test_cli import custos
from tests.helpers import deposit, stored_bundle

PROBLEM = "application/problem+json"
DECLARED = ("public", "research", "prosecution", "third-party-justice")
Held = tuple[Services, TestClient, Users, str]


@pytest.fixture
def held(make_services: MakeServices, catalog_url: str) -> Iterator[Held]:
    services = make_services(catalog_url)
    result = deposit(services, SAMPLE, depositor="Sample Mechanism")
    identify_package(services, result.package_id)
    seal_now(services)
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, users, result.package_id.removeprefix("urn:uuid:")


def registrar(users: Users) -> dict[str, str]:
    return users.bearer("registrar", totp=True)  # a new code for each request


def new_request(client: TestClient, users: Users, uuid: str, **fields: object) -> str:
    body = {
        "requester": "Special Tribunal",
        "reference": "ST/2026/14",
        "purpose": "prosecution",
        "package": uuid,
        **fields,
    }
    r = client.post("/registrar/requests", json=body, headers=registrar(users))
    assert r.status_code == 201, r.text
    return str(r.json()["request_id"])


def access_events(services: Services) -> list[tuple[str, str, list[str]]]:
    with services.sessions() as session:
        rows = session.execute(
            select(Event).where(Event.type == "access").order_by(Event.id)
        ).scalars()
        return [(e.agent, e.detail, [lk.object_id for lk in e.links]) for e in rows]


def test_require_purpose_accepts_only_what_the_policy_declares(services: Services) -> None:
    policy = access_policy(services.settings)
    assert tuple(policy.purposes) == DECLARED
    assert require_purpose(policy, " research\n") == "research"
    for stated in ("curiosity", "", "  ", "Research"):
        with pytest.raises(InputRejected) as refused:
            require_purpose(policy, stated)
        [finding] = refused.value.findings
        assert finding.code == "REQUEST-PURPOSE" and finding.path == "purpose"
        assert ", ".join(DECLARED) in finding.message
        assert refused.value.hint.endswith(", ".join(DECLARED))


def test_an_undeclared_purpose_is_refused_with_a_hint_naming_the_accepted_ones(
    held: Held,
) -> None:
    _services, client, users, uuid = held
    body = {"requester": "Special Tribunal", "reference": "ST/1", "package": uuid}
    r = client.post(
        "/registrar/requests", json={**body, "purpose": "curiosity"}, headers=registrar(users)
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    problem = r.json()
    [finding] = problem["findings"]
    assert finding["code"] == "REQUEST-PURPOSE" and finding["path"] == "purpose"
    assert "'curiosity'" in finding["message"] and ", ".join(DECLARED) in finding["message"]
    assert problem["hint"] == (
        "state one of the purposes the access policy declares: "
        "public, research, prosecution, third-party-justice"
    )
    # Every problem at once, each with what to do in the one hint.
    r = client.post(
        "/registrar/requests",
        json={"requester": " ", "reference": "", "purpose": "", "package": uuid},
        headers=registrar(users),
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert [f["code"] for f in problem["findings"]] == [
        "REQUEST-REQUESTER",
        "REQUEST-REFERENCE",
        "REQUEST-PURPOSE",
    ]
    assert "requester" in problem["hint"] and "reference" in problem["hint"]
    assert ", ".join(DECLARED) in problem["hint"]
    recorded = client.get("/registrar/requests", headers=registrar(users)).json()
    assert recorded["requests"] == []
    # A declared purpose with spaces around it is the purpose, recorded without them.
    new_request(client, users, uuid, purpose=" third-party-justice ")
    [row] = client.get("/registrar/requests", headers=registrar(users)).json()["requests"]
    assert row["purpose"] == "third-party-justice"


def test_a_registrar_downloads_an_answered_request_as_a_zip_that_verifies(
    held: Held, tmp_path: Path
) -> None:
    services, client, users, uuid = held
    request_id = new_request(client, users, uuid)
    answered = client.post(f"/registrar/requests/{request_id}/answer", headers=registrar(users))
    assert answered.status_code == 200, answered.text
    export_id = answered.json()["export_id"]
    folder = stored_bundle(services, answered.json()["bundle"])
    before = len(access_events(services))

    r = client.get(f"/registrar/requests/{request_id}/bundle", headers=registrar(users))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    top = f"custos-bundle-{export_id}"
    assert r.headers["content-disposition"] == f'attachment; filename="{top}.zip"'
    assert "content-length" not in r.headers  # streamed, not built first

    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert all(n.startswith(f"{top}/") for n in names)
        on_server = sorted(
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
        )
        assert sorted(n.removeprefix(f"{top}/") for n in names) == on_server
        archive.extractall(tmp_path / "unzipped")
    assert [p.name for p in (tmp_path / "unzipped").iterdir()] == [top]
    bundle = tmp_path / "unzipped" / top
    for rel in on_server:
        assert (bundle / rel).read_bytes() == (folder / rel).read_bytes()

    # What was unzipped is a bundle that verifies, with its own anchors and with the archive's.
    report = verify_bundle(bundle)
    assert report.ok, report.steps
    report = verify_bundle(bundle, trust=trust_anchors(services))
    assert report.ok and not report.anchors_from_bundle, report.steps
    code, checked, err = custos(tmp_path / "unused", "verify", "--bundle", str(bundle), "--json")
    assert code == 0 and checked["verified"], err

    # The download is an access event: the registrar, the request, the export; no path.
    [(agent, detail, links)] = access_events(services)[before:]
    assert agent == "registrar regina"
    assert request_id in detail and export_id in detail and "purpose: prosecution" in detail
    assert links == [f"urn:uuid:{uuid}"]
    assert str(folder) not in detail and "data/" not in detail


def test_only_a_registrar_with_a_second_factor_downloads_a_bundle(held: Held) -> None:
    services, client, users, uuid = held
    open_request = new_request(client, users, uuid)
    answered = new_request(client, users, uuid, reference="ST/2026/15")
    r = client.post(f"/registrar/requests/{answered}/answer", headers=registrar(users))
    assert r.status_code == 200, r.text
    before = len(access_events(services))
    url = f"/registrar/requests/{answered}/bundle"

    for role in ("researcher", "depositor", "archivist"):
        r = client.get(url, headers=users.bearer(role))
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        assert r.json()["hint"] == "it is for: registrar"
    assert client.get(url).status_code == 401  # no credentials
    r = client.get(url, headers=users.bearer("registrar"))  # no second factor
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM and r.json()["hint"]

    r = client.get("/registrar/requests/8d7c1a52-0000-4000-8000-000000000000/bundle",
                   headers=registrar(users))  # fmt: skip
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert "GET /registrar/requests" in r.json()["hint"]
    r = client.get(f"/registrar/requests/{open_request}/bundle", headers=registrar(users))
    assert r.status_code == 404 and "not answered" in r.json()["detail"]
    assert "/registrar/requests/{id}/answer" in r.json()["hint"]

    # A bundle gone from the server: said plainly, with what to do; no path of the server.
    recorded = client.get("/registrar/requests", headers=registrar(users)).json()["requests"]
    [bundle] = [q["bundle"] for q in recorded if q["request_id"] == answered]
    assert bundle.startswith(f"extensions/custos-exports/{answered}/")  # in storage, no path
    folder = services.settings.storage_path.joinpath(*bundle.split("/"))
    assert (folder / "bagit.txt").is_file()
    shutil.rmtree(folder)
    r = client.get(url, headers=registrar(users))
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
    assert "no longer whole" in r.json()["detail"] and str(folder) not in r.text
    assert f"custos-exports/{answered}/" in r.json()["hint"]
    assert len(access_events(services)) == before  # refusals hand nothing out
