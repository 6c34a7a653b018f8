"""Reviews of protected-identity assignments: listed, approved, extended, and where they live.

Where a review is kept. Storage is the record and the catalog its index (ARCHITECTURE.md,
principle 1), so a review lives in the object itself, in the ``reviews`` list of
``custos/access.json``, beside the assignment it reviews; every step is a new OCFL version
of that file and of ``custos/premis.xml`` holding the step's custody event (who, when), as a
tier change is. A review record::

    {"id": "<uuid>", "path": "data/…" or "", "opened_on": "YYYY-MM-DD",
     "assignment": {the reviewed assignment as it stood, see policies.access.assignment_to_json},
     "outcome": "pending" | "opened" | "extended" | "superseded", "decided_on": null | "…",
     "approvals": [{"registrar": "<user name>", "on": "YYYY-MM-DD"}, …],
     "extension": null | {"registrar", "on", "new_sunset", "reason"}}

So ``custos catalog rebuild`` recreates every review with its approvals from storage alone
(``archive.catalog.index`` indexes them into ``access_reviews``), any OCFL tool shows them,
and the PREMIS events carry the same history a second way. Decided reviews stay in the list:
the file keeps the whole history of the path's reviews.

The rules are the pure functions of :mod:`policies.sunset` (two *different* registrars,
compared with :func:`policies.sunset.person_key`; one registrar approving twice is refused
and never counts; an extension needs a later date and a reason). Each step re-reads the
review from storage under the store's commit lock, so two registrars approving at the same
moment are counted one after the other.

Raises :class:`NotFound` (no such review), :class:`Forbidden` (not a registrar),
:class:`InputRejected` (a step the rules refuse: codes ``REVIEW-…`` of
:mod:`policies.errors`), :class:`CatalogError` (catalog and storage disagree).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.decisions.reads import PackageHead, package_head
from access.decisions.records import (
    StoredAccess,
    file_digests,
    links_of,
    read_access,
    what_of,
    write_access,
)
from access.decisions.rules import (
    Principal,
    access_event,
    access_policy,
    load_rules,
    may_see,
    must_log,
    record_reads,
    today,
)
from access.paging import Listing, Page
from archive.catalog.tables import AccessReview, Package
from archive.custody import new_event
from archive.errors import CatalogError, Forbidden, InputRejected, NotFound
from archive.findings import Finding
from archive.model import EventRecord, Link
from archive.services import Services
from policies.access import Assignment, assignment_from_json, assignment_to_json
from policies.decide import Decision
from policies.errors import AccessRuleError, NotARegistrar, ReviewClosed
from policies.schema import AccessPolicy
from policies.sunset import (
    Actor,
    Approval,
    Extension,
    Review,
    approve,
    extend,
    resolve_review,
    review_outcome,
)
from policies.vocabulary import APPROVALS_TO_OPEN, REVIEWER_ROLE

PENDING, SUPERSEDED = "pending", "superseded"
AGENT = "Custos review service"
NOT_FOUND_HINT = "`custos policies reviews` (or GET /registrar/reviews) lists the open reviews"


# --- the record in custos/access.json -------------------------------------------------------


def new_record(assignment: Assignment, *, opened_on: date) -> dict[str, Any]:
    """The record of a review opened on ``opened_on`` by ``assignment``'s sunset."""
    return {
        "id": str(uuid.uuid4()),
        "path": assignment.path,
        "opened_on": opened_on.isoformat(),
        "assignment": {k: v for k, v in assignment_to_json(assignment).items() if k != "path"},
        "outcome": PENDING,
        "decided_on": None,
        "approvals": [],
        "extension": None,
    }


def pending_paths(access: dict[str, Any]) -> set[str]:
    """Paths of ``custos/access.json`` whose assignment has a review pending."""
    return {r["path"] for r in access.get("reviews", []) if r["outcome"] == PENDING}


def supersede_reviews(access: dict[str, Any], path: str, *, on: date) -> list[str]:
    """Close as ``superseded`` the pending reviews of ``path`` (its assignment is being
    replaced by a tier change); return their ids."""
    closed = []
    for r in access.get("reviews", []):
        if r["path"] == path and r["outcome"] == PENDING:
            r["outcome"], r["decided_on"] = SUPERSEDED, on.isoformat()
            closed.append(r["id"])
    return closed


