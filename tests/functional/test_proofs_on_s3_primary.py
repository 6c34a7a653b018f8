"""Seals, `custos verify`, `custos audit verify`, renewal and `custos catalog rebuild` with the
primary copy in an S3 bucket (SeaweedFS, real, with Object Lock) and nothing under the host's
storage root: evidence records, file seals and the custody log's checkpoints are written into
the bucket and read back from it alone; a record or checkpoint altered there (a new version
of its key with other bytes) is named."""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive.catalog.tables import Checkpoint, Seal
from archive.checkpoints import LOG_DIR
from archive.config import load_settings
from archive.proofs.seal import EXTENSION
from archive.proofs.verify import verify_package
from archive.services import Services, open_services
from archive.storage import ocfl
from tests.conftest import SAMPLE
from tests.fake_tsa import FakeTimeTSA
from tests.functional.test_cli import custos
from tests.servers import SeaweedServer
from tests.unit.fixity.conftest import s3_settings

NOW = datetime.now(UTC)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def configure(data: Path, tmp_path: Path, location: dict[str, Any]) -> None:
    """A data folder whose primary is the bucket; its storage_root is a folder never used."""
    data.mkdir(parents=True)
    lines = [
        f"storage_root = {toml_value(tmp_path / 'unused')}",
        f"staging_dir = {toml_value(data / 'scratch')}",
        'primary_location = "shared"',
        "fsync = false",
        "",
        "[locations.shared]",
        *(f"{k} = {toml_value(v)}" for k, v in location.items()),
    ]
    (data / "custos.toml").write_text("\n".join(lines) + "\n")


def open_archive(data: Path, env: dict[str, str] | None = None) -> Services:
    return open_services(load_settings(data_dir=data, environ=env or {}))


@pytest.fixture
def archive(tmp_path: Path, seaweedfs: SeaweedServer) -> Iterator[tuple[Path, Services]]:
    """A data folder configured for an S3 primary, and its services (for looking around)."""
    data = tmp_path / "data"
    configure(data, tmp_path, s3_settings(seaweedfs))
    services = open_archive(data)
    try:
        yield data, services
    finally:
        services.close()


def sealed_count(services: Services, package: str) -> int:
    """The package's sealed manifests and file seals: its four bag manifests, and each
    version's inventory and file seal (a second version if format identification ran)."""
    versions = services.primary.object(ocfl.object_rel_path(package)).inventory()["versions"]
    return 4 + 2 * len(versions)


def ingest(data: Path, env: dict[str, str] | None = None) -> str:
    code, body, err = custos(
        data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json", env=env
    )
    assert code == 0 and body["seal"]["status"] == "sealed", err
    return str(body["package_id"])


def keys(services: Services, prefix: str) -> list[str]:
    return sorted(services.primary.location.iter_keys(prefix))


def host_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "unused").rglob("*") if p.is_file()]


def overwrite(seaweedfs: SeaweedServer, services: Services, key: str, data: bytes) -> None:
    """A new version of ``key`` in the bucket, behind the archive's back."""
    location: Any = services.primary.location
    seaweedfs.client().put_object(Bucket=location.bucket, Key=location.prefix + key, Body=data)


