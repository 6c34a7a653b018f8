"""Fixity coverage as the catalog records it (``fixity_coverage``), for ``custos status`` and
``custos fixity status``: how many copies are tracked, how many were checked within their
tier's cycle period (``due_at`` still ahead), the oldest and newest check, outstanding damage.

The checks themselves, and the policy that sets each copy's ``due_at``, are in ``fixity/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from archive.catalog.tables import (
    File,
    FixityCoverage,
    LogFile,
    Package,
    Replica,
    ReplicationPlan,
    StorageLocation,
    StoredFile,
)
from archive.clock import now
from archive.config import PRIMARY_LOCATION

#: The package key under which ``fixity_coverage`` holds the custody log's files in the
#: storage root (no package: see ``fixity.logfiles``; package ids are UUIDs).
LOG_KEY = "custody-log"

#: Outcomes of a last check that leave a copy in need of attention.
BAD_OUTCOMES = ("damaged", "unrecoverable", "repair-failed")


@dataclass(frozen=True, slots=True)
class LocationCoverage:
    location: str
    tracked: int
    covered: int
    never_checked: int
    bad: int
    oldest_check: datetime | None
    newest_check: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "tracked": self.tracked,
            "covered": self.covered,
            "never_checked": self.never_checked,
            "damaged": self.bad,
            "oldest_check": self.oldest_check.isoformat() if self.oldest_check else None,
            "newest_check": self.newest_check.isoformat() if self.newest_check else None,
        }


@dataclass(frozen=True, slots=True)
class Coverage:
    """``expected``: copies that exist by the catalog (every file in the primary storage root
    and at each location with a recorded replica: content files, inventories and sidecars,
    evidence records, trust anchors); ``tracked``: those fixity has seen."""

    expected: int
    locations: tuple[LocationCoverage, ...]
    at: datetime

    @property
    def tracked(self) -> int:
        return sum(c.tracked for c in self.locations)

    @property
    def covered(self) -> int:
        return sum(c.covered for c in self.locations)

    @property
    def bad(self) -> int:
        return sum(c.bad for c in self.locations)

    @property
    def oldest_check(self) -> datetime | None:
        found = [c.oldest_check for c in self.locations if c.oldest_check]
        return min(found) if found else None

    @property
    def newest_check(self) -> datetime | None:
        found = [c.newest_check for c in self.locations if c.newest_check]
        return max(found) if found else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "copies_expected": self.expected,
            "copies_tracked": self.tracked,
            "copies_covered": self.covered,
            "copies_damaged": self.bad,
            "oldest_check": self.oldest_check.isoformat() if self.oldest_check else None,
            "newest_check": self.newest_check.isoformat() if self.newest_check else None,
            "locations": [c.as_dict() for c in self.locations],
        }


def coverage(session: Session, *, at: datetime | None = None) -> Coverage:
    """Coverage now (or at ``at``), per location, in two queries."""
    at = at or now()
    rows = session.execute(
        select(
            StorageLocation.name,
            func.count(FixityCoverage.id),
            func.sum(case((FixityCoverage.due_at > at, 1), else_=0)),
            func.sum(case((FixityCoverage.last_checked_at.is_(None), 1), else_=0)),
            func.sum(case((FixityCoverage.last_outcome.in_(BAD_OUTCOMES), 1), else_=0)),
            func.min(FixityCoverage.last_checked_at),
            func.max(FixityCoverage.last_checked_at),
        )
        .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
        .group_by(StorageLocation.name)
        .order_by(StorageLocation.name)
    ).all()
    files = session.execute(select(func.count(File.id))).scalar_one()
    # Packages whose plan counts the content files each location holds have theirs counted
    # from the plan; every other replica holds every content file of its package.
    counted = exists().where(
        ReplicationPlan.package_id == File.package_id, ReplicationPlan.tier_locations != ""
    )
    replica_files = session.execute(
        select(func.count(File.id))
        .join(Replica, Replica.package_id == File.package_id)
        .where(~counted)
    ).scalar_one() + _planned_copies(session)
    return Coverage(
        expected=int(files) + int(replica_files) + _other_copies(session),
        locations=tuple(
            LocationCoverage(
                name,
                int(n),
                int(cov or 0),
                int(never or 0),
                int(bad or 0),
                _aware(oldest),
                _aware(newest),
            )
            for name, n, cov, never, bad, oldest, newest in rows
        ),
        at=at,
    )


#: Replication plans read at a time (see _planned_copies).
PLAN_PAGE = 5000


def _planned_copies(session: Session) -> int:
    """The content files at replica locations of the packages whose replication plan counts
    the content files each location holds (a location may hold the payload files of some
    tiers only). Plans are read a page at a time, in the order of their package, so that
    the count's memory does not grow with the archive."""
    total = 0
    after = ""
    while True:
        counts: dict[str, dict[str, int]] = {}
        for pid, text in session.execute(
            select(ReplicationPlan.package_id, ReplicationPlan.tier_locations)
            .where(ReplicationPlan.tier_locations != "", ReplicationPlan.package_id > after)
            .order_by(ReplicationPlan.package_id)
            .limit(PLAN_PAGE)
        ):
            counts[pid] = json.loads(text)["files"]
            after = pid  # the catalog's order, which need not be Python's
        if not counts:
            return total
        for pid, name in session.execute(
            select(Replica.package_id, StorageLocation.name)
            .join(StorageLocation, StorageLocation.id == Replica.location_id)
            .where(Replica.package_id.in_(list(counts)))
        ):
            total += int(counts[pid].get(name, 0))
        if len(counts) < PLAN_PAGE:
            return total


def _other_copies(session: Session) -> int:
    """Copies of the objects' other files (``stored_files``: inventories, sidecars, records,
    anchors) and of each object's root inventory and sidecar, where the catalog says they are:
    a version's files at each copy of that version, a record at a replica read back after it
    was registered."""
    sf = StoredFile
    primary = session.execute(select(func.count(sf.id))).scalar_one()
    at_replicas = session.execute(
        select(func.count(sf.id))
        .select_from(sf)
        .join(Replica, Replica.package_id == sf.package_id)
        .where(
            or_(
                and_(sf.version > 0, Replica.version >= sf.version),
                and_(sf.version == 0, Replica.verified_at >= sf.added_at),
            )
        )
    ).scalar_one()
    with_rows = select(sf.package_id).distinct().scalar_subquery()
    packages = session.execute(
        select(func.count(Package.id)).where(Package.id.in_(with_rows))
    ).scalar_one()
    replicas = session.execute(
        select(func.count(Replica.id)).where(Replica.package_id.in_(with_rows))
    ).scalar_one()
    # The custody log's files (``log_files``): at the primary, and at each location whose
    # copy replication read back (its coverage row under the log's reserved package key).
    log = session.execute(select(func.count(LogFile.id))).scalar_one()
    log_at_replicas = session.execute(
        select(func.count(FixityCoverage.id))
        .join(LogFile, LogFile.path == FixityCoverage.content_path)
        .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
        .where(FixityCoverage.package_id == LOG_KEY, StorageLocation.name != PRIMARY_LOCATION)
    ).scalar_one()
    return (
        int(primary)
        + int(at_replicas)
        + 2 * (int(packages) + int(replicas))
        + int(log)
        + int(log_at_replicas)
    )


def _aware(value: Any) -> datetime | None:
    """min()/max() come back without the column's type on SQLite: give them their zone."""
    from archive.catalog.tables import UTCDateTime

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    result = UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]
    return result
