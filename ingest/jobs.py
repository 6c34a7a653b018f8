"""Queue handlers and the worker's schedule for ingest (the ``custos.jobs`` entry point):
``characterise`` identifies formats and extracts the text of public documents.

Asked for through the outbox by every deposit and tier change (:mod:`archive.outbox`), and
run on the worker's schedule for anything left pending (a tool installed since). The handler
only does what is still pending, so it can run any number of times. With
``migration.after_identification``, identification asks for ``migrate`` in the same
transaction as its new version.
"""

from __future__ import annotations

import logging

from archive.config import Settings
from archive.errors import CustosError
from archive.jobs import JobTable, Periodic
from archive.services import Services
from ingest.characterise import characterise

log = logging.getLogger("custos.characterise")


def characterise_job(services: Services, package_id: str | None = None) -> None:
    """Identify and read what is pending (of one package, or of all). A package whose
    identification could not run fails the job, so that its outbox entry is tried again."""
    report = characterise(services, package_id)
    done = [r for r in report.identified if r.version is not None]
    if done or report.texts:
        log.info(
            "characterised: %d package(s) identified, text outcomes %s",
            len(done),
            report.texts,
        )
    if report.failures:
        raise CustosError(
            "characterisation incomplete: " + "; ".join(report.failures),
            hint="the work stays queued and is tried again; `custos identify` runs it now",
        )


def register(table: JobTable, settings: Settings) -> None:
    table.handlers["characterise"] = characterise_job
    table.schedule.append(
        Periodic("characterise", minutes=settings.characterisation.every_minutes, at_start=True)
    )
