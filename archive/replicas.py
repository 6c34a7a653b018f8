"""Replicas as the catalog records them, and whether a package is *safely stored*.

A package is safely stored when the replication policy's plan for it (written by each
replication run, see ``fixity/replication.py``) lists as many locations as it needs copies
beside the primary storage root, and each of them holds a copy of the package's current
version that was written and read back in full (a ``replicas`` row with status ``stored``
for that version). Anything less is reported as what it is: not planned yet, waiting for a
copy, a copy of an older version, a damaged copy, or a policy that no configured location
can satisfy. This module only reads and writes catalog rows; it never judges bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive.catalog.tables import (
    FixityCoverage,
    LogFile,
    Package,
    Replica,
    ReplicationPlan,
    StorageLocation,
)
from archive.catalog.upsert import insert_ignore
from archive.config import PRIMARY_LOCATION
from archive.fixity_state import LOG_KEY

#: Replica statuses: written and read back in full; or found damaged and not repaired.
STORED = "stored"
DAMAGED = "damaged"


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    location: str
    kind: str
    uri: str
    version: int
    status: str
    stored_at: datetime
    verified_at: datetime | None


@dataclass(frozen=True, slots=True)
class PlanRow:
    tier: str
    copies: int
    locations: tuple[str, ...]
    shortfall: int
    policy: str
    planned_at: datetime


@dataclass(frozen=True, slots=True)
class ReplicationState:
    """A package's copies against its plan."""

    package_id: str
    head: int
    plan: PlanRow | None
    replicas: tuple[ReplicaRow, ...]

    def current(self, location: str) -> bool:
        return any(
            r.location == location and r.status == STORED and r.version == self.head
            for r in self.replicas
        )

    @property
    def missing(self) -> tuple[str, ...]:
        """Planned locations without a read-back copy of the current version."""
        if self.plan is None:
            return ()
        return tuple(loc for loc in self.plan.locations if not self.current(loc))

    @property
    def safely_stored(self) -> bool:
        return self.plan is not None and self.plan.shortfall == 0 and not self.missing

    def describe(self) -> str:
        """One line for an operator: safely stored, or why not."""
        if self.plan is None:
            return (
                "NOT safely stored: replication has not run for it yet (one copy, in the "
                "primary storage root); run `custos replicate` or a worker"
            )
        need = f"{self.plan.copies} copies ({self.plan.tier}, {self.plan.policy})"
        if self.safely_stored:
            where = ", ".join(["primary", *self.plan.locations])
            return f"safely stored: {need} written and read back: {where}"
        reasons = []
        for loc in self.missing:
            rows = [r for r in self.replicas if r.location == loc]
            if not rows:
                reasons.append(f"no copy at {loc} yet")
            elif rows[0].status != STORED:
                reasons.append(f"the copy at {loc} is {rows[0].status}")
            else:
                reasons.append(f"the copy at {loc} holds v{rows[0].version}, not v{self.head}")
        if self.plan.shortfall:
            reasons.append(
                f"{self.plan.shortfall} more location(s) needed than the settings configure "
                "(add a [locations.NAME] table: `custos replicate` shows one)"
            )
        return f"NOT safely stored: {need} required; " + "; ".join(reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "safely_stored": self.safely_stored,
            "summary": self.describe(),
            "plan": (
                None
                if self.plan is None
                else {
                    "tier": self.plan.tier,
                    "copies": self.plan.copies,
                    "locations": list(self.plan.locations),
                    "shortfall": self.plan.shortfall,
                    "policy": self.plan.policy,
                    "planned_at": self.plan.planned_at.isoformat(),
                }
            ),
            "replicas": [
                {
                    "location": r.location,
                    "kind": r.kind,
                    "uri": r.uri,
                    "version": r.version,
                    "status": r.status,
                    "stored_at": r.stored_at.isoformat(),
                    "verified_at": r.verified_at.isoformat() if r.verified_at else None,
                }
                for r in self.replicas
            ],
        }


