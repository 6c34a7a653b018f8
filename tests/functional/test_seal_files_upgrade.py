"""An archive sealed before file seals existed (tests/data/archive-before-file-seals, made by the
previous release's code: see its README.md) is brought up to date by `custos seal files`: each
file of every version gets its own proof, and the manifests' seals stay as they were."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import create_engine, select

from archive.catalog.tables import Seal, SealBatch
from archive.config import load_settings
from archive.proofs import fileseal
from archive.proofs.backlog import backlog
from archive.proofs.jobs import seal_job
from archive.proofs.seal import EXTENSION
from archive.services import open_services
from tests.conftest import ROOT
from tests.functional.test_cli import custos

FIXTURE = ROOT / "tests" / "data" / "archive-before-file-seals"
SAMPLE_TITLE = "Sample holding (fictional records)"
SAMPLE_PAYLOAD = (
    "data/README.txt",
    "data/documents/site-report.pdf",
    "data/documents/transfer-inventory.csv",
    "data/documents/transfer-letter.txt",
    "data/images/site-photo.png",
)
_NEW_RECORD = re.compile(r"^v[1-9][0-9]*/files-sha512(\.json|\.local-[0-9]+\.ers)$")


def copy_fixture(tmp_path: Path) -> Path:
    """A copy of the fixture's data folder. Its local TSA's openssl configuration still names
    the folder the previous release made it in (``dir = <absolute path>``): the current code
    brings it to ``dir = .`` when it starts the authority
    (test_a_copied_data_folder_seals_with_its_own_authority)."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data, ignore=shutil.ignore_patterns("README.md"))
    return data


def object_roots(data: Path) -> dict[str, Path]:
    """Each package's object root in storage, by package id."""
    roots = {}
    for marker in (data / "storage").rglob("0=ocfl_object_1.1"):
        inventory = json.loads((marker.parent / "inventory.json").read_text())
        roots[inventory["id"]] = marker.parent
    return roots


def content_files(data: Path) -> dict[tuple[str, int], int]:
    """(package id, version) -> how many content files that version adds, from the inventories."""
    out = {}
    for package_id, root in object_roots(data).items():
        inventory = json.loads((root / "inventory.json").read_text())
        paths = [p for ps in inventory["manifest"].values() for p in ps]
        for name in inventory["versions"]:
            out[(package_id, int(name[1:]))] = sum(p.startswith(f"{name}/content/") for p in paths)
    return out


