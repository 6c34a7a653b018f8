"""The proof jobs a running archive needs (registered through the ``custos.jobs`` entry point,
beside the function packages' jobs): ``seal`` seals what awaits a seal, with the seal's
back-off after authorities that did not answer; ``renew`` renews evidence records daily.

``seal`` is also the outbox's job after every new version (:mod:`archive.outbox`): when the
back-off says to wait, the entry is put off until then rather than dropped.
"""

from __future__ import annotations

import logging

from archive.config import Settings
from archive.jobs import JobTable, Periodic
from archive.outbox import Deferred
from archive.proofs.backlog import backlog
from archive.proofs.renew import renew
from archive.proofs.seal import seal_if_due
from archive.services import Services

log = logging.getLogger("custos.proofs")


def seal_job(services: Services) -> None:
    """Seal what is pending, unless the back-off after an authority that did not answer says
    to wait: the outbox entry is then put off until that time."""
    if seal_if_due(services) is not None:
        return
    with services.sessions() as session:
        state = backlog(session, services.settings)
    if state.due and state.next_attempt is not None:
        raise Deferred("the timestamp authorities are being given time", until=state.next_attempt)


def renew_job(services: Services) -> None:
    report = renew(services)
    for record, why in report.lapsed:
        log.error("evidence record lapsed: %s: %s", record, why)


def register(table: JobTable, settings: Settings) -> None:
    """Handlers, and their schedule from ``fixity.seal_every_minutes`` and
    ``fixity.renew_hour`` (where operators set them)."""
    table.handlers.update({"seal": seal_job, "renew": renew_job})
    table.schedule.extend(
        [
            Periodic("seal", minutes=settings.fixity.seal_every_minutes),
            Periodic("renew", hour=settings.fixity.renew_hour),
        ]
    )
