"""The worker's daily sunset run (registered through the ``custos.jobs`` entry point).

``policies-apply`` records the sunset transitions due today
(:func:`access.decisions.sunset.apply_due`): every day at 00:00 UTC, when a new day's sunsets fall
due, and once when a worker starts, so a day the worker was down is caught up. It can run again
without harm: nothing is due twice. The log names packages and counts, never paths (they may
identify people).
"""

from __future__ import annotations

import logging

from access.decisions.sunset import apply_due
from archive.config import Settings
from archive.jobs import JobTable, Periodic
from archive.services import Services

log = logging.getLogger("custos.access")

#: Sunset dates are days in UTC: the run at midnight UTC records the new day's transitions.
APPLY_HOUR = 0


def apply_job(services: Services) -> None:
    report = apply_due(services)
    log.info(
        "sunsets of %s: %d tier move(s), %d review(s) opened, %d new version(s)",
        report.on.isoformat(),
        report.moved,
        report.reviews_opened,
        report.versions,
    )
    for package_id, reason in report.failed:
        log.error("sunsets of package %s not recorded: %s", package_id, reason)


def register(table: JobTable, settings: Settings) -> None:
    table.handlers["policies-apply"] = apply_job
    table.schedule.append(Periodic("policies-apply", hour=APPLY_HOUR, at_start=True))
