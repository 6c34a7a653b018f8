"""Workers as separate processes: two workers split one cycle (Redis queue, PostgreSQL catalog,
SeaweedFS replica, all real) and check every copy exactly once; a worker killed (SIGKILL) in
the middle of a cycle loses nothing and records nothing twice: its claims run out and the next
worker checks what it left."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archive.catalog.tables import FixityCoverage, FixityTally
from archive.config import load_settings
from archive.jobs import enqueue
from archive.services import Services, open_services
from fixity.replication import replicate
from policies.load import POLICY_DIR
from tests.crash import kill_at
from tests.servers import PostgresServer, RedisServer, SeaweedServer
from tests.unit.fixity.conftest import add_package, checks_per_copy, local_settings, s3_settings

pytestmark = pytest.mark.slow


def toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(path: Path, values: dict[str, Any]) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for k, v in values.items():
        if isinstance(v, dict):
            if all(isinstance(x, dict) for x in v.values()):
                for name, table in v.items():
                    lines.append(f"[{k}.{name}]")
                    lines += [f"{a} = {toml_value(b)}" for a, b in table.items()]
            else:
                lines.append(f"[{k}]")
                lines += [f"{a} = {toml_value(b)}" for a, b in v.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Workers:
    def __init__(self, data: Path, config: Path) -> None:
        self.data, self.config = data, config
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, fault: str = "") -> subprocess.Popen[bytes]:
        log = open(self.data / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from archive.cli import main; main()",
                "--data-dir",
                str(self.data),
                "--config",
                str(self.config),
                "worker",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**kill_at(fault), "CUSTOS_FSYNC": "false"},
        )
        log.close()
        self.procs.append(proc)
        self.wait_ready(len(self.procs) - 1)
        return proc

    def wait_ready(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "worker ready" not in self.log(n):
            assert self.procs[n].poll() is None, self.log(n)
            assert time.monotonic() < deadline, self.log(n)
            time.sleep(0.1)

    def log(self, n: int) -> str:
        return (self.data / f"worker-{n}.log").read_text(errors="replace")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def workers() -> Iterator[list[Workers]]:
    made: list[Workers] = []
    yield made
    for w in made:
        w.stop()


def no_sampling(tmp_path: Path) -> Path:
    """The shipped policies with the random sampling between cycles turned off."""
    folder = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    fixity = folder / "fixity.toml"
    text = fixity.read_text()
    assert "files_per_hour = 60" in text
    fixity.write_text(text.replace("files_per_hour = 60", "files_per_hour = 0"))
    return folder


def wait_until_covered(
    services: Services, timeout: float = 180, *, up_to: int | None = None
) -> int:
    """Wait until every copy was checked; return how many copies there are. ``up_to``: only
    the copies whose row id is at most that (those known at some point; copies made later,
    such as a checkpoint the schedule's seal writes meanwhile, are the next cycle's)."""
    deadline = time.monotonic() + timeout
    known = FixityCoverage.id <= up_to if up_to is not None else FixityCoverage.id.is_not(None)
    while True:
        with services.sessions() as s:
            total, unchecked = s.execute(
                select(
                    func.count(FixityCoverage.id),
                    func.count(FixityCoverage.id).filter(FixityCoverage.last_checked_at.is_(None)),
                ).where(known)
            ).one()
        if total and not unchecked:
            return int(total)
        assert time.monotonic() < deadline, f"{unchecked} of {total} copies still unchecked"
        time.sleep(0.2)


def test_two_workers_split_a_cycle_and_check_every_copy_once(
    tmp_path: Path,
    postgres: PostgresServer,
    redis_server: RedisServer,
    seaweedfs: SeaweedServer,
    workers: list[Workers],
) -> None:
    database = postgres.create_database()
    values: dict[str, Any] = {
        "database_url": postgres.url(database),
        "fsync": False,
        "identify_formats": False,
        "queue": {"backend": "redis", "redis_url": redis_server.url, "name": database},
        "fixity": {"batch_files": 15},
        "locations": {"offsite": s3_settings(seaweedfs)},
    }
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(tmp_path / "custos.toml", values)
    services = open_services(load_settings(data_dir=data, config_file=config, environ={}))
    try:
        for _ in range(3):
            add_package(services, tmp_path, files=60, size=40_000)
        assert replicate(services).ok
        pool = Workers(data, config)
        workers.append(pool)
        pool.start("--no-schedule")
        pool.start("--no-schedule")
        for _ in range(2):
            enqueue(services.settings, "fixity-cycle", full=True)
        copies = wait_until_covered(services)
        counts = checks_per_copy(services)
        assert len(counts) == copies  # every copy checked...
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}  # once
        with services.sessions() as s:
            by_worker = dict(
                s.execute(
                    select(FixityTally.worker, func.sum(FixityTally.files)).group_by(
                        FixityTally.worker
                    )
                ).all()
            )
        assert len(by_worker) == 2, by_worker  # the cycle was split between both
        assert sum(by_worker.values()) == copies
    finally:
        services.close()
        for w in workers:
            w.stop()
        postgres.drop_database(database)


def test_a_worker_killed_mid_cycle_loses_nothing_and_records_nothing_twice(
    tmp_path: Path, workers: list[Workers]
) -> None:
    values: dict[str, Any] = {
        "fsync": False,
        "identify_formats": False,
        # A lease long enough that a live worker's claims never run out on a loaded machine.
        "fixity": {"batch_files": 5, "claim_timeout": 10.0},
        # The schedule's random sampling (at every tenth minute of the clock) would check
        # some copies a second time when the run crosses such a minute.
        "policy_dir": str(no_sampling(tmp_path)),
        "locations": {"second": local_settings(tmp_path / "replica")},
    }
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(tmp_path / "custos.toml", values)
    services = open_services(load_settings(data_dir=data, config_file=config, environ={}))
    try:
        add_package(services, tmp_path, files=100, size=30_000)
        assert replicate(services).ok
        pool = Workers(data, config)
        workers.append(pool)
        # it kills itself (SIGKILL) with its 9th batch checked but not recorded
        first = pool.start("--no-schedule", fault="fixity-checked:9")
        enqueue(services.settings, "fixity-cycle", full=True)
        assert first.wait(timeout=60) == -signal.SIGKILL, pool.log(0)
        done_before = checks_per_copy(services)
        with services.sessions() as s:
            total = s.execute(select(func.count(FixityCoverage.id))).scalar_one()
            held = s.execute(
                select(func.count(FixityCoverage.id)).where(FixityCoverage.claimed_by.is_not(None))
            ).scalar_one()
            last = s.execute(select(func.max(FixityCoverage.id))).scalar_one()
        assert len(done_before) < total, "the worker finished before it was killed"
        assert len(done_before) == 8 * 5  # eight batches of five were recorded
        # it died holding the claims of the ninth, and of the tenth, read meanwhile
        assert held == 2 * 5
        time.sleep(10.5)  # its claims run out
        pool.start()  # the schedule's start-up sweep takes over what is still due
        # Every copy there was when it died; the schedule (its seal every five minutes, its
        # replication) may add the custody log's new files meanwhile: those are left out.
        copies = wait_until_covered(services, up_to=last)
        assert copies == total
        counts = checks_per_copy(services)
        assert len(counts) >= copies
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
        assert all(counts[k] == 1 for k in done_before)
    finally:
        services.close()
