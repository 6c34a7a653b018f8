"""Runs started together seed the coverage rows once: a run skips its seed while another run
holds the seed lock, and, if it then finds nothing due (the other seed not committed yet),
waits for that seed and claims again. Each copy is still checked exactly once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from archive.catalog import locks
from archive.fixity_state import coverage
from fixity import service, sweep
from fixity.replication import replicate
from fixity.service import FixityReport, run_cycle
from tests.unit.fixity.conftest import (
    ArchiveFactory,
    add_package,
    checks_per_copy,
    local_settings,
)


def test_the_seed_lock_is_held_by_one_at_a_time(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    services = archive(catalog_url)
    engine = services.engine
    with locks.held(engine, service.SEED_LOCK) as first:
        assert first
        with locks.held(engine, service.SEED_LOCK) as second:
            assert not second
    with locks.held(engine, service.SEED_LOCK) as again:
        assert again  # released by the first holder


def test_a_run_started_during_another_runs_seed_skips_its_own_and_waits_for_it(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = archive(catalog_url, second=local_settings(tmp_path / "replica"))
    for _ in range(2):
        add_package(services, tmp_path, files=6)
    assert replicate(services).ok
    seeding = threading.Event()
    seeds = 0
    real = sweep.seed

    def slow_seed(*args: Any, **kwargs: Any) -> int:
        nonlocal seeds
        seeds += 1
        seeding.set()
        threading.Event().wait(1.0)  # the other run starts, and claims, meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "seed", slow_seed)
    waits: list[str] = []
    real_held = locks.held

    def held(engine: Any, name: str, *, wait: bool = False) -> Any:
        if wait:
            waits.append(threading.current_thread().name)
        return real_held(engine, name, wait=wait)

    monkeypatch.setattr(locks, "held", held)
    reports: list[FixityReport] = []
    first = threading.Thread(target=lambda: reports.append(run_cycle(services, full=True)))
    first.start()
    try:
        assert seeding.wait(30)
        second = run_cycle(services, full=True)  # no coverage row is committed yet
    finally:
        first.join(60)
    assert seeds == 1  # the second run did not seed...
    # ...found nothing due before the first run's seed committed, and waited for it
    assert waits == [threading.current_thread().name]
    with services.sessions() as s:
        copies = coverage(s).expected
    checked = checks_per_copy(services)
    assert reports[0].ok and second.ok
    assert reports[0].checked + second.checked == copies == len(checked)
    assert set(checked.values()) == {1}
