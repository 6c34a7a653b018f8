"""Queue handlers and the worker's schedule for ingest (the ``custos.jobs`` entry point):
``characterise`` identifies formats and extracts the text of public documents.

Queued after a deposit is committed (API uploads; ``custos ingest --no-identify``) and after
a tier change, and run on the worker's schedule for anything left pending (a queue that
could not be reached, a worker that died mid-job). The handler only does what is still
pending, so it can run any number of times. With ``migration.after_identification``, it
queues ``migrate`` for each package it has just identified.
"""

from __future__ import annotations

import logging

from archive.config import Settings
from archive.jobs import JobTable, Periodic, QueueError, enqueue
from archive.services import Services
from ingest.characterise import characterise

log = logging.getLogger("custos.characterise")


def characterise_job(services: Services, package_id: str | None = None) -> None:
    report = characterise(services, package_id)
    for line in report.failures:
        log.error("%s", line)
    done = [r for r in report.identified if r.version is not None]
    if services.settings.migration.after_identification:
        # By name through the queue: migration is a sibling package, not imported here.
        for r in done:
            try:
                enqueue(services.settings, "migrate", package_id=r.package_id)
            except QueueError as exc:  # the migration schedule (if any) catches up
                log.error("could not queue the migration of %s: %s", r.package_id, exc.message)
    if done or report.texts:
        log.info(
            "characterised: %d package(s) identified, text outcomes %s",
            len(done),
            report.texts,
        )


def register(table: JobTable, settings: Settings) -> None:
    table.handlers["characterise"] = characterise_job
    table.schedule.append(
        Periodic("characterise", minutes=settings.characterisation.every_minutes, at_start=True)
    )
