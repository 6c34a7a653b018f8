"""Crash safety: the ingest process is killed (SIGKILL) at every named step and at random
moments. No partial package is ever visible, and re-running the same command finishes the job.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ocfl import StorageRoot
from sqlalchemy import create_engine, func, select

from archive.catalog.tables import File, Package
from archive.storage.ocfl import iter_object_roots, read_inventory
from tests.conftest import SAMPLE
from tests.crash import kill_at
from tests.helpers import make_bag, staging_debris

#: Every named step of an ingest and of the format-identification version that follows it
#: (``archive.steps.reached`` in ingest/service.py).
POINTS = [
    "received",
    "validated",
    "metadata",
    "inventory",
    "ready",
    "installed",
    "indexed",
    "committed",
    "cleaned",
    "version-installed",
    "version-committed",
]


def custos(data: Path, *args: str, fault: str = "") -> subprocess.Popen[bytes]:
    """``custos`` in a new process; ``fault``: the step it kills itself at (tests.crash)."""
    env = {**kill_at(fault), "CUSTOS_FSYNC": "false"}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from archive.cli import main; main()",
            "--data-dir",
            str(data),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def visible_packages(data: Path) -> dict[str, tuple[str, int]]:
    """What a reader of the catalog sees, read without running any recovery."""
    db = data / "catalog.sqlite3"
    if not db.exists():
        return {}
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, "packages"):
                return {}
            rows = conn.execute(select(Package.id, Package.object_path, Package.head)).all()
            out = {}
            for pid, path, head in rows:
                n = conn.execute(
                    select(func.count()).select_from(File).where(File.package_id == pid)
                )
                out[pid] = (path, head)
                assert n.scalar_one() > 0
            return out
    finally:
        engine.dispose()


def assert_consistent(data: Path) -> None:
    """Every visible package is a complete, valid object; every object in storage is complete."""
    storage = data / "storage"
    if storage.exists() and any(iter_object_roots(storage)):
        sr = StorageRoot(root=str(storage))
        sr.validate(validate_objects=True, check_digests=True)
        assert sr.num_objects == sr.good_objects, "a partial object is in the storage root"
    for pid, (path, head) in visible_packages(data).items():
        inventory = read_inventory(storage / path)
        assert inventory["id"] == pid
        assert int(inventory["head"][1:]) >= head


def assert_finished(data: Path, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err.decode()
    body = json.loads(out)
    assert body["status"] in {"stored", "already-held"}
    packages = visible_packages(data)
    assert list(packages) == [body["package_id"]]
    assert_consistent(data)
    assert staging_debris(data / "staging") == []
    _, head = packages[body["package_id"]]
    assert head == 2  # version 2 records the format identification
    return body


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_step_then_rerun(point: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ("ingest", str(SAMPLE), "--depositor", "Kill Test", "--new-depositor", "--json")
    proc = custos(data, *args, fault=point)
    proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, f"the step {point!r} was never reached"
    assert_consistent(data)
    if point in {"received", "validated", "metadata", "inventory", "ready"}:
        assert visible_packages(data) == {}
    assert_finished(data, custos(data, *args))


def test_kill_at_random_moments_then_rerun(tmp_path: Path) -> None:
    bag = make_bag(
        tmp_path / "bag", {f"d{i % 7}/f{i}.bin": os.urandom(4096 + i) for i in range(300)}
    )
    args = ("ingest", str(bag), "--depositor", "Kill Test", "--new-depositor", "--json")
    start = time.monotonic()
    assert_finished(tmp_path / "timing", custos(tmp_path / "timing", *args))
    duration = time.monotonic() - start
    rng = random.Random(8493)
    delays = sorted(rng.uniform(0.05, 1.0) * duration for _ in range(8))
    for n, delay in enumerate(delays):
        data = tmp_path / f"run{n}"
        proc = custos(data, *args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert_consistent(data)
        body = assert_finished(data, custos(data, *args))
        assert body["payload_files"] == 300