def test_seal_verify_audit_and_rebuild_from_the_bucket_alone(
    tmp_path: Path, archive: tuple[Path, Services]
) -> None:
    data, services = archive
    package = ingest(data)  # stores, then seals at once with the embedded authority
    rel = ocfl.object_rel_path(package)

    # The records, the file seals and their trust anchors are in the object in the bucket;
    # the log's checkpoint, its record and anchor beside the objects; nothing on this host.
    records = keys(services, f"{rel}/{EXTENSION}/")
    assert sum(k.endswith(".ers") for k in records) == sealed_count(services, package)
    assert f"{rel}/{EXTENSION}/v1/files-sha512.json" in records
    assert any(k.startswith(f"{rel}/{EXTENSION}/trust/") for k in records)
    log = keys(services, f"{LOG_DIR}/")
    checkpoints = [k for k in log if k.endswith(".json")]
    assert len(checkpoints) == 1 and any(k.endswith(".ers") for k in log)
    assert any(k.startswith(f"{LOG_DIR}/trust/") for k in log)
    assert host_files(tmp_path) == []
    assert [p.name for p in (data / "scratch").iterdir() if p.is_file()] in ([], [".commit.lock"])
    with services.sessions() as s:
        sealed = s.execute(select(Seal.subject_path).where(Seal.package_id.is_(None))).all()
    assert [tuple(r) for r in sealed] == [(checkpoints[0],)]

    # custos verify: the package and one file (its bytes streamed from the bucket).
    code, report, err = custos(data, "verify", package, "--json")
    assert code == 0 and report["verified"], err
    texts = [s["text"] for s in report["steps"]]
    assert f"is stored at primary:{rel}" in texts[0]
    assert sum("is sealed by" in t for t in texts) == sealed_count(services, package)
    code, report, _ = custos(data, "verify", package, "data/images/site-photo.png", "--json")
    assert code == 0 and report["verified"]
    texts = [s["text"] for s in report["steps"]]
    assert any(t.startswith("data/images/site-photo.png: the stored bytes hash") for t in texts)
    assert any(t.startswith("v1/content/bag/data/images/site-photo.png: sealed on") for t in texts)

    # custos audit verify: the checkpoint and its record, read from the bucket.
    code, audit, err = custos(data, "audit", "verify", "--json")
    assert code == 0 and audit["verified"], err
    assert audit["checkpoints_sealed"] == 1 and audit["problems"] == []

    # A rebuild in place finds the same seals again, the checkpoint's included.
    def seal_rows(svc: Services) -> list[tuple[Any, ...]]:
        with svc.sessions() as s:
            rows = s.execute(select(Seal.package_id, Seal.subject_path, Seal.record_path))
            return sorted((tuple(r) for r in rows), key=lambda r: (r[0] or "", r[1], r[2]))

    before = seal_rows(services)
    code, body, err = custos(data, "catalog", "rebuild", "--json")
    assert code == 0 and body["indexed"] == [package] and body["earlier_custody_logs"] == [], err
    assert seal_rows(services) == before

    # Another host, an empty catalog, the same bucket (and the same authority's root): the
    # package, its seals and the log's sealed checkpoint are recovered from the bucket alone.
    other = tmp_path / "other"
    settings = tomllib.loads((data / "custos.toml").read_text())
    configure(other, tmp_path, settings["locations"]["shared"])
    shutil.copytree(data / "tsa", other / "tsa")
    with services.sessions() as s:
        chain = s.execute(select(Checkpoint.chain)).scalar_one()
    code, body, err = custos(other, "catalog", "rebuild", "--json")
    assert code == 0 and body["status"] == "ok", err
    assert body["indexed"] == [package] and body["earlier_custody_logs"] == [chain]
    rebuilt = open_archive(other)
    try:
        assert [r for r in seal_rows(rebuilt) if r[0]] == [r for r in before if r[0]]
    finally:
        rebuilt.close()
    code, report, err = custos(other, "verify", package, "--json")
    assert code == 0 and report["verified"], err
    code, audit, err = custos(other, "audit", "verify", "--json")
    assert code == 0 and audit["problems"] == [], err
    assert any(f"earlier custody log ({chain})" in n for n in audit["notes"])
    assert host_files(tmp_path) == []


