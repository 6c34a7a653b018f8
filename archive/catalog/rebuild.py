"""Recreate the catalog from the storage root alone (``custos catalog rebuild``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from archive.catalog.index import index_object
from archive.catalog.tables import (
    Deposit,
    Event,
    EventLink,
    File,
    Package,
    Seal,
    SealBatch,
    Version,
)
from archive.errors import CustosError
from archive.services import Services


@dataclass
class RebuildReport:
    indexed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (object path, reason)


def rebuild(services: Services, *, progress: Callable[[int], None] | None = None) -> RebuildReport:
    """Drop every row derived from storage, then index every object in the storage root.

    Events not tied to a package (refused deposits) are kept: storage never held them.
    Each object is indexed in its own transaction, so one damaged object does not stop the
    others; it is listed in the report instead.
    """
    report = RebuildReport()
    with services.session_scope() as session:
        pkg_events = select(Event.id).where(Event.package_id.is_not(None))
        session.execute(delete(EventLink).where(EventLink.event_id.in_(pkg_events)))
        session.execute(delete(Event).where(Event.package_id.is_not(None)))
        session.execute(delete(File))
        session.execute(delete(Seal))
        session.execute(delete(SealBatch))
        session.execute(delete(Version))
        session.execute(delete(Package))
        session.execute(delete(Deposit))
    for rel in services.store.iter_objects():
        try:
            with services.session_scope() as session:
                report.indexed.append(index_object(session, services.store.object_root(rel), rel))
        except CustosError as exc:
            report.failed.append((rel, exc.message))
        except (OSError, ValueError, KeyError) as exc:
            report.failed.append((rel, f"{exc.__class__.__name__}: {exc}"))
        if progress:
            progress(1)
    return report