def review_of(record: dict[str, Any]) -> Review:
    """The policy value of a stored record; raises ``AccessRuleError`` if it is not valid."""
    ext = record.get("extension")
    return Review(
        assignment_from_json({**record["assignment"], "path": record["path"]}),
        date.fromisoformat(record["opened_on"]),
        tuple(Approval(a["registrar"], date.fromisoformat(a["on"])) for a in record["approvals"]),
        Extension(
            ext["registrar"],
            date.fromisoformat(ext["on"]),
            date.fromisoformat(ext["new_sunset"]),
            ext["reason"],
        )
        if ext
        else None,
    )


# --- listing --------------------------------------------------------------------------------


def _view(row: AccessReview, title: str, depositor: str) -> dict[str, Any]:
    approvals = json.loads(row.approvals)
    return {
        "review_id": row.id,
        "package_id": row.package_id,
        "title": title,
        "depositor": depositor,
        "path": row.path,
        "sunset": row.sunset.isoformat(),
        "successor": row.successor,
        "opened_on": row.opened_on.isoformat(),
        "outcome": row.outcome,
        "approvals": approvals,
        "approvals_needed": max(0, APPROVALS_TO_OPEN - len(approvals)),
    }


def list_reviews(
    session: Session, policy: AccessPolicy, *, reader: Principal | None = None
) -> list[dict[str, Any]]:
    """The pending reviews, oldest first. For an API ``reader``, the reads of the protected
    metadata they show are recorded (one access event per package, as the policy logs those
    reads) in the caller's transaction, and a review is shown only where the policy lets
    them see the path's metadata; without ``reader`` (the operator's command line, on the
    archive's own machine) every pending review is listed."""
    views, events = _shown(_visible(session, policy, reader), reader)
    record_reads(session, events)
    return views


def review_page(session: Session, policy: AccessPolicy, reader: Principal, page: Page) -> Listing:
    """One page of the pending reviews ``reader`` may see (as :func:`list_reviews` lists
    them), with their total; the reads of the reviews on the page only are recorded."""
    visible = _visible(session, policy, reader)
    views, events = _shown(page.of(visible), reader)
    record_reads(session, events)
    return Listing.counted(page, views, len(visible))


_Visible = tuple[AccessReview, PackageHead, list[Decision]]


def _visible(session: Session, policy: AccessPolicy, reader: Principal | None) -> list[_Visible]:
    """The pending reviews, oldest first, whose path's metadata ``reader`` may see (every one
    without a reader), with their package and the decisions that let them be seen."""
    rows = session.execute(
        select(AccessReview)
        .where(AccessReview.outcome == PENDING)
        .order_by(AccessReview.opened_on, AccessReview.package_id, AccessReview.path)
    ).scalars()
    out: list[_Visible] = []
    for row in rows:
        head = package_head(session, row.package_id)
        if head is None:
            continue
        decisions: list[Decision] = []
        if reader is not None:
            rules = load_rules(session, row.package_id, head.depositor)
            ok, decisions = may_see(
                policy, rules, row.path, reader=reader, action="read-metadata", purpose=None
            )
            if not ok:
                continue
        out.append((row, head, decisions))
    return out


def _shown(
    visible: list[_Visible], reader: Principal | None
) -> tuple[list[dict[str, Any]], list[EventRecord]]:
    """The views of reviews shown to ``reader``, and the access events of those reads."""
    views, events, logged = [], [], set()
    for row, head, decisions in visible:
        if reader is not None and must_log(decisions) and row.package_id not in logged:
            logged.add(row.package_id)
            events.append(
                access_event(
                    reader,
                    row.package_id,
                    "open reviews of protected identities listed for a registrar",
                    purpose=None,
                    decisions=decisions,
                )
            )
        views.append(_view(row, head.title, head.depositor))
    return views, events


