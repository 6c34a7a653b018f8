"""``custos policies apply``: record the sunset transitions due on a day.

For each package with an assignment whose sunset has come (the catalog finds them by an
index on the sunset date; what is due is then decided again from the object's own
``custos/access.json``, under the store's commit lock, by :func:`policies.sunset.due_transitions`):

* a ``restricted`` assignment moves to its successor: the assignment is replaced and a
  ``tier change`` event names the old and new tier, the policy and the sunset's basis;
* a ``protected-identity`` assignment opens a review (:mod:`access.decisions.reviews`): a ``review``
  event; the tier stays until two different registrars approve, or one extends it.

All of one package's transitions go into one new OCFL version (``custos/access.json`` and
``custos/premis.xml``), then the catalog and the public search index, in one transaction per
package (:func:`access.decisions.records.write_access`), so newly public material is found at once.
Running again is harmless: a moved assignment has a new sunset (or none), and an assignment
with a pending review is not due again. Events name no path (paths may identify people).

A date later than today is refused unless nothing is written (``dry_run``): recording a
sunset early would open material before its day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from access.decisions.records import (
    StoredAccess,
    file_digests,
    links_of,
    read_access,
    what_of,
    write_access,
)
from access.decisions.reviews import PENDING, new_record, pending_paths
from access.decisions.rules import access_policy, today
from archive.catalog.tables import AccessAssignment, AccessReview, Package
from archive.custody import new_event
from archive.errors import CustosError, InputRejected
from archive.findings import Finding
from archive.model import EventRecord
from archive.services import Services
from policies.access import Assignment, assignment_from_json, assignment_to_json
from policies.errors import AccessRuleError
from policies.sunset import Move, OpenReview, Transition, due_transitions

AGENT = "Custos sunset policy"


@dataclass(frozen=True, slots=True)
class Applied:
    """One transition recorded (or, in a dry run, due). No path: it may identify people;
    ``scope`` says whether it is the package's own assignment."""

    package_id: str
    kind: str  # move | review
    scope: str  # package | part
    tier: str
    new_tier: str | None  # None for a review: the tier stays
    sunset: date
    review_id: str | None = None
    event: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "kind": self.kind,
            "scope": self.scope,
            "tier": self.tier,
            "new_tier": self.new_tier,
            "sunset": self.sunset.isoformat(),
            "review_id": self.review_id,
            "event": self.event,
        }


@dataclass
class ApplyReport:
    on: date
    dry_run: bool
    policy: str
    transitions: list[Applied] = field(default_factory=list)
    versions: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (package id, reason)

    @property
    def moved(self) -> int:
        return sum(1 for t in self.transitions if t.kind == "move")

    @property
    def reviews_opened(self) -> int:
        return sum(1 for t in self.transitions if t.kind == "review")

    def as_dict(self) -> dict[str, Any]:
        return {
            "on": self.on.isoformat(),
            "dry_run": self.dry_run,
            "policy": self.policy,
            "moved": self.moved,
            "reviews_opened": self.reviews_opened,
            "versions": self.versions,
            "transitions": [t.as_dict() for t in self.transitions],
            "failed": [{"package_id": p, "reason": r} for p, r in self.failed],
        }


def due_packages(session: Session, on: date) -> list[tuple[str, str]]:
    """``(package id, object path)`` of every package holding an assignment whose sunset is
    on or before ``on`` and whose review (if it is protected) is not pending already."""
    pending = exists().where(
        and_(
            AccessReview.package_id == AccessAssignment.package_id,
            AccessReview.path == AccessAssignment.path,
            AccessReview.outcome == PENDING,
        )
    )
    rows = session.execute(
        select(Package.id, Package.object_path)
        .where(
            Package.id.in_(
                select(AccessAssignment.package_id).where(
                    AccessAssignment.sunset.is_not(None),
                    AccessAssignment.sunset <= on,
                    ~pending,
                )
            )
        )
        .order_by(Package.created_at, Package.id)
    ).all()
    return [(pid, rel) for pid, rel in rows]


def check_date(on: date, *, dry_run: bool) -> None:
    """Refuse a day after today unless nothing is written."""
    if on > today() and not dry_run:
        raise InputRejected(
            f"{on.isoformat()} is after today ({today().isoformat()}): recording its sunsets "
            "now would open material before its day",
            [Finding("SUNSET-FUTURE-DATE", "error", "the date is in the future", "--on")],
            hint="see what will fall due with --dry-run; apply on the day itself",
        )