def replication_state(session: Session, package_id: str) -> ReplicationState:
    """What the catalog records about a package's copies. The package must exist."""
    head = session.execute(select(Package.head).where(Package.id == package_id)).scalar_one()
    plan = session.get(ReplicationPlan, package_id)
    rows = session.execute(
        select(Replica, StorageLocation)
        .join(StorageLocation, StorageLocation.id == Replica.location_id)
        .where(Replica.package_id == package_id)
        .order_by(StorageLocation.name)
    ).all()
    return ReplicationState(
        package_id,
        head,
        None if plan is None else _plan(plan),
        tuple(
            ReplicaRow(loc.name, loc.kind, loc.uri, r.version, r.status, r.stored_at, r.verified_at)
            for r, loc in rows
        ),
    )


def _plan(plan: ReplicationPlan) -> PlanRow:
    return PlanRow(
        plan.tier,
        plan.copies,
        tuple(x for x in plan.locations.split(",") if x),
        plan.shortfall,
        plan.policy,
        plan.planned_at,
    )


@dataclass(frozen=True, slots=True)
class ReplicationSummary:
    packages: int
    safely_stored: int
    not_planned: int
    waiting: tuple[str, ...]  # package ids not safely stored (planned or not)
    #: The custody log's files in the storage root (checkpoints, records, anchors) and how
    #: many of them each replica location holds a read-back copy of.
    log_files: int = 0
    log_held: tuple[tuple[str, int], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "packages": self.packages,
            "safely_stored": self.safely_stored,
            "not_safely_stored": self.packages - self.safely_stored,
            "not_planned": self.not_planned,
            "waiting": list(self.waiting[:100]),
            "custody_log": {"files": self.log_files, "held": dict(self.log_held)},
        }


def replication_summary(session: Session) -> ReplicationSummary:
    """Every package's state in three queries, and the custody log's copies in two."""
    heads = dict(session.execute(select(Package.id, Package.head)).all())
    plans = {p.package_id: _plan(p) for p in session.execute(select(ReplicationPlan)).scalars()}
    current: dict[str, set[str]] = {}
    for pid, name in session.execute(
        select(Replica.package_id, StorageLocation.name)
        .join(StorageLocation, StorageLocation.id == Replica.location_id)
        .join(Package, Package.id == Replica.package_id)
        .where(Replica.status == STORED, Replica.version == Package.head)
    ):
        current.setdefault(pid, set()).add(name)
    waiting = sorted(
        pid
        for pid in heads
        if (plan := plans.get(pid)) is None
        or plan.shortfall
        or not set(plan.locations) <= current.get(pid, set())
    )
    log_files = session.execute(select(func.count(LogFile.id))).scalar_one()
    log_held = session.execute(
        select(StorageLocation.name, func.count(FixityCoverage.id))
        .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
        .join(LogFile, LogFile.path == FixityCoverage.content_path)
        .where(FixityCoverage.package_id == LOG_KEY, StorageLocation.name != PRIMARY_LOCATION)
        .group_by(StorageLocation.name)
        .order_by(StorageLocation.name)
    ).all()
    return ReplicationSummary(
        len(heads),
        len(heads) - len(waiting),
        len(heads) - len(plans),
        tuple(waiting),
        int(log_files),
        tuple((name, int(n)) for name, n in log_held),
    )


def location_id(session: Session, name: str, kind: str, uri: str, at: datetime) -> int:
    """The ``storage_locations`` row of a location, added (or its kind and URI brought up to
    date) as needed."""
    # Read first: an insert, even one that adds nothing, takes SQLite's write lock until the
    # caller commits (a fixity worker's seed held it for a second, and the other waited).
    query = select(StorageLocation).where(StorageLocation.name == name)
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        # Two workers may add the same location at once: the second insert is skipped.
        insert_ignore(
            session,
            StorageLocation,
            [{"name": name, "kind": kind, "uri": uri, "created_at": at}],
            key=["name"],
        )
        row = session.execute(query).scalar_one()
    if (row.kind, row.uri) != (kind, uri):
        row.kind, row.uri = kind, uri
        session.flush()
    return row.id


def count_replicas(session: Session) -> int:
    return session.execute(select(func.count()).select_from(Replica)).scalar_one()
