"""The ``migrate`` job in a real ``custos worker`` process (the embedded SQLite queue): queued
twice, it makes each copy once, in one new version, sealed (the PDF/A copy with its PAdES seal);
a package with nothing to do gets no version. The schedule entry comes from the settings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archive.catalog.tables import Event, File, Package, Seal, Version
from archive.config import load_settings
from archive.jobs import enqueue, job_table, pending
from archive.services import Services, open_services
from ingest.service import identify_package
from tests.conftest import SAMPLE
from tests.e2e.test_workers import Workers, workers, write_config  # noqa: F401 - fixture
from tests.functional.migrate_helpers import bmp
from tests.helpers import deposit, make_bag
from tests.unit.proofs.test_pades import lta

pytestmark = pytest.mark.slow


def migration_runs(pool: Workers) -> int:
    return pool.log(0).count("migration run (formats v2)")


def wait_for(what: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_worker_runs_migrate_jobs_and_a_second_makes_no_second_copy(
    tmp_path: Path,
    workers: list[Workers],  # noqa: F811
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(tmp_path / "custos.toml", {"fsync": False})
    services: Services = open_services(load_settings(data_dir=data, config_file=config, environ={}))
    try:
        payload = {
            "documents/site-report.pdf": (SAMPLE / "data/documents/site-report.pdf").read_bytes(),
            "images/bitmap.bmp": bmp(),
        }
        package_id = deposit(
            services, make_bag(tmp_path / "bag", payload), depositor="Job Tests"
        ).package_id
        identify_package(services, package_id)
        plain = deposit(
            services, make_bag(tmp_path / "plain", {"notes.txt": b"kept as it is\n"}),
            depositor="Job Tests",
        ).package_id  # fmt: skip
        identify_package(services, plain)

        enqueue(services.settings, "migrate")
        enqueue(services.settings, "migrate")
        pool = Workers(data, config)
        workers.append(pool)
        pool.start("--no-schedule")
        wait_for(lambda: migration_runs(pool) >= 2 and pending(services.settings) == 0)
        log = pool.log(0)
        assert "2 copies stored, 0 failed, 0 deferred" in log
        assert "0 packages, 0 copies stored" in log  # the second run found nothing to do
        assert "job migrate failed" not in log

        with services.sessions() as s:
            made = s.execute(
                select(File.logical_path, File.version).where(
                    File.package_id == package_id, File.role == "derivative"
                )
            ).all()
            versions = dict(
                s.execute(
                    select(Version.package_id, func.max(Version.number)).group_by(
                        Version.package_id
                    )
                ).all()
            )
            migrations = s.execute(
                select(Event.outcome, func.count())
                .where(Event.type == "migration")
                .group_by(Event.outcome)
            ).all()
        assert sorted(made) == [
            ("custos/derivatives/preservation/bag/data/documents/site-report.pdf.pdf", 3),
            ("custos/derivatives/preservation/bag/data/images/bitmap.bmp.png", 3),
        ]
        assert versions == {package_id: 3, plain: 2}  # one new version, none for "plain"
        assert migrations == [("success", 2)]
        with services.sessions() as s:
            sealed = s.execute(
                select(Seal.subject_path).where(
                    Seal.package_id == package_id, Seal.subject_path == "v3/inventory.json"
                )
            ).all()
            pkg = s.get(Package, package_id)
            assert pkg is not None
        assert sealed  # the job sealed the new version's inventory
        pdf = services.store.object_root(pkg.object_path) / (
            "v3/content/custos/derivatives/preservation/bag/data/documents/site-report.pdf.pdf"
        )
        roots = [(data / "pades/root.pem").read_bytes(), (data / "tsa/root.pem").read_bytes()]
        assert str(lta(pdf.read_bytes(), roots).ades_subindic) == "AdESPassed.OK"
    finally:
        services.close()
        for w in workers:
            w.stop()


def test_the_schedule_runs_migration_only_when_the_settings_ask() -> None:
    off = job_table(load_settings(environ={}))
    assert "migrate" in off.handlers and all(p.job != "migrate" for p in off.schedule)
    on = job_table(load_settings(environ={}, overrides={"migration": {"every_minutes": 30}}))
    (periodic,) = [p for p in on.schedule if p.job == "migrate"]
    assert periodic.minutes == 30