# --- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewStep:
    """What a review step did: the review's outcome after it, the path's assignment, the
    version written and the custody events recorded."""

    review_id: str
    package_id: str
    path: str
    outcome: str  # pending | opened | extended
    approvals: tuple[str, ...]
    tier: str
    sunset: date | None
    successor: str | None
    version: int
    events: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "review_id": self.review_id,
            "package_id": self.package_id,
            "path": self.path,
            "outcome": self.outcome,
            "approvals": list(self.approvals),
            "approvals_needed": 0
            if self.outcome != PENDING
            else max(0, APPROVALS_TO_OPEN - len(self.approvals)),
            "tier": self.tier,
            "sunset": self.sunset.isoformat() if self.sunset else None,
            "successor": self.successor,
            "version": self.version,
            "events": list(self.events),
        }


def find_review(session: Session, ref: str) -> tuple[str, str, str]:
    """``(review id, package id, object path)`` of the review ``ref`` names: its id, or a
    unique prefix of it (8 characters at least). Raises :class:`NotFound`."""
    key = ref.strip().lower()
    rows: list[tuple[str, str, str]] = []
    if re.fullmatch(r"[0-9a-f-]{8,36}", key):
        found = session.execute(
            select(AccessReview.id, AccessReview.package_id, Package.object_path)
            .join(Package, Package.id == AccessReview.package_id)
            .where(AccessReview.id.startswith(key, autoescape=True))
            .limit(2)
        ).all()
        rows = [(r[0], r[1], r[2]) for r in found]
    if len(rows) > 1:
        raise InputRejected(
            f"{ref!r} is the start of more than one review's id",
            [Finding("REVIEW-AMBIGUOUS", "error", "the prefix is not unique", "REVIEW")],
            hint="give more of the review's id",
        )
    if not rows:
        raise NotFound(f"no review {ref!r}", hint=NOT_FOUND_HINT)
    review_id, package_id, rel = rows[0]
    return review_id, package_id, rel


def approve_review(
    services: Services, reader: Principal, ref: str, *, on: date | None = None
) -> ReviewStep:
    """``reader``'s approval of the review ``ref``; the second *different* registrar's
    approval opens the assignment to its successor. A registrar approving twice is refused
    (``REVIEW-DUPLICATE-APPROVAL``) and the approval is not counted."""
    day = on or today()
    return _step(
        services,
        reader,
        ref,
        day,
        "REVIEW",
        lambda review, actor: approve(review, actor, on=day),
    )


def extend_review(
    services: Services,
    reader: Principal,
    ref: str,
    *,
    until: date,
    reason: str,
    on: date | None = None,
) -> ReviewStep:
    """``reader``'s decision to keep the reviewed assignment protected until ``until`` (after
    today) for ``reason`` (not blank): the sunset moves and the review is closed. A new
    review opens when the new sunset comes."""
    day = on or today()
    return _step(
        services,
        reader,
        ref,
        day,
        "reason" if not reason.strip() else "until" if until <= day else "REVIEW",
        lambda review, actor: extend(review, actor, until, on=day, reason=reason.strip()),
    )


def _refused(exc: AccessRuleError, where: str) -> InputRejected:
    return InputRejected(
        f"review step refused: {exc.message}",
        [Finding(exc.code, "error", exc.message, where)],
        hint=exc.hint,
    )


