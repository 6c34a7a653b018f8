"""The format migration job of ``custos worker`` (registered through the ``custos.jobs`` entry
point): ``migrate`` makes the copies the format policy asks for, as ``custos migrate run`` does,
then seals the new versions' inventories if sealing is due.

It can run again, and in several workers at once, without harm: it plans only the copies not
stored yet, and a copy another worker stored meanwhile is discarded under the store's commit
lock (no second copy, no second version). Copies deferred because no timestamp authority
answered are made by the next run; with ``migration.every_minutes`` set, the worker's schedule
runs it. Logs carry counts and package ids only, never file names (a path may name a person).
"""

from __future__ import annotations

import logging

from archive.config import Settings
from archive.jobs import JobTable, Periodic
from archive.proofs.seal import NoAuthorityAnswered, seal_if_due
from archive.services import Services
from migration.service import migrate

log = logging.getLogger("custos.migration")


def migrate_job(
    services: Services, package_id: str | None = None, retry_failed: bool = False
) -> None:
    """Make every copy the policy asks for (in one package, or all), then seal if due."""
    report = migrate(services, package_id, retry_failed=retry_failed)
    for p in report.packages:
        log.info(
            "migration of %s: %d copies stored (version %s), %d failed, %d deferred",
            p.package_id,
            p.succeeded,
            p.version,
            p.failed,
            p.deferred,
        )
    if any(p.version is not None for p in report.packages):
        try:
            seal_if_due(services)
        except NoAuthorityAnswered as exc:
            log.warning("the new versions await their seal: %s", exc.message)
    log.info(
        "migration run (%s): %d packages, %d copies stored, %d failed, %d deferred",
        report.policy,
        len(report.packages),
        sum(p.succeeded for p in report.packages),
        sum(p.failed for p in report.packages),
        sum(p.deferred for p in report.packages),
    )


def register(table: JobTable, settings: Settings) -> None:
    """The ``migrate`` handler, and its place in the schedule when ``migration.every_minutes``
    is set (0, the default, runs it only when queued)."""
    table.handlers["migrate"] = migrate_job
    every = settings.migration.every_minutes
    if every:
        table.schedule.append(Periodic("migrate", minutes=every))