def apply_due(
    services: Services,
    *,
    on: date | None = None,
    dry_run: bool = False,
    packages: list[tuple[str, str]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ApplyReport:
    """Record every transition due on ``on`` (default today) in ``packages`` (default
    :func:`due_packages`); with ``dry_run``, only report them. A package that cannot be
    done (storage unreadable, an invalid assignment) is listed in the report's ``failed``
    and the others go on. Raises :class:`InputRejected` for a future date (not a dry run)."""
    day = on or today()
    check_date(day, dry_run=dry_run)
    policy = access_policy(services.settings)
    report = ApplyReport(day, dry_run, policy.label)
    if packages is None:
        with services.sessions() as session:
            packages = due_packages(session, day)
    for package_id, rel in packages:
        try:
            if dry_run:
                report.transitions += _plan(read_access(services, rel), package_id, day)
            else:
                with services.commit_lock():
                    done = _apply_one(services, package_id, rel, day, policy.label)
                report.transitions += done
                report.versions += bool(done)
        except CustosError as exc:
            report.failed.append((package_id, exc.message))
        except AccessRuleError as exc:
            report.failed.append((package_id, f"custos/access.json: {exc.message}"))
        if progress:
            progress(1)
    return report


def _due(stored: StoredAccess, day: date) -> list[Transition[str]]:
    assignments = {a["path"]: assignment_from_json(a) for a in stored.access["assignments"]}
    return due_transitions(assignments, day, under_review=pending_paths(stored.access))


def _scope(a: Assignment) -> str:
    return "package" if a.path == "" else "part"


def _plan(stored: StoredAccess, package_id: str, day: date) -> list[Applied]:
    out = []
    for t in _due(stored, day):
        a = t.assignment
        assert a.sunset is not None
        if isinstance(t, Move):
            out.append(Applied(package_id, "move", _scope(a), a.tier, t.replacement.tier, a.sunset))
        else:
            out.append(Applied(package_id, "review", _scope(a), a.tier, None, a.sunset))
    return out


def _apply_one(
    services: Services, package_id: str, rel: str, day: date, policy_label: str
) -> list[Applied]:
    """One package's due transitions, as one new version. Call under the commit lock."""
    stored = read_access(services, rel)
    due = _due(stored, day)
    if not due:
        return []
    access = stored.access
    with services.sessions() as session:
        digests = file_digests(session, package_id, [t.assignment.path for t in due])
    replaced: dict[str, dict[str, Any]] = {}
    events: list[EventRecord] = []
    done: list[Applied] = []
    for t in due:
        a = t.assignment
        assert a.sunset is not None
        links = links_of(package_id, a.path, digests)
        what = what_of(a.path)
        basis = f"policy {policy_label}; sunset basis: {a.sunset_basis}"
        if isinstance(t, Move):
            new = t.replacement
            replaced[a.path] = assignment_to_json(new)
            event = new_event(
                "tier change",
                "success",
                f"{what}: {a.tier} -> {new.tier} at its sunset {a.sunset.isoformat()} "
                f"(applied as of {day.isoformat()}; {basis})",
                links=links,
                agent=AGENT,
            )
            done.append(
                Applied(package_id, "move", _scope(a), a.tier, new.tier, a.sunset, None, event.uuid)
            )
        else:
            assert isinstance(t, OpenReview)
            record = new_record(a, opened_on=day)
            access.setdefault("reviews", []).append(record)
            event = new_event(
                "review",
                "success",
                f"review {record['id']} of {what} opened: its protected-identity "
                f"sunset {a.sunset.isoformat()} has come (as of {day.isoformat()}; {basis}); "
                f"it stays protected-identity until two different registrars approve its move "
                f"to {a.successor}, or one extends it",
                links=links,
                agent=AGENT,
            )
            done.append(
                Applied(
                    package_id,
                    "review",
                    _scope(a),
                    a.tier,
                    None,
                    a.sunset,
                    record["id"],
                    event.uuid,
                )
            )
        events.append(event)
    access["assignments"] = [replaced.get(row["path"], row) for row in access["assignments"]]
    access["policy"] = policy_label
    moved, opened = (
        sum(1 for d in done if d.kind == "move"),
        sum(1 for d in done if d.kind != "move"),
    )
    write_access(
        services,
        package_id,
        stored,
        access,
        events,
        message=f"Sunsets of {day.isoformat()}: {moved} tier move(s), {opened} review(s) opened",
        agent=AGENT,
    )
    return done
