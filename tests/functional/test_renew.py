"""`custos seal renew` on a real data folder, against a TSA (certomancer behind HTTP) whose
certificate expires soon or has expired, and across a retired digest algorithm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archive.config import load_settings
from archive.proofs.verify import verify_package
from archive.services import open_services
from tests.conftest import SAMPLE
from tests.fake_tsa import FakeTimeTSA
from tests.functional.test_cli import custos

NOW = datetime.now(UTC)


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[FakeTimeTSA]:
    """TSA "old" expires in 30 days (inside the 180-day margin); "new" runs for 10 years."""
    with FakeTimeTSA(tmp_path / "pki") as server:
        server.add("old", NOW - timedelta(days=700), NOW + timedelta(days=30))
        server.add("new", NOW - timedelta(days=1), NOW + timedelta(days=3650))
        yield server


def env_for(tsa: FakeTimeTSA, **extra: str) -> dict[str, str]:
    return {
        "CUSTOS_TSA__LOCAL": "false",
        "CUSTOS_TSA__URLS": json.dumps([tsa.url]),
        "CUSTOS_TSA__ROOTS": json.dumps([str(tsa.root_pem)]),
        **extra,
    }


def verify_at(data: Path, env: dict[str, str], package: str, when: datetime) -> Any:
    settings = load_settings(data_dir=data, environ=env, overrides={"fsync": False})
    services = open_services(settings)
    try:
        return verify_package(services, package, [], at=when)
    finally:
        services.close()


def ingest(data: Path, env: dict[str, str]) -> str:
    code, body, err = custos(
        data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json", env=env
    )
    assert code == 0 and body["seal"]["status"] == "sealed", err
    return str(body["package_id"])


def test_records_are_renewed_before_the_tsa_certificate_expires(
    tmp_path: Path, tsa: FakeTimeTSA
) -> None:
    env = env_for(tsa)
    data = tmp_path / "data"
    package = ingest(data, env)
    later = NOW + timedelta(days=60)  # after the old TSA certificate's expiry
    assert not verify_at(data, env, package, later).ok

    tsa.use("new")
    requests = tsa.requests
    code, body, err = custos(data, "seal", "renew", "--json", env=env)
    assert code == 0, err
    assert tsa.requests == requests + 1  # every record renewed in one batch
    kinds = {r["kind"] for r in body["renewed"]}
    assert (
        kinds == {"timestamp"} and len(body["renewed"]) == 9
    )  # 6 manifests, 2 file seals, the log head
    for r in body["renewed"]:
        assert "within 180 days" in r["reason"] and r["new_record"] != r["old_record"]
    storage = data / "storage"
    old_records = [r["old_record"] for r in body["renewed"] if r["package_id"] is None]
    assert all((storage / p).is_file() for p in old_records)  # the older file is kept

    report = verify_at(data, env, package, later)
    assert report.ok, [s.text for s in report.steps if not s.ok]
    code, v, _ = custos(data, "verify", package, "--json", env=env)
    assert code == 0 and v["verified"]
    code, audit, _ = custos(data, "audit", "verify", "--json", env=env)
    assert code == 0 and audit["checkpoints_sealed"] >= 1

    # A court bundle carries the renewed records; they verify on their own.
    bundle = tmp_path / "bundle"
    code, _, err = custos(
        data, "export", package, "--to", str(bundle), "--requester", "R",
        "--purpose", "prosecution", "--json", env=env,
    )  # fmt: skip
    assert code == 0, err
    code, checked, _ = custos(
        data, "verify", "--bundle", str(bundle), "--trust", str(tsa.root_pem), "--json"
    )
    assert code == 0 and checked["verified"]
    assert any("renewed 1 time(s)" in s["text"] for s in checked["steps"])
    assert "chain 1, timestamp 2" in (bundle / "data" / "VERIFY.txt").read_text()

    # Nothing is due again; a rebuilt catalog still finds the renewed records current.
    code, again, _ = custos(data, "seal", "renew", "--json", env=env)
    assert code == 0 and again["renewed"] == []
    code, _, _ = custos(data, "catalog", "rebuild", "--json", env=env)
    assert code == 0
    assert verify_at(data, env, package, later).ok


def test_a_lapsed_record_is_reported_not_renewed(tmp_path: Path, tsa: FakeTimeTSA) -> None:
    """Sealed (in the TSA's past) by a certificate that has expired since: too late."""
    tsa.add("expired", NOW - timedelta(days=700), NOW - timedelta(days=10))
    tsa.use("expired")
    tsa.clock = NOW - timedelta(days=100)
    env = env_for(tsa)
    data = tmp_path / "data"
    package = ingest(data, env)
    tsa.use("new")
    tsa.clock = None
    code, body, _ = custos(data, "seal", "renew", "--json", env=env)
    assert code == 3 and body["status"] == "lapsed"
    assert len(body["lapsed"]) == 9 and body["renewed"] == []
    assert "sealed afresh" in body["lapsed"][0]["reason"]
    code, v, _ = custos(data, "verify", package, "--json", env=env)
    assert code == 3 and any("expired" in s["text"] for s in v["steps"] if not s["ok"])


def test_a_retired_algorithm_gets_a_hash_tree_renewal(tmp_path: Path, tsa: FakeTimeTSA) -> None:
    tsa.use("new")
    data = tmp_path / "data"
    package = ingest(data, env_for(tsa, CUSTOS_PROOFS__ALGORITHM="sha256"))
    retire = env_for(
        tsa, CUSTOS_PROOFS__ALGORITHM="sha512", CUSTOS_PROOFS__RETIRED_ALGORITHMS='["sha256"]'
    )
    code, body, err = custos(data, "seal", "renew", "--json", env=retire)
    assert code == 0, err
    assert {r["kind"] for r in body["renewed"]} == {"hash-tree"} and len(body["renewed"]) == 7
    assert "sha256 is retired" in body["renewed"][0]["reason"]
    # Each file's own proof cannot be rehashed: the versions are sealed afresh under sha512.
    assert len(body["superseded"]) == 2
    assert all("custos seal files" in s["reason"] for s in body["superseded"])
    code, v, _ = custos(data, "verify", package, "--json", env=retire)
    assert code == 0 and v["verified"]
    assert any("rehashed with sha512" in s["text"] for s in v["steps"])
    code, sealed, err = custos(data, "seal", "files", "--json", env=retire)
    assert code == 0 and sealed["files_sealed_on_their_own"] > 0, err
    assert sorted(s["manifest"] for s in sealed["sealed"]) == ["v1/files-sha512", "v2/files-sha512"]
    code, v, _ = custos(data, "verify", package, "data/images/site-photo.png", "--json", env=retire)
    assert code == 0 and v["verified"]
    assert any("sealed on its own" in s["text"] and "files-sha512" in s["text"] for s in v["steps"])
    code, again, _ = custos(data, "seal", "renew", "--json", env=retire)
    assert code == 0 and again["renewed"] == [] and again["superseded"] == []


def test_a_policy_retiring_its_own_algorithm_is_refused(tmp_path: Path) -> None:
    bad = {"CUSTOS_PROOFS__RETIRED_ALGORITHMS": '["sha512"]'}
    code, body, _ = custos(tmp_path, "seal", "renew", "--json", env=bad)
    assert code == 78 and "retired" in body["message"]
