"""Recreate the catalog from the storage root alone (``custos catalog rebuild``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete

from archive.catalog.index import index_checkpoint_seals, index_object
from archive.catalog.tables import (
    AccessAssignment,
    AccessReview,
    ConsentRecord,
    Deposit,
    File,
    Package,
    Replica,
    ReplicationPlan,
    Seal,
    SealBatch,
    StoredFile,
    Version,
)
from archive.checkpoints import record_restart
from archive.errors import CustosError
from archive.services import Services


@dataclass
class RebuildReport:
    indexed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (object path, reason)
    earlier_logs: list[str] = field(default_factory=list)  # chains the rebuilt log cannot hold


def rebuild(services: Services, *, progress: Callable[[int], None] | None = None) -> RebuildReport:
    """Drop every row derived from storage, then index every object in the primary storage root.

    The custody log is kept whole (it is append-only): events found in objects' PREMIS files
    that the log lacks are appended; an empty catalog gets them all, in a new chain.
    Each object is indexed in its own transaction, so one damaged object does not stop the
    others; it is listed in the report instead.
    """
    report = RebuildReport()
    with services.session_scope() as session:
        session.execute(delete(AccessReview))
        session.execute(delete(AccessAssignment))
        session.execute(delete(ConsentRecord))
        session.execute(delete(File))
        session.execute(delete(Replica))
        session.execute(delete(ReplicationPlan))
        session.execute(delete(StoredFile))
        session.execute(delete(Seal))
        session.execute(delete(SealBatch))
        session.execute(delete(Version))
        session.execute(delete(Package))
        session.execute(delete(Deposit))
    for rel in services.primary.iter_objects():
        try:
            with services.session_scope() as session:
                report.indexed.append(index_object(session, services.primary.object(rel)))
        except CustosError as exc:
            report.failed.append((rel, exc.message))
        except (OSError, ValueError, KeyError) as exc:
            report.failed.append((rel, f"{exc.__class__.__name__}: {exc}"))
        if progress:
            progress(1)
    with services.session_scope() as session:
        index_checkpoint_seals(session, services.primary)
        report.earlier_logs = record_restart(session, services.primary)
    return report