def test_a_record_altered_in_the_bucket_fails_verify(
    archive: tuple[Path, Services], seaweedfs: SeaweedServer
) -> None:
    data, services = archive
    package = ingest(data)
    rel = ocfl.object_rel_path(package)
    record = next(k for k in keys(services, f"{rel}/{EXTENSION}/v1/") if "inventory.json." in k)
    der = bytearray(services.primary.read_bytes(record))
    der[-20] ^= 0xFF  # inside the token's signature
    overwrite(seaweedfs, services, record, bytes(der))
    code, report, _ = custos(data, "verify", package, "--json")
    assert code == 3 and report["verified"] is False
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    name = record.removeprefix(f"{rel}/")
    assert len(failed) == 1
    assert failed[0].startswith(f"v1/inventory.json: its evidence record {name} fails")
    assert f"(read from primary:{record})" in failed[0], failed

    # Not a record at all: named as such.
    overwrite(seaweedfs, services, record, b"not DER")
    code, report, _ = custos(data, "verify", package, "--json")
    assert code == 3
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert failed and all(name in t and "fails" in t for t in failed)


def test_a_checkpoint_altered_in_the_bucket_fails_the_audit(
    archive: tuple[Path, Services], seaweedfs: SeaweedServer
) -> None:
    data, services = archive
    ingest(data)
    checkpoint = next(k for k in keys(services, f"{LOG_DIR}/") if k.endswith(".json"))
    doc = json.loads(services.primary.read_bytes(checkpoint))
    doc["head"] = "0" * 128
    overwrite(seaweedfs, services, checkpoint, json.dumps(doc).encode())
    code, audit, _ = custos(data, "audit", "verify", "--json")
    assert code != 0 and audit["verified"] is False
    problems = {p["code"]: p["text"] for p in audit["problems"]}
    assert checkpoint in problems["log-rewritten"] and checkpoint in problems["checkpoint-seal"]

    overwrite(seaweedfs, services, checkpoint, b"{not json")
    code, audit, _ = custos(data, "audit", "verify", "--json")
    assert code != 0
    assert [p["code"] for p in audit["problems"]] == ["checkpoint-unreadable"]
    assert checkpoint in audit["problems"][0]["text"]


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[FakeTimeTSA]:
    """TSA "old" expires in 30 days (inside the 180-day margin); "new" runs for 10 years."""
    with FakeTimeTSA(tmp_path / "pki") as server:
        server.add("old", NOW - timedelta(days=700), NOW + timedelta(days=30))
        server.add("new", NOW - timedelta(days=1), NOW + timedelta(days=3650))
        yield server


def test_renewed_records_go_into_the_bucket(
    tmp_path: Path, archive: tuple[Path, Services], tsa: FakeTimeTSA
) -> None:
    data, services = archive
    env = {
        "CUSTOS_TSA__LOCAL": "false",
        "CUSTOS_TSA__URLS": json.dumps([tsa.url]),
        "CUSTOS_TSA__ROOTS": json.dumps([str(tsa.root_pem)]),
    }
    package = ingest(data, env)
    before = set(services.primary.location.iter_keys())
    tsa.use("new")
    code, body, err = custos(data, "seal", "renew", "--json", env=env)
    checkpoints = [k for k in before if k.startswith(LOG_DIR) and k.endswith(".json")]
    assert len(body["renewed"]) == sealed_count(services, package) + len(checkpoints)
    assert code == 0 and checkpoints, err
    rel = ocfl.object_rel_path(package)
    added = set(services.primary.location.iter_keys()) - before
    assert {
        (r["new_record"] if r["package_id"] is None else f"{rel}/{r['new_record']}")
        for r in body["renewed"]
    } <= added
    assert all(  # the renewed records are kept
        (r["old_record"] if r["package_id"] is None else f"{rel}/{r['old_record']}") in before
        for r in body["renewed"]
    )
    assert host_files(tmp_path) == []
    renewed = open_archive(data, env)
    try:
        report = verify_package(renewed, package, [], at=NOW + timedelta(days=60))
        assert report.ok, [s.text for s in report.steps if not s.ok]
    finally:
        renewed.close()
    code, audit, err = custos(data, "audit", "verify", "--json", env=env)
    assert code == 0 and audit["checkpoints_sealed"] == len(checkpoints), err
