"""Protected copies encrypted at rest, on SQLite and PostgreSQL: once the protected-identity
tier has a key, a deposit stores its protected files in the age format, and no byte of
their contents is found in the primary, a folder replica, an S3 replica or the catalog;
Debian's age opens a stored copy with the key recovered from two shares; fixity finds and
repairs a flipped bit with no key present; a registrar reads the file only while two
registrars have opened the key for the purpose of the read; the catalog rebuilt from
storage alone knows which copies are encrypted and their plain digests."""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import make_url, select

from access.accounts.users import NewUser, add_user
from access.decisions.rules import access_policy
from access.keys.service import init_key
from access.keys.shares import identity_text, recover
from api.app import create_app
from archive.catalog.rebuild import rebuild
from archive.catalog.tables import Event, File, Package
from archive.errors import InputRejected
from archive.jobs import run_until_idle
from archive.keyring import Opened
from archive.proofs.bundle import verify_bundle
from archive.proofs.seal import seal_now
from archive.proofs.verify import verify_package
from archive.services import Services
from archive.storage.locations import open_location
from fixity.replication import replicate
from fixity.service import run_cycle
from migration.holdings import read_holdings
from tests.api_support import Users, make_users
from tests.conftest import MakeServices
from tests.helpers import deposit, make_bag
from tests.servers import PG_BIN, RedisServer, SeaweedServer
from tests.totp import fresh_code
from tests.unit.fixity.conftest import local_settings, s3_settings

# Random markers, new each run: in a protected file's contents, its name and its folder's,
# and the bag-info of the package that holds it.
MARKER = f"QZXC{secrets.token_hex(8)}".encode()
NAME_MARKER = f"QZXN{secrets.token_hex(8)}"
FOLDER_MARKER = f"QZXF{secrets.token_hex(8)}"
INFO_MARKER = f"QZXB{secrets.token_hex(8)}"
MARKERS = (MARKER, NAME_MARKER.encode(), FOLDER_MARKER.encode(), INFO_MARKER.encode())
STATEMENT = MARKER + b": what I saw at the checkpoint\n" * 200
PUBLIC = b"public situation report\n" * 20
PROTECTED = f"data/testimonies/witness-{FOLDER_MARKER}/statement-{NAME_MARKER}.txt"


class Held:
    def __init__(self, services: Services, shares: tuple[str, ...], recipient: str) -> None:
        self.services, self.shares, self.recipient = services, shares, recipient
        self.package_id = ""


def _bag(folder: Path) -> Path:
    return make_bag(
        folder,
        {PROTECTED.removeprefix("data/"): STATEMENT, "reports/situation.txt": PUBLIC},
        info={
            "Title": f"Interviews with {INFO_MARKER}",
            "External-Description": f"Statements taken in 2019 from {INFO_MARKER}",
            "Access-Tier": "public",
            "Access-Legal-Basis": "Deposit agreement, art. 2",
            "Consent-Scopes": "public, prosecution",
        },
        extra_tag_files={
            "custos-access.txt": b"data/testimonies\tprotected-identity\t-\t-\tprosecution, "
            b"third-party-justice\tProtective measures order 12/2019\n"
        },
    )


@pytest.fixture
def held(
    make_services: MakeServices,
    catalog_url: str,
    tmp_path: Path,
    seaweedfs: SeaweedServer,
    request: pytest.FixtureRequest,
) -> Iterator[Held]:
    # On PostgreSQL, the queue is Redis (many machines); on SQLite, a file in the data folder.
    queue: dict[str, Any] = {}
    if catalog_url:
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        queue = {"backend": "redis", "redis_url": redis_server.url, "name": secrets.token_hex(6)}
    services = make_services(
        catalog_url,
        locations={
            "second": local_settings(tmp_path / "replica"),
            "offsite": s3_settings(seaweedfs),
        },
        identify_formats=False,
        **({"queue": queue} if queue else {}),
    )
    with services.session_scope() as session:
        made = init_key(
            session,
            tier="protected-identity",
            shares=3,
            threshold=2,
            by="test custodian",
            hand_out=lambda _: None,
        )
    h = Held(services, made.shares.mnemonics, made.recipient)
    h.package_id = deposit(services, _bag(tmp_path / "bag"), depositor="Mechanism").package_id
    yield h


