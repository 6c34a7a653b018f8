"""Depositors: a bag uploaded in chunks, its checksum checked, ingested; status and receipt.
Bad uploads get clear errors and leave nothing behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from archive.catalog.tables import Event, Upload
from archive.jobs import run_until_idle
from archive.services import Services
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import catalog_counts, make_bag, staging_debris, zip_folder


@pytest.fixture
def setup(services: Services) -> Iterator[tuple[TestClient, Users]]:
    users = make_users(services, organisation="Sample Mechanism")
    with TestClient(create_app(services.settings)) as client:
        yield client, users


def chunks(path: Path, size: int = 64 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(size):
            yield block


def upload(
    client: TestClient, users: Users, path: Path, checksum: str | None, name: str = "bag.zip"
) -> object:
    headers = users.bearer("depositor")
    if checksum is not None:
        headers["X-Custos-Checksum"] = checksum
    return client.put("/deposits", params={"filename": name}, content=chunks(path), headers=headers)


def test_upload_status_and_receipt(
    services: Services, setup: tuple[TestClient, Users], tmp_path: Path
) -> None:
    client, users = setup
    archive = zip_folder(SAMPLE, tmp_path / "sample.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    r = upload(client, users, archive, f"sha256:{digest}")
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["state"] == "stored" and body["sha256"] == digest
    assert body["size"] == archive.stat().st_size
    upload_id, package_id = body["upload_id"], body["package_id"]
    # Identification and the seal are queued work (no worker here, no serve thread): the
    # status and the receipt both say so.
    status = client.get(f"/deposits/{upload_id}", headers=users.bearer("depositor")).json()
    assert status["identification"] == "pending" and status["seal"] == "awaiting seal"
    receipt = client.get(f"/deposits/{upload_id}/receipt", headers=users.bearer("depositor"))
    assert receipt.json()["seal"]["v1/inventory.json"] == "awaiting seal"
    # A worker runs it (here: the outbox, until idle).
    assert not run_until_idle(services).outbox.failed
    status = client.get(f"/deposits/{upload_id}", headers=users.bearer("depositor")).json()
    assert status["identification"] == "done" and status["seal"] == "sealed"
    receipt = client.get(f"/deposits/{upload_id}/receipt", headers=users.bearer("depositor"))
    assert receipt.status_code == 200
    rc = receipt.json()
    assert rc["package_id"] == package_id and rc["deposit_id"] == body["deposit_id"]
    paths = {f["path"]: f for f in rc["files"]}
    # The restricted letter is readable by its own depositor (logged), the rest as public.
    assert len(paths) == 5 and rc["files_withheld_by_access_policy"] == 0
    letter = (SAMPLE / "data/documents/transfer-letter.txt").read_bytes()
    assert (
        paths["data/documents/transfer-letter.txt"]["sha512"] == hashlib.sha512(letter).hexdigest()
    )
    assert rc["seal"]["v1/inventory.json"] == "sealed"
    with services.sessions() as session:
        access = session.execute(
            select(Event.detail, Event.agent).where(Event.type == "access")
        ).all()
    assert [a for _, a in access] == ["depositor dora"] * 2  # each receipt read
    assert all("transfer-letter" not in detail for detail, _ in access)
    assert staging_debris(services.store.staging) == []
    # The upload was recorded under the depositor's organisation.
    with services.sessions() as session:
        assert session.execute(select(Upload.depositor)).scalar_one() == "Sample Mechanism"
    # Another organisation's depositor does not see it.
    other = make_users_other(services)
    r2 = client.get(f"/deposits/{upload_id}", headers={"Authorization": f"Bearer {other}"})
    assert r2.status_code == 404


def make_users_other(services: Services) -> str:
    from access.accounts.users import add_user
    from access.decisions.rules import access_policy

    with services.session_scope() as session:
        user = add_user(
            session, "otto", role="depositor", policy=access_policy(services.settings),
            organisation="Other Mechanism", new_organisation=True,
        )  # fmt: skip
    return user.token


@pytest.mark.parametrize(
    ("checksum", "name", "status", "code"),
    [
        (None, "bag.zip", 422, "UPLOAD-CHECKSUM-MISSING"),
        ("md5:abc", "bag.zip", 422, "UPLOAD-CHECKSUM-SYNTAX"),
        ("sha256:" + "0" * 64, "bag.zip", 422, "UPLOAD-CHECKSUM-MISMATCH"),
        ("GOOD", "../bag.zip", 422, "UPLOAD-NAME"),
        ("GOOD", "bag.exe", 422, "UPLOAD-NAME"),
    ],
)
def test_bad_uploads_leave_nothing_behind(
    services: Services,
    setup: tuple[TestClient, Users],
    tmp_path: Path,
    checksum: str | None,
    name: str,
    status: int,
    code: str,
) -> None:
    client, users = setup
    archive = zip_folder(SAMPLE, tmp_path / "sample.zip")
    if checksum == "GOOD":
        checksum = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    before = catalog_counts(services)
    r = upload(client, users, archive, checksum, name)
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    problem = r.json()  # type: ignore[attr-defined]
    assert problem["findings"][0]["code"] == code and problem["hint"]
    assert catalog_counts(services) == before  # not even an event: nothing was deposited
    assert staging_debris(services.store.staging) == []
    assert list(services.store.iter_objects()) == []


def test_malformed_bag_is_refused_with_every_finding(
    services: Services, setup: tuple[TestClient, Users], tmp_path: Path
) -> None:
    client, users = setup
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, omit_from_manifest=("a.txt",))
    archive = zip_folder(bag, tmp_path / "broken.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    r = upload(client, users, archive, f"sha256:{digest}")
    assert r.status_code == 422  # type: ignore[attr-defined]
    codes = {f["code"] for f in r.json()["findings"]}  # type: ignore[attr-defined]
    assert "BAG-FILE-UNLISTED" in codes
    assert staging_debris(services.store.staging) == []
    assert list(services.store.iter_objects()) == []
    with services.sessions() as session:
        assert session.execute(select(Upload)).first() is None
    # Not a zip at all.
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip file" * 100)
    r = upload(client, users, junk, "sha256:" + hashlib.sha256(junk.read_bytes()).hexdigest())
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert staging_debris(services.store.staging) == []


def test_upload_is_streamed_to_disk_in_chunks(
    services: Services, setup: tuple[TestClient, Users], tmp_path: Path
) -> None:
    """A 32 MiB bag goes through the sink as it arrives (the TestClient delivers it in one
    piece; tests/e2e/test_serve.py checks the real server's memory with a larger upload)."""
    from ingest import upload as upload_mod

    client, users = setup
    big = make_bag(tmp_path / "big", {"big.bin": os.urandom(32 * 1024 * 1024)})
    archive = zip_folder(big, tmp_path / "big.zip")
    seen: list[int] = []
    original = upload_mod.UploadSink.write

    def spy(self: upload_mod.UploadSink, chunk: bytes) -> None:
        seen.append(len(chunk))
        original(self, chunk)

    upload_mod.UploadSink.write = spy  # type: ignore[method-assign]
    try:
        digest = hashlib.sha512(archive.read_bytes()).hexdigest()
        r = upload(client, users, archive, f"sha512:{digest}")
    finally:
        upload_mod.UploadSink.write = original  # type: ignore[method-assign]
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    assert sum(seen) == archive.stat().st_size
    assert r.json()["size"] == archive.stat().st_size  # type: ignore[attr-defined]


def test_a_depositor_lists_its_organisations_deposits_page_by_page(
    make_services: MakeServices, catalog_url: str, tmp_path: Path
) -> None:
    """GET /deposits: the deposits of the depositor's own organisation only, newest first,
    each as GET /deposits/{id} tells it, paged with offset and limit, with their total."""
    services = make_services(catalog_url)
    users = make_users(services, organisation="Sample Mechanism")
    dora = users.bearer("depositor")
    otto = {"Authorization": f"Bearer {make_users_other(services)}"}

    def deposit(headers: dict[str, str], n: int) -> str:
        bag = make_bag(tmp_path / f"bag{n}", {f"letter-{n}.txt": f"letter {n}\n".encode()})
        archive = zip_folder(bag, tmp_path / f"bag{n}.zip")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        r = client.put(
            "/deposits",
            params={"filename": archive.name},
            content=archive.read_bytes(),
            headers={**headers, "X-Custos-Checksum": f"sha256:{digest}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["upload_id"])

    with TestClient(create_app(services.settings)) as client:
        mine = [deposit(dora, n) for n in range(3)]
        theirs = deposit(otto, 3)
        newest_first = mine[::-1]

        body = client.get("/deposits", headers=dora).json()
        assert [d["upload_id"] for d in body["deposits"]] == newest_first
        assert (body["total"], body["offset"], body["limit"], body["next_offset"]) == (
            3,
            0,
            50,
            None,
        )
        for listed in body["deposits"]:  # the same words as GET /deposits/{id}
            one = client.get(f"/deposits/{listed['upload_id']}", headers=dora).json()
            assert listed == one and listed["state"] == "stored"
            assert listed["package_id"] and listed["deposit_id"] and listed["received_at"]
            assert listed["seal"] in ("sealed", "awaiting seal")

        first = client.get("/deposits", params={"limit": 2}, headers=dora).json()
        assert [d["upload_id"] for d in first["deposits"]] == newest_first[:2]
        assert first["total"] == 3 and first["next_offset"] == 2
        rest = client.get("/deposits", params={"offset": 2, "limit": 2}, headers=dora).json()
        assert [d["upload_id"] for d in rest["deposits"]] == newest_first[2:]
        assert rest["total"] == 3 and rest["next_offset"] is None
        past = client.get("/deposits", params={"offset": 10}, headers=dora).json()
        assert past["deposits"] == [] and past["total"] == 3

        other = client.get("/deposits", headers=otto).json()
        assert [d["upload_id"] for d in other["deposits"]] == [theirs] and other["total"] == 1

        for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "all"}):
            r = client.get("/deposits", params=bad, headers=dora)
            assert r.status_code == 422, bad
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert problem["hint"] and problem["findings"][0]["code"] == "REQUEST-INVALID"
            assert problem["findings"][0]["path"] == f"query.{next(iter(bad))}"

        assert client.get("/deposits").status_code == 401
        for role in ("researcher", "archivist", "registrar"):
            r = client.get("/deposits", headers=users.bearer(role))
            assert r.status_code in (401, 403), role
            assert mine[0] not in r.text
