"""Queue handlers and the worker's schedule (registered through the ``custos.jobs`` entry
point): replication, fixity cycles and sampling. (Sealing and renewal are the core's own
jobs: :mod:`archive.proofs.jobs`.)

Every handler can run again without harm: a fixity cycle only claims copies still due (a
dead worker's claims return when their lease runs out), replication reads back what is
already written.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from archive.config import Settings
from archive.errors import StorageError
from archive.jobs import JobTable, Periodic
from archive.services import Services
from fixity import replication
from fixity.policy import fixity_policy
from fixity.service import run_cycle, run_sample

log = logging.getLogger("custos.fixity")


def replicate_job(services: Services, package_id: str | None = None) -> None:
    """Copy what the replication plans ask for (one package, or all). A copy that failed
    fails the job, so that its outbox entry is tried again."""
    report = replication.replicate(services, package_id)
    for c in report.log_copies:
        log.info("custody log: %s file(s) (%s) read back at %s", c.files, c.kinds, c.location)
    for pid, loc, why in report.failures:
        log.error("replication of %s to %s failed: %s", pid, loc, why)
    if report.failures:
        raise StorageError(
            f"replication incomplete: {len(report.failures)} copy(ies) failed, first: "
            + "{} to {}: {}".format(*report.failures[0]),
            hint="it is tried again; `custos replicate` shows every location's answer",
        )


def cycle_job(services: Services, full: bool = False) -> None:
    report = run_cycle(services, full=full)
    _log(report.as_dict())


def sample_job(services: Services, minutes: int = 60) -> None:
    per_hour = fixity_policy(services.settings).sampling.files_per_hour
    count = math.ceil(per_hour * minutes / 60)
    if count:
        _log(run_sample(services, count).as_dict())


def _log(report: dict[str, Any]) -> None:
    log.info(
        "fixity %s: %s copies checked, %s bytes read",
        report["kind"],
        report["checked"],
        report["bytes_read"],
    )
    for line in report["unrecoverable"] + report["repair_refused"]:
        log.error("%s", line)
    for loc, why in report["unreachable"].items():
        log.error("location %s not checked: %s", loc, why)


def register(table: JobTable, settings: Settings) -> None:
    """Handlers, and the worker's periodic jobs from the ``fixity.*`` settings."""
    table.handlers.update(
        {
            "replicate": replicate_job,
            "fixity-cycle": cycle_job,
            "fixity-sample": sample_job,
        }
    )
    f = settings.fixity
    table.schedule.extend(
        [
            Periodic("fixity-cycle", minutes=f.due_every_minutes, at_start=True),
            Periodic(
                "fixity-sample",
                minutes=f.sample_every_minutes,
                kwargs={"minutes": f.sample_every_minutes},
            ),
            Periodic("replicate", minutes=f.replicate_every_minutes, at_start=True),
        ]
    )
