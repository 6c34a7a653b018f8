"""Access to an archive whose primary copy is an S3 bucket (SeaweedFS, real, with Object
Lock): file downloads through the API, a registrar's tier change (a new version read back
from the bucket), the public search (bag-info read from the bucket) and a court bundle all
read through the primary, and nothing of the objects lies under the host's storage_root."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from access.decisions.records import read_access
from access.decisions.rules import Principal
from access.export.bundle import export
from api.app import create_app
from api.download import CHUNK
from archive.catalog.tables import Event, Package
from archive.config import load_settings
from archive.errors import StorageError
from archive.proofs.seal import seal_now
from archive.services import Services, open_services
from archive.storage import ocfl
from tests.api_support import make_users
from tests.conftest import SAMPLE, MakeServices
from tests.functional.test_export import _commands, verify_bundle
from tests.helpers import deposit, make_bag
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import s3_settings

LETTER = "data/documents/transfer-letter.txt"
#: Headers a download carries whichever primary it comes from.
SAME = ("content-length", "content-type", "content-disposition", "x-custos-sha512")
PUBLIC = {
    "Access-Tier": "public",
    "Access-Legal-Basis": "published by the depositor",
    "Consent-Scopes": "public, research",
    "Source-Organization": "Quillfeather Commission",
}


def s3_primary(seaweedfs: SeaweedServer, tmp_path: Path) -> dict[str, Any]:
    """Settings for an S3 primary; storage_root names a folder that must stay empty."""
    return {
        "storage_root": str(tmp_path / "unused"),
        "staging_dir": str(tmp_path / "scratch"),
        "locations": {"shared": s3_settings(seaweedfs)},
        "primary_location": "shared",
    }


def nothing_under(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.is_file()], f"files under {folder}"


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Any]:
    """Open an archive of its own (data folder, catalog) named ``name``."""
    opened: list[Services] = []

    def make(name: str, **overrides: Any) -> Services:
        settings = load_settings(
            data_dir=tmp_path / name, environ={}, overrides={"fsync": False, **overrides}
        )
        services = open_services(settings)
        opened.append(services)
        return services

    yield make
    for s in opened:
        s.close()


def uuid_of(package_id: str) -> str:
    return package_id.removeprefix("urn:uuid:")


def rel_of(services: Services, package_id: str) -> str:
    with services.sessions() as session:
        pkg = session.get(Package, package_id)
        assert pkg is not None
        return pkg.object_path


def test_downloads_from_an_s3_primary_match_a_local_one(
    archive: Any, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    """The same deposits in a local and an S3 archive: every file downloads with the same
    bytes and headers, a large one in many chunks, a name beyond ASCII alike, a registrar's
    logged read of restricted material too."""
    payload = {
        "large.bin": os.urandom(3 * CHUNK + 5),
        "notes/déclaration été.txt": "témoignage\n".encode(),
    }
    bag = make_bag(tmp_path / "bag", payload, info=PUBLIC)
    local = archive("local")
    remote = archive("remote", **s3_primary(seaweedfs, tmp_path))
    assert local.primary.is_local and not remote.primary.is_local
    answers: dict[str, dict[str, Any]] = {}
    for name, services in (("local", local), ("remote", remote)):
        sample = deposit(services, SAMPLE, depositor="Sample Mechanism").package_id
        own = deposit(services, bag, depositor="Sample Mechanism").package_id
        users = make_users(services)
        got: dict[str, Any] = {}
        with TestClient(create_app(services.settings)) as client:
            for package, files in ((sample, ["data/README.txt"]), (own, payload)):
                for path in files:
                    path = path if path.startswith("data/") else f"data/{path}"
                    r = client.get(f"/public/packages/{uuid_of(package)}/files/{path}")
                    assert r.status_code == 200, (name, path, r.text)
                    got[path] = (r.content, {h: r.headers.get(h) for h in SAME}, r.headers)
            r = client.get(
                f"/registrar/packages/{uuid_of(sample)}/files/{LETTER}",
                params={"purpose": "prosecution"},
                headers=users.bearer("registrar", totp=True),
            )
            assert r.status_code == 200, r.text
            got[LETTER] = (r.content, {h: r.headers.get(h) for h in SAME}, r.headers)
            r = client.get(
                f"/archivist/packages/{uuid_of(own)}/files/data/large.bin",
                params={"purpose": "research"},
                headers=users.bearer("archivist"),
            )
            assert r.status_code == 200 and r.content == payload["large.bin"]
        with services.sessions() as session:
            reads = session.execute(select(Event.detail).where(Event.type == "access")).all()
        assert len(reads) == 1 and "purpose: prosecution" in reads[0][0]  # the letter's read
        answers[name] = got
    assert answers["local"].keys() == answers["remote"].keys()
    for path, (content, headers, _) in answers["remote"].items():
        local_content, local_headers, _ = answers["local"][path]
        assert content == local_content, path
        assert headers == local_headers, path
        assert headers["x-custos-sha512"] == hashlib.sha512(content).hexdigest()
        assert headers["content-length"] == str(len(content))
    assert answers["remote"]["data/README.txt"][0] == (SAMPLE / "data/README.txt").read_bytes()
    assert answers["remote"][LETTER][0] == (SAMPLE / LETTER).read_bytes()
    assert (
        "filename*=utf-8''"
        in answers["remote"]["data/notes/déclaration été.txt"][1]["content-disposition"]
    )
    # A local primary still answers from the file (sendfile, byte ranges); the bucket's
    # stream promises no ranges it would not honour.
    assert answers["local"]["data/large.bin"][2].get("accept-ranges") == "bytes"
    assert "accept-ranges" not in answers["remote"]["data/large.bin"][2]
    nothing_under(tmp_path / "unused")


def _overwrite(services: Services, key: str, data: bytes, scratch: Path) -> None:
    """A later version of ``key`` in the bucket (Object Lock keeps the first, not the key)."""
    source = scratch / "altered"
    source.write_bytes(data)
    services.primary.location.put(
        key,
        source,
        sha256=hashlib.sha256(data).hexdigest(),
        sha512=hashlib.sha512(data).hexdigest(),
    )


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], id="one-bit"),
        pytest.param(lambda b: b[: len(b) - 1], id="shorter"),
        pytest.param(lambda b: b + b"x", id="longer"),
    ],
)
def test_a_changed_copy_in_the_bucket_never_downloads_whole(
    make_services: MakeServices,
    seaweedfs: SeaweedServer,
    tmp_path: Path,
    alter: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every byte streamed is checked against the catalog: a copy that changed in the bucket
    stops the response short (its last chunk is never sent), naming the package and the
    file's digest, not its path."""
    services = make_services(**s3_primary(seaweedfs, tmp_path))
    original = os.urandom(2 * CHUNK + 300)
    bag = make_bag(tmp_path / "bag", {"secret-name.bin": original}, info=PUBLIC)
    package = deposit(services, bag, depositor="Sample Mechanism").package_id
    rel = rel_of(services, package)
    content = ocfl.head_state(services.primary.object(rel).inventory())["bag/data/secret-name.bin"]
    url = f"/public/packages/{uuid_of(package)}/files/data/secret-name.bin"
    app = create_app(services.settings)
    with TestClient(app) as client:
        assert client.get(url).content == original
        altered = alter(original)
        _overwrite(services, f"{rel}/{content}", altered, tmp_path)
        # The headers and all but the last chunk went out before the copy's end was read:
        # the error can only cut the response short.
        with pytest.raises(RuntimeError, match="response already started") as raised:
            client.get(url)
    with TestClient(app, raise_server_exceptions=False) as client:
        cut = client.get(url)
    assert cut.headers["content-length"] == str(len(original))
    assert len(cut.content) < len(original) and cut.content == altered[: len(cut.content)]
    cause = raised.value.__cause__
    assert isinstance(cause, StorageError)
    message = str(cause)
    assert "does not match the catalog" in message and package in message
    assert hashlib.sha512(original).hexdigest() in message and "secret-name" not in message
    # The server's log (with the traceback) names neither.
    logged = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "does not match the catalog" in logged and "secret-name" not in logged


