"""Registrars and archivists through the API, on SQLite and PostgreSQL: reads with a stated
purpose (logged), tier changes as new OCFL versions, justice requests answered with a court
bundle, the access log; archivists' metadata, fixity and seal status; the Storage Service
interface."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ocfl import Object  # type: ignore[import-untyped]
from sqlalchemy import select

from api.app import create_app
from archive.catalog.tables import Event, FixityCoverage
from archive.proofs.bundle import verify_bundle
from archive.proofs.seal import seal_now
from archive.services import Services
from ingest.service import identify_package
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import deposit, stored_bundle

LETTER = "data/documents/transfer-letter.txt"


@pytest.fixture
def held(
    make_services: MakeServices, catalog_url: str
) -> Iterator[tuple[Services, TestClient, Users, str]]:
    services = make_services(catalog_url)
    result = deposit(services, SAMPLE, depositor="Sample Mechanism")
    identify_package(services, result.package_id)
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, users, result.package_id.removeprefix("urn:uuid:")


def events_of(services: Services, type_: str) -> list[tuple[str, str, list[str]]]:
    with services.sessions() as session:
        rows = session.execute(
            select(Event).where(Event.type == type_).order_by(Event.id)
        ).scalars()
        return [(e.agent, e.detail, [lk.object_id for lk in e.links]) for e in rows]


def test_registrar_reads_with_a_purpose_and_every_read_is_logged(
    held: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, uuid = held

    def headers() -> dict[str, str]:  # a new TOTP code for each request
        return users.bearer("registrar", totp=True)

    url = f"/registrar/packages/{uuid}/files/{LETTER}"
    r = client.get(url, headers=headers())
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "ACCESS-PURPOSE-REQUIRED"
    r = client.get(url, params={"purpose": "research"}, headers=headers())
    assert r.status_code == 403 and "CONSENT-NOT-GIVEN" in r.json()["detail"]
    r = client.get(url, params={"purpose": "made-up"}, headers=headers())
    assert r.status_code == 422
    assert events_of(services, "access") == []  # refusals read nothing
    r = client.get(url, params={"purpose": "prosecution"}, headers=headers())
    assert r.status_code == 200 and r.content == (SAMPLE / LETTER).read_bytes()
    (event,) = events_of(services, "access")
    agent, detail, links = event
    assert agent == "registrar regina" and "purpose: prosecution" in detail
    assert "transfer-letter" not in detail and not any("letter" in link for link in links)
    assert any(link.startswith("sha512:") for link in links)
    log = client.get("/registrar/access-log", headers=headers()).json()["events"]
    assert log[0]["detail"] == detail
    # A public file needs no logging.
    r = client.get(
        f"/registrar/packages/{uuid}/files/data/README.txt",
        params={"purpose": "public"},
        headers=headers(),
    )
    assert r.status_code == 200 and len(events_of(services, "access")) == 1


def test_registrar_search_covers_every_tier(
    held: tuple[Services, TestClient, Users, str],
) -> None:
    _services, client, users, uuid = held
    r = client.get(
        "/registrar/search",
        params={"q": "transfer-letter"},
        headers=users.bearer("registrar", totp=True),
    )
    assert r.status_code == 200
    assert [h["package_id"] for h in r.json()["results"]] == [f"urn:uuid:{uuid}"]


def test_tier_change_is_a_new_version_an_event_and_reaches_the_index(
    held: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, uuid = held

    def headers() -> dict[str, str]:  # a new TOTP code for each request
        return users.bearer("registrar", totp=True)

    url = f"/registrar/packages/{uuid}/tier"
    r = client.post(
        url,
        json={"path": "data/README.txt", "tier": "restricted", "legal_basis": " "},
        headers=headers(),
    )
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "TIER-LEGAL-BASIS"
    r = client.post(
        url, json={"path": "data/nope", "tier": "restricted", "legal_basis": "x"}, headers=headers()
    )
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "TIER-UNKNOWN-PATH"
    before = client.get("/public/search", params={"q": "README"}).json()
    assert before["total"] == 1
    r = client.post(
        url,
        json={"path": "data/README.txt", "tier": "restricted", "legal_basis": "Order 5/2026"},
        headers=headers(),
    )
    assert r.status_code == 200, r.text
    change = r.json()
    assert change["version"] == 3 and change["successor"] == "public" and change["sunset"]
    # The object: a valid OCFL object whose new version holds the new access.json.
    with services.sessions() as session:
        from archive.catalog.tables import Package

        rel = session.get(Package, f"urn:uuid:{uuid}").object_path  # type: ignore[union-attr]
    root = services.store.object_root(rel)
    assert Object().validate(str(root))
    access = json.loads((root / "v3/content/custos/access.json").read_bytes())
    readme = next(a for a in access["assignments"] if a["path"] == "data/README.txt")
    assert readme["tier"] == "restricted" and readme["legal_basis"] == "Order 5/2026"
    (tier_event,) = [e for e in events_of(services, "tier change") if "registrar" in e[0]]
    assert "Order 5/2026" in tier_event[1] and "README" not in tier_event[1]
    assert "public -> restricted" in tier_event[1]
    # The public no longer finds or reads it.
    after = client.get("/public/search", params={"q": "README"}).json()
    assert after["total"] == 0
    r = client.get(f"/public/packages/{uuid}/files/data/README.txt")
    assert r.status_code == 404
    # The catalog rebuilt from storage alone agrees.
    from archive.catalog.rebuild import rebuild

    rebuild(services)
    assert client.get("/public/search", params={"q": "README"}).json()["total"] == 0


def test_justice_request_answered_with_a_court_bundle(
    held: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, uuid = held
    seal_now(services)

    def headers() -> dict[str, str]:  # a new TOTP code for each request
        return users.bearer("registrar", totp=True)

    bad = client.post(
        "/registrar/requests",
        json={"requester": "", "reference": "", "purpose": "revenge", "package": uuid},
        headers=headers(),
    )
    assert bad.status_code == 422
    assert {f["code"] for f in bad.json()["findings"]} == {
        "REQUEST-REQUESTER",
        "REQUEST-REFERENCE",
        "REQUEST-PURPOSE",
    }
    r = client.post(
        "/registrar/requests",
        json={
            "requester": "Special Tribunal",
            "reference": "ST/2026/14",
            "purpose": "third-party-justice",
            "package": uuid,
            "paths": ["data/README.txt"],
        },
        headers=headers(),
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["request_id"]
    answered = client.post(f"/registrar/requests/{request_id}/answer", headers=headers())
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["state"] == "answered" and body["export"]["files"] == ["data/README.txt"]
    bundle = stored_bundle(services, body["bundle"])
    assert (bundle / "data" / "VERIFY.txt").is_file()
    again = client.post(f"/registrar/requests/{request_id}/answer", headers=headers())
    assert again.status_code == 422
    assert [
        r["state"] for r in client.get("/registrar/requests", headers=headers()).json()["requests"]
    ] == ["answered"]
    assert len(events_of(services, "export")) == 1


def test_a_registrar_releases_what_the_policy_allows_for_the_request_purpose(
    held: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, uuid = held
    seal_now(services)

    def headers() -> dict[str, str]:  # a new TOTP code for each request
        return users.bearer("registrar", totp=True)

    def request(purpose: str, paths: list[str]) -> str:
        body = {"requester": "Special Tribunal", "reference": f"ST/{purpose}", "package": uuid}
        r = client.post(
            "/registrar/requests", json={**body, "purpose": purpose, "paths": paths},
            headers=headers(),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        return str(r.json()["request_id"])

    # The letter is restricted, with consent for prosecution only: a third party's request
    # naming it is refused, saying why, and leaves no bundle and no event.
    third = request("third-party-justice", [LETTER])
    r = client.post(f"/registrar/requests/{third}/answer", headers=headers())
    assert r.status_code == 422
    finding = r.json()["findings"][0]
    assert finding["code"] == "EXPORT-NOT-RELEASABLE" and finding["path"] == LETTER
    assert "consent does not cover" in finding["message"]
    exports = services.settings.storage_path / "extensions" / "custos-exports"
    assert not [p for p in exports.rglob("*") if p.is_file()]  # no bundle, not a part of one
    assert not [p for p in services.store.staging.iterdir() if p.name.startswith("bundle-")]
    assert events_of(services, "export") == []
    states = {q["request_id"]: q["state"] for q in client.get(
        "/registrar/requests", headers=headers()).json()["requests"]}  # fmt: skip
    assert states[third] == "open"
    # A prosecution request for everything: the public files and the letter.
    prosecution = request("prosecution", [])
    r = client.post(f"/registrar/requests/{prosecution}/answer", headers=headers())
    assert r.status_code == 200, r.text
    files = r.json()["export"]["files"]
    assert LETTER in files and "data/README.txt" in files
    bundle = stored_bundle(services, r.json()["bundle"])
    report = verify_bundle(bundle)
    assert report.ok, report.failures
    index = json.loads((bundle / "data" / "custos-bundle.json").read_text())
    tiers = {f["original_path"]: f["tier"] for f in index["files"]}
    assert tiers[LETTER] == "restricted" and tiers["data/README.txt"] == "public"
    [(agent, detail, links)] = events_of(services, "export")
    assert "regina" in agent and "1 of them not public" in detail
    # The letter is linked by its digest: its path never enters the custody log.
    assert f"bag/{LETTER}" not in links and "bag/data/README.txt" in links
    assert any(link.startswith("sha512:") for link in links)
    assert not any("transfer-letter" in x for x in (detail, *links))


def test_archivist_sees_metadata_fixity_and_seals(
    held: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, uuid = held
    headers = users.bearer("archivist")
    d = client.get(f"/archivist/packages/{uuid}", headers=headers).json()
    assert [v["number"] for v in d["versions"]] == [1, 2]
    assert d["seals"]["awaiting"] == ["v1/inventory.json", "v2/inventory.json"]
    assert any(f["logical_path"] == f"bag/{LETTER}" for f in d["files"])
    seal_now(services)
    d = client.get(f"/archivist/packages/{uuid}", headers=headers).json()
    assert d["seals"]["awaiting"] == [] and all(v["seal"] == "sealed" for v in d["versions"])
    assert len(events_of(services, "access")) == 2  # the package holds restricted metadata
    # Content as the policy allows archivists: public material for a purpose, nothing else.
    url = f"/archivist/packages/{uuid}/files/"
    r = client.get(url + "data/README.txt", params={"purpose": "research"}, headers=headers)
    assert r.status_code == 200 and r.content == (SAMPLE / "data/README.txt").read_bytes()
    r = client.get(url + LETTER, params={"purpose": "prosecution"}, headers=headers)
    assert r.status_code == 403 and "ROLE-NOT-PERMITTED" in r.json()["detail"]
    ok = client.post(f"/archivist/packages/{uuid}/fixity", headers=headers).json()
    assert ok["success"] is True and ok["failures"]["files"]["changed"] == []
    status = client.get("/archivist/status", headers=headers).json()
    assert status["holdings"]["packages"] == 1


def test_storage_service_interface(
    held: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, uuid = held
    deposit(services, SAMPLE.parent / "sample-holding", depositor="Other")  # already held
    creds = {"username": "arno", "api_key": users.archivist.token}
    listing = client.get("/api/v2/file/", params={**creds, "limit": 1})
    assert listing.status_code == 200
    body = listing.json()
    assert body["meta"]["total_count"] == 1 and body["meta"]["next"] is None
    (aip,) = body["objects"]
    assert aip["uuid"] == uuid and aip["package_type"] == "AIP" and aip["status"] == "UPLOADED"
    assert Path(aip["current_full_path"]).is_dir()
    header = {"Authorization": f"ApiKey arno:{users.archivist.token}"}
    assert client.get(f"/api/v2/file/{uuid}/", headers=header).json()["uuid"] == uuid
    check = client.get(f"/api/v2/file/{uuid}/check_fixity/", headers=header).json()
    assert check["success"] is True and len(check["timestamp"]) == 19
    # It is the fixity service's check, recorded as `custos fixity run` records it: every
    # copy's coverage row, one `fixity check` event per copy.
    package_id = f"urn:uuid:{uuid}"
    with services.sessions() as session:
        rows = session.execute(
            select(FixityCoverage.last_checked_at, FixityCoverage.last_outcome).where(
                FixityCoverage.package_id == package_id
            )
        ).all()
    assert rows and all(at is not None and outcome == "ok" for at, outcome in rows)
    checks = events_of(services, "fixity check")
    assert len(checks) == len(rows) and {agent for agent, _, _ in checks} == {"Custos fixity"}
    assert f"{len(rows)} copies of the package's stored files read in full" in check["message"]
    # Alter a stored file: the next check fails, naming it, and records the damage.
    path = "v1/content/bag/data/README.txt"
    target = Path(aip["current_full_path"]) / path
    target.write_bytes(b"altered")
    check = client.get(f"/api/v2/file/{uuid}/check_fixity/", params=creds).json()
    assert check["success"] is False
    assert check["failures"]["files"]["changed"] == [path]
    assert "1 changed, 0 missing, 0 untracked" in check["message"]
    failed = [d for _, d, _ in events_of(services, "fixity check") if f"{path}: TRUNCATED" in d]
    assert len(failed) == 1 and failed[0].startswith(f"primary: {path}: TRUNCATED (7 of ")
    with services.sessions() as session:
        outcome = session.execute(
            select(FixityCoverage.last_outcome).where(
                FixityCoverage.package_id == package_id, FixityCoverage.content_path == path
            )
        ).scalar_one()
    assert outcome == "unrecoverable"  # no replica holds an intact copy to repair it from
    damaged = client.get("/archivist/fixity", headers=users.bearer("archivist")).json()
    assert damaged["unrecoverable"], damaged
    assert (
        client.get("/api/v2/file/", params={"username": "arno", "api_key": "x"}).status_code == 401
    )
    assert client.get("/api/v2/file/").status_code == 401
    r = client.get("/api/v2/file/", params={"username": "rita", "api_key": users.researcher.token})
    assert r.status_code == 403
