"""Sealing through the command line: ingest seals its manifests when a TSA answers; when none
does, the package is stored anyway and its manifests wait for `custos seal`."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from archive.catalog.tables import Event, Seal, SealBatch
from archive.checkpoints import LOG_DIR
from archive.errors import ProofError
from archive.proofs import fileseal
from archive.proofs.evidence import verify_record
from archive.proofs.local_tsa import LocalTSAServer, ensure_pki
from archive.proofs.seal import EXTENSION
from tests.conftest import SAMPLE
from tests.functional.test_cli import custos
from tests.helpers import make_bag
from tests.servers import free_port


def query(data: Path, *columns: Any, where: Any = None) -> list[tuple[Any, ...]]:
    """Rows of the catalog in ``data``, read directly (no services, no recovery)."""
    engine = create_engine(f"sqlite:///{data / 'catalog.sqlite3'}")
    statement = select(*columns)
    if where is not None:
        statement = statement.where(where)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(statement)]
    finally:
        engine.dispose()


def timestamp_failures(data: Path) -> list[tuple[Any, ...]]:
    return query(
        data, Event.detail, where=(Event.type == "timestamp") & (Event.outcome == "failure")
    )


def seals(data: Path) -> list[tuple[str, str, str]]:
    """The seals of package manifests (not of custody-log checkpoints)."""
    return query(
        data,
        Seal.subject_path,
        Seal.subject_sha512,
        Seal.record_path,
        where=Seal.package_id.is_not(None),
    )


def checkpoint_seals(data: Path) -> list[tuple[str, str, str]]:
    return query(
        data,
        Seal.subject_path,
        Seal.subject_sha512,
        Seal.record_path,
        where=Seal.package_id.is_(None),
    )


BATCH_COLUMNS = (
    SealBatch.root,
    SealBatch.tsa,
    SealBatch.token,
    SealBatch.gen_time,
    SealBatch.serial_number,
)


def test_ingest_seals_every_manifest(tmp_path: Path) -> None:
    code, body, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0 and body["seal"]["status"] == "sealed"
    sealed = seals(tmp_path)
    subjects = sorted(s for s, _, _ in sealed)
    assert subjects == [
        "v1/content/bag/manifest-sha256.txt",
        "v1/content/bag/manifest-sha512.txt",
        "v1/content/bag/tagmanifest-sha256.txt",
        "v1/content/bag/tagmanifest-sha512.txt",
        "v1/files-sha512",
        "v1/inventory.json",
        "v2/files-sha512",
        "v2/inventory.json",
    ]
    object_root = tmp_path / "storage" / body["object_path"]
    anchors = list((object_root / EXTENSION / "trust").glob("*.pem"))
    assert len(anchors) == 1  # the trust anchor travels with the proof
    for subject, digest, record_path in sealed:
        if fileseal.is_subject(subject):
            # Each file of the version on its own: the record proves the sidecar's root, and
            # every file's record derived from it proves that file's bytes.
            sidecar = (object_root / fileseal.sidecar_path(subject, EXTENSION)).read_bytes()
            assert hashlib.sha512(sidecar).hexdigest() == digest
            seal = fileseal.load(sidecar)
            root_record = (object_root / record_path).read_bytes()
            verify_record(root_record, seal.root, roots=[anchors[0].read_bytes()])
            paths = seal.paths(e.path for e in seal.entries)
            assert paths and {len(p) for p in paths.values()} == {1 + fileseal.HEIGHT}
            for path, tree in paths.items():
                own = seal.record_for(root_record, tree)
                content = (object_root / path).read_bytes()
                verify_record(
                    own, hashlib.sha512(content).digest(), roots=[anchors[0].read_bytes()]
                )
                with pytest.raises(ProofError):
                    verify_record(
                        own,
                        hashlib.sha512(content + b"x").digest(),
                        roots=[anchors[0].read_bytes()],
                    )
            continue
        stored = (object_root / subject).read_bytes()
        assert hashlib.sha512(stored).hexdigest() == digest
        check = verify_record(
            (object_root / record_path).read_bytes(),
            hashlib.sha512(stored).digest(),
            roots=[anchors[0].read_bytes()],
        )
        assert len(check.steps) == 3 and check.renewals == 0
    # The custody log's head was sealed in the same batch, its record beside it in storage.
    [(checkpoint, digest, record_path)] = checkpoint_seals(tmp_path)
    storage = tmp_path / "storage"
    assert checkpoint.startswith(f"{LOG_DIR}/") and record_path.startswith(f"{LOG_DIR}/")
    stored = (storage / checkpoint).read_bytes()
    assert json.loads(stored)["seq"] >= 1
    verify_record(
        (storage / record_path).read_bytes(),
        hashlib.sha512(stored).digest(),
        roots=[anchors[0].read_bytes()],
    )
    code, again, _ = custos(tmp_path, "seal", "--json")
    assert code == 0 and again["sealed"] == []  # its own seal events alone ask for no more


def test_no_authority_answers_then_later_one_does(tmp_path: Path) -> None:
    offline = {"CUSTOS_TSA__LOCAL": "false", "CUSTOS_TSA__URLS": '["http://127.0.0.1:9/"]'}
    code, body, err = custos(
        tmp_path,
        "ingest",
        str(SAMPLE),
        "--depositor",
        "S",
        "--new-depositor",
        "--json",
        env=offline,
    )
    assert code == 0 and body["status"] == "stored"
    assert body["seal"]["status"] == "pending"
    assert "await" in err
    assert seals(tmp_path) == []
    code, failed, err = custos(tmp_path, "seal", "--json", env=offline)
    assert code == 75 and "no timestamp authority answered" in failed["message"]
    code, done, _ = custos(tmp_path, "seal", "--json")
    assert code == 0 and len(done["sealed"]) == 7 + 2 and done["tokens"][0]["tsa"] == "local"
    assert [s["manifest"].startswith(LOG_DIR) for s in done["sealed"]].count(True) == 1
    assert query(tmp_path, SealBatch.tsa) == [("local",), ("local",)]  # manifests; files


def test_rebuild_recovers_the_seals(tmp_path: Path) -> None:
    code, body, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0 and body["seal"]["status"] == "sealed"
    before = sorted(seals(tmp_path))
    batches_before = query(tmp_path, *BATCH_COLUMNS)
    for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    code, report, _ = custos(tmp_path, "catalog", "rebuild", "--json")
    assert code == 0 and report["failed"] == []
    assert sorted(seals(tmp_path)) == before
    batches_after = query(tmp_path, *BATCH_COLUMNS)
    assert batches_after == batches_before
    code, again, _ = custos(tmp_path, "seal", "--json")
    # No manifest is sealed twice; only the head of the rebuilt catalog's new custody log.
    assert code == 0 and [s["package_id"] for s in again["sealed"]] == [None]


def test_sealing_retries_with_back_off_until_the_authority_returns(tmp_path: Path) -> None:
    """TSA down during ingest: stored, pending, the failure recorded and the backlog shown with
    its back-off; `custos seal --retry-for` keeps trying and seals once the TSA is back."""
    tsa_dir = tmp_path / "tsa"
    ensure_pki(tsa_dir)
    port = free_port()
    env = {
        "CUSTOS_TSA__LOCAL": "false",
        "CUSTOS_TSA__URLS": f'["http://127.0.0.1:{port}/"]',
        "CUSTOS_TSA__ROOTS": json.dumps([str(tsa_dir / "root.pem")]),
        "CUSTOS_TSA__TIMEOUT": "2",
        "CUSTOS_TSA__RETRY_BASE": "0.4",
        "CUSTOS_TSA__RETRY_MAX": "1",
    }
    data = tmp_path / "data"
    code, body, _ = custos(
        data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json", env=env
    )
    assert code == 0 and body["status"] == "stored" and body["seal"]["status"] == "pending"

    code, st, _ = custos(data, "status", "--json", env=env)
    backlog = st["seal_backlog"]
    assert code == 0 and backlog["pending"] == 7  # six manifests and the log's checkpoint
    assert backlog["failed_attempts"] == 1 and backlog["oldest_age_seconds"] >= 0
    assert "no timestamp authority answered" in backlog["last_failure_detail"]
    last = datetime.fromisoformat(backlog["last_failure"])
    assert datetime.fromisoformat(backlog["next_attempt"]) - last == timedelta(seconds=0.4)

    server = LocalTSAServer(tsa_dir, port=port)
    stop, started = threading.Event(), threading.Event()

    def start_after_a_retry_failed() -> None:
        # The authority comes back only once `seal` has failed again and recorded it, however
        # slowly the command starts on a busy machine.
        while not stop.is_set() and len(timestamp_failures(data)) < 2:
            stop.wait(0.1)
        if not stop.is_set():
            server.start()
            started.set()

    starter = threading.Thread(target=start_after_a_retry_failed)
    starter.start()
    try:
        code, done, err = custos(data, "seal", "--retry-for", "300", "--json", env=env)
    finally:
        stop.set()
        starter.join()
        if started.is_set():
            server.stop()
    assert code == 0, err
    assert len(done["sealed"]) == 7 + 2 and done["tokens"][0]["tsa"].startswith("http://127.0.0.1")
    assert len(timestamp_failures(data)) >= 2  # the ingest's attempt and a retry, each recorded

    code, st, _ = custos(data, "status", "--json", env=env)
    assert st["seal_backlog"]["pending"] == 0 and st["seal_backlog"]["failed_attempts"] == 0
    assert st["custody_log"]["last_sealed_checkpoint"] is not None


def test_retrying_gives_up_when_its_time_is_spent(tmp_path: Path) -> None:
    make_bag(tmp_path / "b", {"one.txt": b"one\n"})
    offline = {
        "CUSTOS_TSA__LOCAL": "false",
        "CUSTOS_TSA__URLS": '["http://127.0.0.1:9/"]',
        "CUSTOS_TSA__RETRY_BASE": "0.2",
    }
    code, _, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", env=offline
    )
    assert code == 0
    code, body, _ = custos(tmp_path, "seal", "--retry-for", "0.5", "--json", env=offline)
    assert code == 75 and "no timestamp authority answered" in body["message"]
    code, st, _ = custos(tmp_path, "status", "--json", env=offline)
    assert st["seal_backlog"]["pending"] == 7 and st["seal_backlog"]["failed_attempts"] >= 2
    assert st["identification_backlog"] == 0 and st["holdings"]["packages"] == 1
    code, _, _ = custos(
        tmp_path,
        "ingest",
        str(tmp_path / "b"),
        "--depositor",
        "S",
        "--new-depositor",
        "--no-identify",
        env=offline,
    )
    code, st, _ = custos(tmp_path, "status", "--json", env=offline)
    assert st["identification_backlog"] == 1


def test_two_authorities_give_two_independent_tokens(tmp_path: Path) -> None:
    """The local authority and an external one: each batch gets a token from each, each
    manifest a record from each, and both verify; a bundle carries both."""
    other = tmp_path / "other-tsa"
    with LocalTSAServer(other) as external:
        env = {
            "CUSTOS_TSA__URLS": json.dumps([external.url]),
            "CUSTOS_TSA__ROOTS": json.dumps([str(other / "root.pem")]),
        }
        data = tmp_path / "data"
        code, body, err = custos(
            data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json", env=env
        )
        assert code == 0, err
        tokens = body["seal"]["tokens"]
        # Two batches (the manifests; each file on its own), each timestamped by both.
        assert len(tokens) == 4 and {t["tsa"] for t in tokens} == {"local", external.url}
        by_subject: dict[str, int] = {}
        for subject, _, _ in seals(data):
            by_subject[subject] = by_subject.get(subject, 0) + 1
        assert set(by_subject.values()) == {2}
        roots = {r for (r,) in query(data, SealBatch.root)}
        assert len(roots) == 2  # two trees, each timestamped twice
        code, verified, _ = custos(data, "verify", body["package_id"], "--json", env=env)
        assert code == 0 and verified["verified"]
        passed = [s["text"] for s in verified["steps"] if s["ok"]]
        assert sum("v1/inventory.json" in t for t in passed) == 2
        bundle = tmp_path / "bundle"
        code, exported, _ = custos(
            data, "export", body["package_id"], "--to", str(bundle), "--requester", "R",
            "--purpose", "prosecution", "--json", env=env,
        )  # fmt: skip
        assert code == 0 and exported["evidence_records"] == 2 * len(
            exported["files"]
        )  # one per TSA
        code, checked, _ = custos(data, "verify", "--bundle", str(bundle), "--json")
        assert code == 0 and checked["verified"]
