"""Sunsets: what falls due on a day, and the review of protected identities.

Pure values and functions: no database, no clock, no I/O. ``custos policies apply`` calls
:func:`due_transitions` with the stored assignments and today's date, then records what it
returns; nothing here changes a stored assignment.

* A ``restricted`` assignment moves to its successor by itself on its sunset date (the
  sunset is the first day of the successor tier; the day before, nothing is due): a
  :class:`Move` carrying the replacement assignment.
* A ``protected-identity`` assignment never opens by itself. On its sunset date an
  :class:`OpenReview` is due: a :class:`Review` that two *different* registrars must
  approve (:func:`approve`) before the successor tier applies, unless a registrar extends
  the assignment with a later sunset (:func:`extend`). An approval by the same registrar
  twice is refused and never counts. Registrars are told apart by name, compared after
  Unicode NFC normalisation, case folding and collapsing spaces.
* :func:`review_outcome` says ``pending``, ``opened`` or ``extended``;
  :func:`resolve_review` gives the assignment that replaces the reviewed one.

Errors raised: subclasses of :class:`policies.errors.ReviewRefused` for a refused review
step, :class:`policies.errors.InvalidAssignment` for a malformed assignment.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Hashable, Mapping, Set
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, Literal, TypeVar

from policies.access import Assignment, add_years, sunset_terms
from policies.errors import (
    BadExtension,
    BadReviewDate,
    DuplicateApproval,
    InvalidAssignment,
    NotARegistrar,
    ReviewClosed,
    ReviewPending,
    ReviewRefused,
)
from policies.schema import AccessPolicy
from policies.vocabulary import APPROVALS_TO_OPEN, REVIEWER_ROLE

Outcome = Literal["pending", "opened", "extended"]


def person_key(name: str) -> str:
    """The form in which two names are the same person: NFC, case-folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


@dataclass(frozen=True, slots=True)
class Actor:
    """Someone taking a review step: an authenticated user name and its role."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if not person_key(self.name):
            raise ReviewRefused("a review step needs the name of who takes it")


@dataclass(frozen=True, slots=True)
class Approval:
    """A registrar's approval to open a protected-identity assignment."""

    registrar: str
    on: date


@dataclass(frozen=True, slots=True)
class Extension:
    """A registrar's decision to keep a protected-identity assignment until ``new_sunset``."""

    registrar: str
    on: date
    new_sunset: date
    reason: str


@dataclass(frozen=True, slots=True)
class Review:
    """The review opened by the sunset of a protected-identity assignment.

    Valid by construction: it reviews a ``protected-identity`` assignment, opened on or
    after its sunset; steps are dated on or after the opening and in order; approvals
    come from distinct registrars and stop at the number that opens; an extension has a
    reason and a later date, and is not combined with an opening.
    Raises :class:`ReviewRefused` subclasses otherwise.
    """

    assignment: Assignment
    opened_on: date
    approvals: tuple[Approval, ...] = ()
    extension: Extension | None = None

    def __post_init__(self) -> None:
        a = self.assignment
        steps = [self.opened_on, *(x.on for x in self.approvals)]
        if self.extension is not None:
            steps += [self.extension.on, self.extension.new_sunset]
        if any(not isinstance(d, date) or isinstance(d, datetime) for d in steps):
            raise BadReviewDate("review steps are dated with dates, not times")
        if a.tier != "protected-identity" or a.sunset is None:
            raise ReviewRefused(f"only protected-identity assignments are reviewed, not {a.tier}")
        if self.opened_on < a.sunset:
            raise BadReviewDate(
                f"a review cannot open on {self.opened_on} before the sunset {a.sunset}"
            )
        last = self.opened_on
        seen: set[str] = set()
        for approval in self.approvals:
            if approval.on < last:
                raise BadReviewDate(
                    f"approval by {approval.registrar} on {approval.on} is dated before {last}"
                )
            last = approval.on
            key = person_key(approval.registrar)
            if not key:
                raise ReviewRefused("an approval needs the registrar's name")
            if key in seen:
                raise DuplicateApproval(
                    f"registrar {approval.registrar!r} has already approved this review"
                )
            seen.add(key)
        if len(seen) > APPROVALS_TO_OPEN:
            raise ReviewClosed(f"the review was opened by {APPROVALS_TO_OPEN} approvals already")
        ext = self.extension
        if ext is None:
            return
        if len(seen) >= APPROVALS_TO_OPEN:
            raise ReviewClosed("the review was opened by its approvals; it cannot be extended")
        if not person_key(ext.registrar):
            raise ReviewRefused("an extension needs the registrar's name")
        if ext.on < last:
            raise BadReviewDate(f"extension on {ext.on} is dated before {last}")
        if ext.new_sunset <= ext.on:
            raise BadExtension(
                f"new sunset {ext.new_sunset} is not after the extension on {ext.on}"
            )
        if not ext.reason.strip():
            raise BadExtension("an extension needs the reason for it")


def open_review(assignment: Assignment, *, on: date) -> Review:
    """The review a protected-identity assignment's sunset opens on ``on``."""
    return Review(assignment, on)


def review_outcome(review: Review) -> Outcome:
    """``extended`` once extended, ``opened`` once approved by two different registrars,
    else ``pending``. Approvals are counted by distinct registrar."""
    if review.extension is not None:
        return "extended"
    if len({person_key(a.registrar) for a in review.approvals}) >= APPROVALS_TO_OPEN:
        return "opened"
    return "pending"


