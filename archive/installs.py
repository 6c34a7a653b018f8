"""Installs in progress, recorded where every host sees them (table ``pending_installs``).

A deposit's object is committed to the primary under the commit lock (``Services.commit_lock``):
a row here is written and committed before its first file is stored, and removed by the
transaction that catalogs the object. So a row that exists while nobody holds the commit lock
belongs to a process that stopped in between, on whichever host, and any host can finish it
(:func:`archive.journal.recover_installs`): the object whole in the primary is catalogued (or,
its payload held meanwhile, removed as a duplicate); a partial one is removed. The host's own
journal (:mod:`archive.journal`) still completes an install from its staged copy when that
host starts again: both end in the same state.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from archive import clock
from archive.catalog.tables import PendingInstall


def this_host() -> str:
    """For people: the host name and the process id."""
    return f"{socket.gethostname()} (process {os.getpid()})"


def begin(session: Session, object_id: str, deposit_id: str) -> None:
    """Record that ``object_id`` is about to be stored (the caller commits at once)."""
    session.add(
        PendingInstall(
            object_id=object_id,
            deposit_id=deposit_id,
            host=this_host()[:512],
            started_at=clock.now(),
        )
    )


def done(session: Session, object_id: str) -> None:
    """The object is catalogued: in the same transaction, it is no longer pending."""
    session.execute(delete(PendingInstall).where(PendingInstall.object_id == object_id))


def any_pending(session: Session) -> bool:
    return bool(session.execute(select(func.count()).select_from(PendingInstall)).scalar())


def pending(session: Session) -> list[PendingInstall]:
    return list(
        session.execute(select(PendingInstall).order_by(PendingInstall.started_at)).scalars()
    )