def _step(
    services: Services,
    reader: Principal,
    ref: str,
    on: date,
    where: str,
    decide: Callable[[Review, Actor], Review],
) -> ReviewStep:
    if reader.role != REVIEWER_ROLE:  # before anything is looked up
        raise Forbidden(
            f"{reader.agent} may not approve or extend reviews",
            hint=NotARegistrar.hint,
        )
    policy = access_policy(services.settings)
    with services.sessions() as session:
        review_id, package_id, rel = find_review(session, ref)
        head = package_head(session, package_id)
        if head is None:
            raise NotFound(f"no review {ref!r}", hint=NOT_FOUND_HINT)
    with services.commit_lock():
        stored = read_access(services, rel)
        record = next((r for r in stored.access.get("reviews", []) if r["id"] == review_id), None)
        if record is None:
            raise CatalogError(
                f"review {review_id} is in the catalog but not in the object of {package_id}",
                hint="run `custos catalog rebuild`: the catalog is recreated from storage",
            )
        try:
            before = review_of(record)
            _require_current(stored, record, before)
            after = decide(before, Actor(reader.name, reader.role))
            outcome = review_outcome(after)
            new = (
                resolve_review(policy, after, depositor=head.depositor)
                if outcome != PENDING
                else before.assignment
            )
        except NotARegistrar as exc:
            raise Forbidden(exc.message, hint=exc.hint) from exc
        except AccessRuleError as exc:
            raise _refused(exc, where) from exc
        with services.sessions() as session:
            digests = file_digests(session, package_id, [record["path"]])
        links = links_of(package_id, record["path"], digests)
        events = _record_step(stored, record, after, outcome, new, reader, on, policy.label, links)
        number = write_access(
            services,
            package_id,
            stored,
            stored.access,
            events,
            message=f"Review {review_id}: {outcome} after a step by {reader.agent}",
            agent=AGENT,
        )
    return ReviewStep(
        review_id,
        package_id,
        record["path"],
        outcome,
        tuple(a.registrar for a in after.approvals),
        new.tier,
        new.sunset,
        new.successor,
        number,
        tuple(e.uuid for e in events),
    )


def _require_current(stored: StoredAccess, record: dict[str, Any], review: Review) -> None:
    """Refuse a step on a review already decided, or whose assignment was replaced."""
    if record["outcome"] != PENDING:
        raise ReviewClosed(f"the review is already decided ({record['outcome']})")
    current = [a for a in stored.access["assignments"] if a["path"] == record["path"]]
    if not current or assignment_from_json(current[0]) != review.assignment:
        raise ReviewClosed("the assignment under review was replaced since the review opened")


def _record_step(
    stored: StoredAccess,
    record: dict[str, Any],
    after: Review,
    outcome: str,
    new: Assignment,
    reader: Principal,
    on: date,
    policy_label: str,
    links: list[Link],
) -> list[EventRecord]:
    """Write the step into the record (and the new assignment into the document); return
    its custody events. Events name no path (paths may identify people)."""
    access = stored.access
    record["approvals"] = [
        {"registrar": a.registrar, "on": a.on.isoformat()} for a in after.approvals
    ]
    ext = after.extension
    if ext is not None:
        record["extension"] = {
            "registrar": ext.registrar,
            "on": ext.on.isoformat(),
            "new_sunset": ext.new_sunset.isoformat(),
            "reason": ext.reason,
        }
    path, what = record["path"], what_of(record["path"])
    count = f"{len(after.approvals)} of {APPROVALS_TO_OPEN} different registrars"
    if outcome == PENDING:
        detail = f"approved by {reader.agent} on {on.isoformat()} ({count}); still pending"
    elif ext is not None:
        detail = (
            f"extended by {reader.agent} on {on.isoformat()}: protected-identity until "
            f"{ext.new_sunset.isoformat()}, then a new review; reason: {ext.reason}"
        )
    else:
        detail = (
            f"approved by {reader.agent} on {on.isoformat()} ({count}): decided, "
            f"protected-identity -> {new.tier}"
        )
    events = [
        new_event(
            "review",
            "success",
            f"review {record['id']} of {what}: {detail} ({policy_label})",
            links=links,
            agent=reader.agent,
        )
    ]
    if outcome == PENDING:
        return events
    record["outcome"], record["decided_on"] = outcome, on.isoformat()
    access["assignments"] = sorted(
        [a for a in access["assignments"] if a["path"] != path] + [assignment_to_json(new)],
        key=lambda a: a["path"],
    )
    access["policy"] = policy_label
    if ext is None:
        names = " and ".join(a.registrar for a in after.approvals)
        until = f" until {new.sunset.isoformat()}, then {new.successor}" if new.sunset else ""
        events.append(
            new_event(
                "tier change",
                "success",
                f"{what}: protected-identity -> {new.tier}{until}, after review {record['id']} "
                f"approved by registrars {names} ({policy_label}); sunset basis: "
                f"{after.assignment.sunset_basis}",
                links=links,
                agent=reader.agent,
            )
        )
    return events