def records(data: Path) -> dict[str, bytes]:
    """Every file beside the records of every package (records, sidecars, trust anchors)."""
    out = {}
    for package_id, root in object_roots(data).items():
        folder = root / EXTENSION
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out[f"{package_id} {path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return out


def query(data: Path, *columns: Any, where: Any = None) -> list[tuple[Any, ...]]:
    engine = create_engine(f"sqlite:///{data / 'catalog.sqlite3'}")
    statement = select(*columns)
    if where is not None:
        statement = statement.where(where)
    try:
        with engine.connect() as conn:
            return sorted((tuple(r) for r in conn.execute(statement)), key=repr)
    finally:
        engine.dispose()


def seal_rows(data: Path) -> list[tuple[Any, ...]]:
    """Every seal with its batch's token (batch ids may change in a rebuild; tokens do not)."""
    return query(
        data,
        Seal.package_id,
        Seal.subject_path,
        Seal.subject_sha512,
        Seal.record_path,
        SealBatch.root,
        SealBatch.tsa,
        SealBatch.token,
        SealBatch.serial_number,
        where=Seal.batch_id == SealBatch.id,
    )


def packages(data: Path) -> tuple[str, str]:
    """(the sample holding's package id, the other package's)."""
    code, listing, err = custos(data, "list", "--json")
    assert code == 0, err
    by_title = {p["title"]: p["package_id"] for p in listing["packages"]}
    assert len(by_title) == 2 and SAMPLE_TITLE in by_title, by_title
    sample = by_title.pop(SAMPLE_TITLE)
    [other] = by_title.values()
    return sample, other


def seal_files(data: Path) -> dict[str, Any]:
    code, body, err = custos(data, "seal", "files", "--json")
    assert code == 0, (body, err)
    assert body["status"] == "ok" and body["failures"] == [], body
    return dict(body)


def test_fixture_is_what_the_previous_release_left(tmp_path: Path) -> None:
    """Sealed manifests, no file seal anywhere, a local TSA whose certificate is still valid
    beyond the renewal window (else remake the fixture: see its README.md)."""
    data = copy_fixture(tmp_path)  # a copy: reading SQLite in WAL mode writes beside it
    names = list(records(data))
    assert names and not [n for n in names if "/files-" in n]
    assert any(n.endswith("/inventory.json.local-2.ers") for n in names)
    assert not [s for _, s, *_ in seal_rows(data) if fileseal.is_subject(s)]
    assert len(content_files(data)) == 4  # two packages of two versions each
    certificate = x509.load_pem_x509_certificate((data / "tsa" / "tsa.pem").read_bytes())
    assert certificate.not_valid_after_utc > datetime.now(UTC) + timedelta(days=180)


def test_seal_files_brings_an_earlier_archive_to_per_file_proofs(tmp_path: Path) -> None:
    data = copy_fixture(tmp_path)
    sample, other = packages(data)
    files = content_files(data)
    versions = sorted(files)
    assert {p for p, _ in versions} == {sample, other}
    manifest_seals = seal_rows(data)
    records_before = records(data)

    # Before: every manifest sealed, every version awaiting its file seal.
    code, st, err = custos(data, "status", "--json")
    assert code == 0, err
    assert st["seal_backlog"]["pending"] == 0
    assert st["seal_backlog"]["file_seals_pending"] == {"versions": len(versions), "packages": 2}
    code, report, _ = custos(data, "verify", sample, "data/images/site-photo.png", "--json")
    assert code == 3 and report["status"] == "failed" and not report["verified"]
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert failed == [
        "the files of v1 are not yet sealed each on its own (run `custos seal files`)."
    ]
    passed = [s["text"] for s in report["steps"] if s["ok"]]
    assert any(t.startswith("data/images/site-photo.png: the stored bytes hash") for t in passed)
    assert any(t.startswith("v1/inventory.json (sha512 ") for t in passed)  # inventory proof

    # The upgrade: one file seal per version, every content file sealed on its own.
    body = seal_files(data)
    assert sorted((s["package_id"], s["manifest"]) for s in body["sealed"]) == sorted(
        (p, f"v{n}/files-sha512") for p, n in versions
    )
    assert body["files_sealed_on_their_own"] == sum(files.values())
    assert len(body["tokens"]) == 1 and body["tokens"][0]["tsa"] == "local"

    # After: nothing pending, each payload file of the sample proven on its own.
    code, st, err = custos(data, "status", "--json")
    assert code == 0, err
    assert st["seal_backlog"]["pending"] == 0
    assert st["seal_backlog"]["file_seals_pending"] == {"versions": 0, "packages": 0}
    code, report, err = custos(data, "verify", sample, *SAMPLE_PAYLOAD, "--json")
    assert code == 0 and report["verified"], (report, err)
    alone = [s["text"] for s in report["steps"] if "sealed on its own" in s["text"]]
    assert sorted(t.split(":", 1)[0] for t in alone) == [
        f"v1/content/bag/{p}" for p in sorted(SAMPLE_PAYLOAD)
    ]
    assert all("(v1/files-sha512, " in t and "without naming any other file" in t for t in alone)
    for package_id in (sample, other):
        code, report, err = custos(data, "verify", package_id, "--json")
        assert code == 0 and report["verified"], (report, err)
        sealed = {s["text"].split(" ", 1)[0] for s in report["steps"] if s["ok"]}
        assert {"v1/files-sha512", "v2/files-sha512"} <= sealed

    # Nothing left for a second run.
    again = seal_files(data)
    assert again["sealed"] == [] and again["files_sealed_on_their_own"] == 0

    # The manifests' seals are untouched: the same rows and the same record files; what was
    # added is each version's sidecar and its record.
    after = seal_rows(data)
    assert [r for r in after if not fileseal.is_subject(r[1])] == manifest_seals
    records_after = records(data)
    assert {k: records_after[k] for k in records_before} == records_before
    added = sorted(k.split(" ", 1)[1] for k in set(records_after) - set(records_before))
    assert all(_NEW_RECORD.match(name) for name in added), added
    assert len(added) == 2 * len(versions)

    # A catalog rebuilt from storage finds the file seals again.
    for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (data / name).unlink(missing_ok=True)
    code, rebuilt, err = custos(data, "catalog", "rebuild", "--json")
    assert code == 0 and rebuilt["failed"] == [], (rebuilt, err)
    # (The earlier custody log's checkpoint seals stay in storage, named by the new log.)
    assert seal_rows(data) == [r for r in after if r[0] is not None]
    code, st, err = custos(data, "status", "--json")
    assert code == 0 and st["seal_backlog"]["file_seals_pending"]["versions"] == 0, err
    code, report, err = custos(data, "verify", sample, *SAMPLE_PAYLOAD, "--json")
    assert code == 0 and report["verified"], (report, err)
    assert sum("sealed on its own" in s["text"] for s in report["steps"]) == len(SAMPLE_PAYLOAD)
    code, report, err = custos(data, "verify", other, "--json")
    assert code == 0 and report["verified"], (report, err)
    again = seal_files(data)
    assert again["sealed"] == []


def _damage(data: Path, package_id: str, how: str) -> None:
    """Alter v1's file seal in storage after it was sealed: its sidecar, or its record."""
    folder = object_roots(data)[package_id] / EXTENSION / "v1"
    sidecar = folder / "files-sha512.json"
    [record] = folder.glob("files-sha512.*.ers")
    if how == "salt":  # one file's salt changed: the sidecar no longer leads to its root
        doc = json.loads(sidecar.read_bytes())
        salt = doc["files"][0][2]
        doc["files"][0][2] = ("1" if salt[0] == "0" else "0") + salt[1:]
        sidecar.write_bytes(json.dumps(doc, indent=0).encode() + b"\n")
    elif how == "reformatted":  # the same document, other bytes than those sealed
        sidecar.write_bytes(json.dumps(json.loads(sidecar.read_bytes()), indent=2).encode())
    elif how == "reissued":  # a sound file seal of the same files, other salts (another root)
        seal = fileseal.load(sidecar.read_bytes())
        fresh = fileseal.make(
            seal.algorithm, seal.version, [(e.path, e.digest) for e in seal.entries]
        )
        sidecar.write_bytes(fresh.to_json())
    elif how == "record-missing":
        record.unlink()
    else:  # "record-garbled"
        record.write_bytes(b"not an evidence record")


@pytest.mark.parametrize(
    "how", ["salt", "reformatted", "reissued", "record-missing", "record-garbled"]
)
def test_an_altered_file_seal_fails_verification(tmp_path: Path, how: str) -> None:
    """`custos verify PACKAGE` names the file seal altered after sealing, and only it."""
    data = copy_fixture(tmp_path)
    sample, _ = packages(data)
    seal_files(data)
    _damage(data, sample, how)

    code, report, err = custos(data, "verify", sample, "--json")
    assert code == 3 and report["status"] == "failed", (report, err)
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert len(failed) == 1 and failed[0].startswith("v1/files-sha512: "), failed
    assert all(s["ok"] for s in report["steps"] if not s["text"].startswith("v1/files-sha512"))


@pytest.mark.parametrize("how", ["salt", "reissued", "record-missing", "record-garbled"])
def test_an_altered_file_seal_fails_a_files_own_proof(tmp_path: Path, how: str) -> None:
    """`custos verify PACKAGE PATH` reports the file seal that no longer proves the file as a
    failed step (not as an error, or a crash, that ends the verification). A sidecar merely
    reformatted still proves each file (same salts, same root): not tested here."""
    data = copy_fixture(tmp_path)
    sample, _ = packages(data)
    seal_files(data)
    _damage(data, sample, how)

    code, report, err = custos(data, "verify", sample, "data/images/site-photo.png", "--json")
    assert code == 3 and report is not None and report["status"] == "failed", (code, report, err)
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert failed and all("v1/files-sha512" in t for t in failed), failed
    assert any(
        t.startswith("v1/inventory.json (sha512 ")
        for t in (s["text"] for s in report["steps"] if s["ok"])
    )


def test_a_copied_data_folder_seals_with_its_own_authority(tmp_path: Path) -> None:
    """A data folder moved or restored elsewhere keeps sealing with its own local TSA (its
    key, its serial file), not with whatever is at the path it was first made in."""
    data = copy_fixture(tmp_path)
    serial = (data / "tsa" / "serial").read_text()
    code, body, err = custos(data, "seal", "files", "--json")
    assert code == 0, (body, err)
    assert (data / "tsa" / "serial").read_text() != serial
    sample, _ = packages(data)
    code, report, err = custos(data, "verify", sample, "data/images/site-photo.png", "--json")
    assert code == 0 and report["verified"], (report, err)


def test_the_workers_seal_job_seals_the_files_too(tmp_path: Path) -> None:
    """With nothing else awaiting a seal, the scheduled seal job still sees the versions
    without a file seal as due, and seals them."""
    data = copy_fixture(tmp_path)
    services = open_services(load_settings(data_dir=data, overrides={"fsync": False}))
    try:
        with services.sessions() as session:
            before = backlog(session, services.settings)
        assert before.pending == 0 and before.files_versions == 4 and before.due
        seal_job(services)
        with services.sessions() as session:
            after = backlog(session, services.settings)
        assert after.files_versions == 0 and not after.due
    finally:
        services.close()