def _stored_row(services: Services, package_id: str, name: str) -> File:
    with services.sessions() as session:
        row = session.execute(
            select(File).where(File.package_id == package_id, File.logical_path.endswith(name))
        ).scalar_one()
        session.expunge(row)
        return row


def _sealed_row(services: Services, package_id: str) -> File:
    """The protected file's row: the one payload file stored encrypted."""
    with services.sessions() as session:
        row = session.execute(
            select(File).where(
                File.package_id == package_id,
                File.role == "payload",
                File.sealed_tier.is_not(None),
            )
        ).scalar_one()
        session.expunge(row)
        return row


def _sealed_path(held: Held) -> str:
    return _sealed_row(held.services, held.package_id).logical_path.removeprefix("bag/")


def _holding(root: Path, needle: bytes) -> list[str]:
    return [
        str(p)
        for p in root.rglob("*")
        if needle in str(p).encode() or (p.is_file() and needle in p.read_bytes())
    ]


def _markers_in(where: str, data: bytes) -> list[str]:
    return [f"{where}: {m.decode()}" for m in MARKERS if m in data]


def _catalog_dump(services: Services) -> bytes:
    """The catalog as its own dump tool writes it: pg_dump, or SQLite's ``iterdump``."""
    url = make_url(services.settings.database_url or "sqlite://")
    if url.get_backend_name() == "postgresql":
        dumped = subprocess.run(
            [str(PG_BIN / "pg_dump"), "-h", str(url.host), "-p", str(url.port),
             "-U", str(url.username), str(url.database)],
            capture_output=True, check=True,
        )  # fmt: skip
        assert b"CREATE TABLE public.files" in dumped.stdout
        return dumped.stdout
    conn = sqlite3.connect(services.settings.data_dir / "catalog.sqlite3")
    try:
        text = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert "CREATE TABLE files" in text
    return text.encode()


def _redis_dump(services: Services) -> bytes:
    q = services.settings.queue
    if q.backend != "redis":
        return b""
    client = redis.Redis.from_url(q.redis_url)
    try:
        return b"".join(k + (client.dump(k) or b"") for k in client.scan_iter())
    finally:
        client.close()