def test_a_tier_change_on_an_s3_primary_is_a_new_version_read_back(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    """A registrar's tier change reads the head's access.json from the bucket and writes the
    next version there; the next change starts from that version; the public search (which
    reads the bag-info from the bucket) finds the package before and after."""
    services = make_services(**s3_primary(seaweedfs, tmp_path))
    package = deposit(services, SAMPLE, depositor="Sample Mechanism").package_id
    uuid = uuid_of(package)
    rel = rel_of(services, package)
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:

        def search(words: str) -> int:
            return int(client.get("/public/search", params={"q": words}).json()["total"])

        # "Closing" is in the bag-info only (Source-Organization), read from the bucket.
        assert search("Closing") == 1 and search("README") == 1
        url = f"/registrar/packages/{uuid}/tier"
        change = {"path": "data/README.txt", "tier": "restricted", "legal_basis": "Order 5/2026"}
        r = client.post(url, json=change, headers=users.bearer("registrar", totp=True))
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2
        stored = services.primary.object(rel)
        assert stored.inventory()["head"] == "v2"
        head = read_access(services, rel)
        readme = next(a for a in head.access["assignments"] if a["path"] == "data/README.txt")
        assert readme["tier"] == "restricted" and readme["legal_basis"] == "Order 5/2026"
        assert json.loads(stored.read_bytes("v2/content/custos/access.json")) == head.access
        assert any("Order 5/2026" in e.detail for e in head.events)  # premis.xml, read back
        assert search("README") == 0 and search("Closing") == 1
        assert client.get(f"/public/packages/{uuid}/files/data/README.txt").status_code == 404
        # The next change starts from v2 (what the bucket holds), not from v1.
        change = {"path": "data/images/site-photo.png", "tier": "restricted",
                  "legal_basis": "Order 6/2026"}  # fmt: skip
        r = client.post(url, json=change, headers=users.bearer("registrar", totp=True))
        assert r.status_code == 200 and r.json()["version"] == 3, r.text
        tiers = {a["path"]: a["tier"] for a in read_access(services, rel).access["assignments"]}
        assert tiers["data/README.txt"] == tiers["data/images/site-photo.png"] == "restricted"
        assert search("Closing") == 1  # the package itself stays public
    nothing_under(tmp_path / "unused")


def test_read_access_of_a_missing_object_is_a_storage_error(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    services = make_services(**s3_primary(seaweedfs, tmp_path))
    with pytest.raises(StorageError, match="cannot read the OCFL inventory at primary:"):
        read_access(services, ocfl.object_rel_path("urn:uuid:00000000-0000-4000-8000-0000000000aa"))


def test_a_court_bundle_from_an_s3_primary_verifies(
    make_services: MakeServices, seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    """A sealed package moved into a bucket that becomes the primary (the same catalog and
    timestamp authority): its court bundle, every file, record and sealed manifest read from
    the bucket, verifies with `custos verify --bundle`, a BagIt validator and VERIFY.txt's
    sha512sum/openssl commands; a copy that changed in the bucket refuses the export."""
    local = make_services()
    package = deposit(local, SAMPLE, depositor="Sample Mechanism").package_id
    seal_now(local)
    rel = rel_of(local, package)
    staged = tmp_path / "moved"
    shutil.copytree(local.settings.storage_path / rel, staged)
    services = make_services(**s3_primary(seaweedfs, tmp_path))
    assert services.primary.install(staged, package) == rel
    shutil.rmtree(local.settings.storage_path)  # nothing is read from a folder any more
    registrar = Principal("regina", "registrar", second_factor=True)
    bundle = tmp_path / "bundle"
    result = export(
        services, package, [], to=bundle, requester="Special Tribunal", purpose="prosecution",
        releaser=registrar,
    )  # fmt: skip
    assert LETTER in result.files and len(result.files) == 5 and result.manifests == 2
    for name in result.files:
        copied = bundle / "data" / "files" / name.removeprefix("data/")
        assert copied.read_bytes() == (SAMPLE / name).read_bytes()
    bagit.Bag(str(bundle)).validate()
    code, report, err = verify_bundle(bundle)
    assert code == 0 and report["verified"], err
    checks = _commands((bundle / "data" / "VERIFY.txt").read_text())
    assert {command.split()[0] for command, _ in checks} >= {"sha512sum", "openssl"}
    for command, expected in checks:
        done = subprocess.run(
            ["bash", "-c", command], cwd=bundle / "data", capture_output=True, text=True
        )
        assert done.returncode == 0 and expected in done.stdout + done.stderr, command
    # A stored file that changed in the bucket: nothing is exported.
    content = ocfl.head_state(services.primary.object(rel).inventory())["bag/data/README.txt"]
    original = (SAMPLE / "data/README.txt").read_bytes()
    _overwrite(services, f"{rel}/{content}", original + b"tampered", tmp_path)
    refused = tmp_path / "refused"
    with pytest.raises(StorageError, match="no longer matches its sealed digest"):
        export(
            services, package, ["data/README.txt"], to=refused, requester="R",
            purpose="prosecution",
        )  # fmt: skip
    assert not refused.exists() and not list(tmp_path.glob(".custos-export-*"))
    nothing_under(tmp_path / "unused")