def _require_step(review: Review, actor: Actor, what: str) -> None:
    if actor.role != REVIEWER_ROLE:
        raise NotARegistrar(f"{actor.name} ({actor.role}) may not {what} a review")
    outcome = review_outcome(review)
    if outcome != "pending":
        raise ReviewClosed(f"the review is already decided ({outcome})")


def approve(review: Review, registrar: Actor, *, on: date) -> Review:
    """The review with ``registrar``'s approval added on ``on``.

    Raises :class:`NotARegistrar`, :class:`ReviewClosed` (already decided),
    :class:`DuplicateApproval` (this registrar already approved; it never counts twice),
    :class:`BadReviewDate` (before the opening or an earlier step).
    """
    _require_step(review, registrar, "approve")
    approval = Approval(registrar.name, on)
    return Review(review.assignment, review.opened_on, (*review.approvals, approval))


def extend(review: Review, registrar: Actor, new_sunset: date, *, on: date, reason: str) -> Review:
    """The review decided as ``extended``: the assignment stays until ``new_sunset``.

    One registrar suffices, as the material stays closed; earlier approvals lapse.
    Raises :class:`NotARegistrar`, :class:`ReviewClosed`, :class:`BadReviewDate`,
    :class:`BadExtension` (new sunset not after ``on``, or no reason).
    """
    _require_step(review, registrar, "extend")
    extension = Extension(registrar.name, on, new_sunset, reason)
    return Review(review.assignment, review.opened_on, review.approvals, extension)


def resolve_review(policy: AccessPolicy, review: Review, *, depositor: str) -> Assignment:
    """The assignment that replaces the reviewed one once the review is decided.

    ``extended``: the same tier and successor until the new sunset. ``opened``: the
    successor tier from the day of the deciding approval; a ``restricted`` successor gets
    its sunset from that day under the policy default or ``depositor``'s agreement.
    Raises :class:`ReviewPending` while the review is pending.
    """
    old = review.assignment
    outcome = review_outcome(review)
    if outcome == "pending":
        raise ReviewPending(f"the review of {old.path or 'the package'} is still pending")
    ext = review.extension
    if ext is not None:
        return Assignment(
            old.path,
            old.tier,
            ext.new_sunset,
            old.successor,
            old.legal_basis,
            f"extended on {ext.on.isoformat()} by registrar {ext.registrar}: {ext.reason}",
        )
    decided = review.approvals[-1].on
    names = " and ".join(a.registrar for a in review.approvals)
    basis = (
        f"protected-identity sunset {old.sunset}: review opened on {decided.isoformat()}, "
        f"approved by registrars {names} (was: {old.legal_basis})"
    )
    if old.successor is None:  # excluded by Assignment for protected-identity
        raise InvalidAssignment("a protected-identity assignment without a successor")
    terms = sunset_terms(policy, old.successor, depositor)
    if terms is None:
        return Assignment(old.path, old.successor, None, None, basis)
    return Assignment(
        old.path,
        old.successor,
        add_years(decided, terms.period_years),
        terms.successor,
        basis,
        f"{terms.period_years} years from {decided.isoformat()} ({terms.basis})",
    )


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Move(Generic[K]):
    """A ``restricted`` assignment whose sunset has come: record ``replacement`` instead."""

    key: K
    assignment: Assignment
    due_on: date
    replacement: Assignment


@dataclass(frozen=True)
class OpenReview(Generic[K]):
    """A ``protected-identity`` assignment whose sunset has come: open ``review``."""

    key: K
    assignment: Assignment
    due_on: date
    review: Review


Transition = Move[K] | OpenReview[K]


def transition_due(key: K, assignment: Assignment, today: date) -> Transition[K] | None:
    """What ``assignment`` (known to the caller as ``key``) has due on ``today``, if anything."""
    sunset = assignment.sunset
    if sunset is None or today < sunset:
        return None
    if assignment.tier == "protected-identity":
        return OpenReview(key, assignment, sunset, open_review(assignment, on=today))
    successor = assignment.successor
    if successor is None:  # excluded by Assignment for restricted
        raise InvalidAssignment("a restricted assignment without a successor")
    replacement = Assignment(
        assignment.path,
        successor,
        None,
        None,
        f"sunset on {sunset.isoformat()} of the restricted assignment "
        f"(was: {assignment.legal_basis})",
    )
    return Move(key, assignment, sunset, replacement)


def due_transitions(
    assignments: Mapping[K, Assignment],
    today: date,
    *,
    under_review: Set[K] = frozenset(),
) -> list[Transition[K]]:
    """Every transition due on ``today``, in the order of ``assignments``.

    ``assignments`` maps the caller's keys (catalog ids, say) to the assignments as stored;
    each transition carries its key back. Assignments whose sunset is on or before
    ``today`` are due (a missed day is caught up, with ``due_on`` the sunset itself).
    Keys in ``under_review`` (a review already open) are skipped.
    """
    due: list[Transition[K]] = []
    for key, assignment in assignments.items():
        if key in under_review:
            continue
        transition = transition_due(key, assignment, today)
        if transition is not None:
            due.append(transition)
    return due