def test_no_marker_of_a_protected_file_is_stored_in_clear_anywhere(
    held: Held,
    tmp_path: Path,
    seaweedfs: SeaweedServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Random markers in a protected file's contents, its name and folder, and the bag-info
    of its package: after the deposit, replication to a folder and SeaweedFS, sealing, the
    queued work and a fixity cycle, none is in any byte of the data folder (primary, staging,
    SQLite catalog and queue), the catalog's dump, either replica, the logs or the queue."""
    caplog.set_level(logging.DEBUG)
    services = held.services
    assert replicate(services).ok
    seal_now(services)
    run_until_idle(services)
    assert replicate(services).ok  # what sealing and the jobs added
    assert run_cycle(services, full=True).ok

    sealed = _sealed_row(services, held.package_id)
    plain = _stored_row(services, held.package_id, "situation.txt")
    assert sealed.sealed_tier == "protected-identity" and plain.sealed_tier is None
    assert sealed.logical_path.startswith("bag/data/sealed/")
    assert sealed.plain_sha512 == hashlib.sha512(STATEMENT).hexdigest()
    assert sealed.plain_size == len(STATEMENT) and sealed.size > len(STATEMENT)
    assert sealed.sha512 != sealed.plain_sha512
    with services.sessions() as session:
        package = session.get(Package, held.package_id)
        assert package is not None and package.title == "bag"  # bag-info is encrypted

    data = services.settings.data_dir
    found = [f"{m.decode()} in {p}" for m in MARKERS for p in _holding(data, m)]
    found += [f"{m.decode()} in {p}" for m in MARKERS for p in _holding(tmp_path / "replica", m)]
    for key, body in _s3_keys(services.settings.locations["offsite"]):
        found += _markers_in(f"s3 {key}", key.encode() + body)
    found += _markers_in("catalog dump", _catalog_dump(services))
    found += _markers_in("queue", _redis_dump(services))
    out, err = capfd.readouterr()
    found += _markers_in("logs", (caplog.text + out + err).encode())
    assert found == []
    # The test can fail: public material and the sealed name are there to be found.
    assert _holding(data, PUBLIC[:23]) != []
    assert _holding(data, sealed.logical_path.rsplit("/", 1)[-1].encode()) != []

    with services.sessions() as session:
        details = " ".join(session.execute(select(Event.detail)).scalars())
    assert "files stored encrypted (age-encryption.org/v1) at deposit: 1 of the " in details


def _s3_keys(settings: Any) -> Iterator[tuple[str, bytes]]:
    location = open_location("offsite", settings)
    for key in location.iter_keys(""):
        with location.open(key) as reader:
            yield key, reader.read()


def test_debian_age_opens_a_stored_copy_with_the_key_of_two_shares(
    held: Held, tmp_path: Path
) -> None:
    assert shutil.which("age"), "Debian's age is absent: `make test` installs it"
    row = _sealed_row(held.services, held.package_id)
    with held.services.sessions() as session:
        package = session.get(Package, held.package_id)
        assert package is not None
        stored = held.services.settings.storage_path / package.object_path / row.content_path
    identity = tmp_path / "identity.txt"
    secret = recover([("a", held.shares[0]), ("c", held.shares[2])])
    identity.write_text(identity_text(secret) + "\n")
    opened = subprocess.run(["age", "-d", "-i", str(identity), str(stored)], capture_output=True)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout == STATEMENT


def test_fixity_repairs_a_flipped_bit_in_an_encrypted_copy_with_no_key(held: Held) -> None:
    services = held.services
    assert replicate(services).ok
    first = run_cycle(services, full=True)
    assert first.ok and not first.damage
    row = _sealed_row(services, held.package_id)
    with services.sessions() as session:
        package = session.get(Package, held.package_id)
        assert package is not None
        stored = services.settings.storage_path / package.object_path / row.content_path
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x04
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    assert services.keyring.opened("protected-identity") is None  # no key anywhere
    report = run_cycle(services, full=True)
    assert len(report.damage) == 1 and row.content_path in report.damage[0]
    assert len(report.repairs) == 1 and report.ok
    assert hashlib.sha512(stored.read_bytes()).hexdigest() == row.sha512


def test_a_registrar_reads_only_while_two_registrars_have_opened_the_key(
    held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = held.services
    users: Users = make_users(services)
    with services.session_scope() as session:
        rex: NewUser = add_user(
            session, "rex", role="registrar", policy=access_policy(services.settings)
        )
    uuid = held.package_id.removeprefix("urn:uuid:")
    url = f"/registrar/packages/{uuid}/files/{_sealed_path(held)}"
    by_name = f"/registrar/packages/{uuid}/files/{PROTECTED}"

    def headers(user: NewUser) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {user.token}",
            "X-Custos-TOTP": fresh_code(user.totp_secret),
        }

    def unlock(user: NewUser, share: str, purpose: str = "prosecution") -> Any:
        body = {"tier": "protected-identity", "purpose": purpose, "share": share}
        return client.post("/registrar/keys/unlock", json=body, headers=headers(user))

    with TestClient(create_app(services.settings)) as client:

        def read(purpose: str = "prosecution", at: str = url) -> Any:
            return client.get(at, params={"purpose": purpose}, headers=headers(users.registrar))

        def search(words: str) -> list[str]:
            found = client.get(
                "/registrar/search", params={"q": words}, headers=headers(users.registrar)
            )
            assert found.status_code == 200, found.text
            return [hit["package_id"] for hit in found.json()["results"]]

        # The real names and bag-info are encrypted: not found while the key is locked.
        assert search(NAME_MARKER) == [] and search(INFO_MARKER) == []
        locked = read()
        assert locked.status_code == 423, locked.text
        assert "key is locked" in locked.json()["detail"]
        unnamed = read(at=by_name)  # its real name is encrypted too
        assert unnamed.status_code == 404 and "sealed name" in unnamed.json()["hint"]
        assert unlock(users.registrar, held.shares[0]).json()["unlocked"] is False
        assert read().status_code == 423  # one share opens nothing
        assert unlock(rex, held.shares[1]).json()["unlocked"] is True
        opened = read()
        assert opened.status_code == 200, opened.text
        assert opened.content == STATEMENT
        assert opened.headers["X-Custos-SHA512"] == hashlib.sha512(STATEMENT).hexdigest()
        listed = client.get(
            f"/registrar/packages/{uuid}",
            params={"purpose": "prosecution"},
            headers=headers(users.registrar),
        ).json()["files"]
        entry = next(f for f in listed if f.get("encrypted"))
        assert entry["name"] == PROTECTED and entry["path"] == _sealed_path(held)
        assert entry["sha512"] == hashlib.sha512(STATEMENT).hexdigest()
        elsewhere = client.get(
            f"/registrar/packages/{uuid}",
            params={"purpose": "research"},
            headers=headers(users.registrar),
        )
        assert PROTECTED not in elsewhere.text  # open for another purpose: no name
        named = read(at=by_name)  # the open key reads its names map too
        assert search(NAME_MARKER) == [held.package_id]
        assert search(FOLDER_MARKER) == [held.package_id]
        assert search(INFO_MARKER) == [held.package_id]
        assert named.status_code == 200 and named.content == STATEMENT
        assert f"statement-{NAME_MARKER}.txt" in named.headers["Content-Disposition"]
        other = read("third-party-justice")
        assert other.status_code == 423 and "open for 'prosecution'" in other.json()["detail"]
        public = client.get(
            f"/registrar/packages/{uuid}/files/data/reports/situation.txt",
            params={"purpose": "prosecution"},
            headers=headers(users.registrar),
        )
        assert public.status_code == 200 and public.content == PUBLIC

        later = datetime.now(UTC) + timedelta(minutes=services.settings.keys.unlock_minutes + 1)
        monkeypatch.setattr("archive.clock.source", lambda: later)
        assert read().status_code == 423  # its time is up

    with services.sessions() as session:
        reads = session.execute(
            select(Event.detail).where(Event.type == "access").order_by(Event.id)
        ).scalars()
        text = " ".join(reads)
    # The two protected reads that happened (by its sealed name, by its real one); the
    # refused ones recorded nothing (the public file's read needs no record); and the three
    # searches that found the package through the open key, under its purpose.
    assert text.count("content of 1 file read") == 2
    assert text.count("found in its encrypted names or bag-info; by registrar regina; "
                      "purpose: prosecution") == 3  # fmt: skip


def test_the_catalog_rebuilt_from_storage_knows_the_encrypted_copies(held: Held) -> None:
    services = held.services
    before = _sealed_row(services, held.package_id)
    rebuild(services)
    after = _sealed_row(services, held.package_id)
    assert (after.sealed_tier, after.plain_sha512, after.plain_sha256, after.plain_size) == (
        before.sealed_tier,
        before.plain_sha512,
        before.plain_sha256,
        before.plain_size,
    )
    assert after.sha512 == before.sha512


def test_verify_proves_the_stored_bytes_and_the_sealed_plain_digest_and_decrypts_when_open(
    held: Held,
) -> None:
    services = held.services
    seal_now(services)
    path = _sealed_path(held)
    locked = verify_package(services, held.package_id, [path])
    assert locked.ok, locked.as_dict()
    lines = " ".join(step["text"] for step in locked.as_dict()["steps"])
    assert "which is locked: its plain bytes were not read here" in lines
    assert "sealed on its own" in lines

    secret = recover([("a", held.shares[0]), ("b", held.shares[1])])
    services.keyring.hold(
        Opened(
            "protected-identity",
            held.recipient,
            pyrage.x25519.Identity.from_str(identity_text(secret)),
            "prosecution",
            ("regina", "rex"),
            datetime.now(UTC) + timedelta(minutes=5),
        )
    )
    opened = verify_package(services, held.package_id, [path])
    assert opened.ok, opened.as_dict()
    text = " ".join(step["text"] for step in opened.as_dict()["steps"])
    assert "decrypted with the protected-identity tier's key" in text
    assert hashlib.sha512(STATEMENT).hexdigest()[:16] in text


def test_a_court_bundle_releases_the_plain_file_only_while_the_key_is_open(
    held: Held, tmp_path: Path
) -> None:
    services = held.services
    seal_now(services)
    users = make_users(services)
    uuid = held.package_id.removeprefix("urn:uuid:")
    with TestClient(create_app(services.settings)) as client:

        def reg() -> dict[str, str]:
            return users.bearer("registrar", totp=True)

        body = {
            "requester": "Special Tribunal",
            "reference": "ST/2026/14",
            "purpose": "prosecution",
            "package": uuid,
            "paths": [_sealed_path(held)],
        }
        made = client.post("/registrar/requests", json=body, headers=reg())
        assert made.status_code == 201, made.text
        request_id = made.json()["request_id"]
        refused = client.post(f"/registrar/requests/{request_id}/answer", headers=reg())
        assert refused.status_code == 423, refused.text
        assert not list(tmp_path.glob("**/.custos-export-*"))

        secret = recover([("a", held.shares[1]), ("b", held.shares[2])])
        client.app.state.services.keyring.hold(  # type: ignore[attr-defined]
            Opened(
                "protected-identity",
                held.recipient,
                pyrage.x25519.Identity.from_str(identity_text(secret)),
                "prosecution",
                ("regina", "rex"),
                datetime.now(UTC) + timedelta(minutes=5),
            )
        )
        answered = client.post(f"/registrar/requests/{request_id}/answer", headers=reg())
        assert answered.status_code == 200, answered.text
        # The archive's own copy of the bundle keeps the testimony encrypted.
        assert _holding(services.settings.data_dir, MARKER) == []
        keyring = client.app.state.services.keyring  # type: ignore[attr-defined]
        opened = keyring.close("protected-identity")
        locked = client.get(f"/registrar/requests/{request_id}/bundle", headers=reg())
        assert locked.status_code == 423, locked.text
        keyring.hold(opened)
        r = client.get(f"/registrar/requests/{request_id}/bundle", headers=reg())
        assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        archive.extractall(tmp_path / "unzipped")
    (bundle,) = (tmp_path / "unzipped").iterdir()
    assert (bundle / "data" / "files" / _sealed_path(held).removeprefix("data/")).read_bytes() == (
        STATEMENT
    )
    report = verify_bundle(bundle)
    assert report.ok, report.steps


def test_migration_leaves_encrypted_copies_alone(held: Held) -> None:
    with held.services.sessions() as session:
        holdings = read_holdings(session, [held.package_id])
    names = sorted(f.logical_path for f in holdings.files)
    assert names == ["bag/data/reports/situation.txt"]


def test_restricted_files_are_encrypted_only_when_the_policy_says_so(
    make_services: MakeServices, tmp_path: Path
) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[2] / "policies", policy_dir,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))  # fmt: skip
    services = make_services(identify_formats=False, policy_dir=policy_dir)
    policy = access_policy(services.settings)
    with services.session_scope() as session, pytest.raises(InputRejected) as caught:
        init_key(session, tier="restricted", shares=3, threshold=2, by="t",
                 hand_out=lambda _: None, policy=policy)  # fmt: skip
    assert caught.value.findings[0].code == "KEY-TIER-PLAIN"

    toml = policy_dir / "access.toml"
    toml.write_text(toml.read_text().replace("encrypt_at_rest = false", "encrypt_at_rest = true"))
    policy = access_policy(services.settings)
    assert policy.tiers.restricted.encrypt_at_rest
    with services.session_scope() as session:
        init_key(session, tier="restricted", shares=3, threshold=2, by="t",
                 hand_out=lambda _: None, policy=policy)  # fmt: skip
    bag = make_bag(
        tmp_path / "bag",
        {"letters/letter.txt": STATEMENT, "reports/situation.txt": PUBLIC},
        info={"Access-Tier": "public", "Access-Legal-Basis": "Deposit agreement, art. 2"},
        extra_tag_files={
            "custos-access.txt": b"data/letters\trestricted\t-\t-\tprosecution\tOrder 5/2026\n"
        },
    )
    package_id = deposit(services, bag, depositor="Mechanism").package_id
    letter = _sealed_row(services, package_id)
    report = _stored_row(services, package_id, "situation.txt")
    assert letter.sealed_tier == "restricted" and report.sealed_tier is None
    assert _holding(services.settings.data_dir, MARKER) == []
