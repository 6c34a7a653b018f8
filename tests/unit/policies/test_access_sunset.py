"""Sunsets: restricted opens on its date, never the day before; protected identities open
only after two different registrars approve, or stay closed until an extension's date."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from policies.access import Assignment, default_assignment
from policies.errors import (
    BadExtension,
    BadReviewDate,
    DuplicateApproval,
    NotARegistrar,
    ReviewClosed,
    ReviewPending,
    ReviewRefused,
)
from policies.load import load_access_policy
from policies.schema import AccessPolicy
from policies.sunset import (
    Actor,
    Approval,
    Extension,
    Move,
    OpenReview,
    Review,
    approve,
    due_transitions,
    extend,
    open_review,
    resolve_review,
    review_outcome,
    transition_due,
)
from policies.vocabulary import Tier
from tests.unit.policies.samples import BASE, changed, write

SUNSET = date(2052, 5, 3)
DAY = timedelta(days=1)
ALICE = Actor("Alice Mwangi", "registrar")
BOB = Actor("Bob Osei", "registrar")
CAROL = Actor("Carol Díaz", "registrar")


def restricted(path: str = "", sunset: date = SUNSET) -> Assignment:
    return Assignment(path, "restricted", sunset, "public", "privacy law art. 9", "default")


def protected(path: str = "", successor: Tier = "restricted") -> Assignment:
    return Assignment(path, "protected-identity", SUNSET, successor, "witness order 7", "default")


def public(path: str = "") -> Assignment:
    return Assignment(path, "public", None, None, "cleared")


@pytest.fixture
def policy() -> AccessPolicy:
    return load_access_policy()


def pending() -> Review:
    return open_review(protected("a/w.pdf"), on=SUNSET)


# --- Automatic moves of restricted material ----------------------------------------------


def test_restricted_is_not_due_the_day_before() -> None:
    assert transition_due("k", restricted(), SUNSET - DAY) is None
    assert due_transitions({"k": restricted()}, SUNSET - DAY) == []


def test_restricted_opens_on_its_date() -> None:
    old = restricted("a/b")
    [move] = due_transitions({"k": old}, SUNSET)
    assert isinstance(move, Move)
    assert (move.key, move.assignment, move.due_on) == ("k", old, SUNSET)
    new = move.replacement
    assert (new.path, new.tier, new.sunset, new.successor) == ("a/b", "public", None, None)
    assert new.legal_basis == (
        "sunset on 2052-05-03 of the restricted assignment (was: privacy law art. 9)"
    )


def test_a_missed_sunset_is_caught_up_with_its_own_date() -> None:
    [move] = due_transitions({7: restricted()}, SUNSET + 40 * DAY)
    assert isinstance(move, Move)
    assert move.due_on == SUNSET


def test_public_never_has_a_transition() -> None:
    assert due_transitions({1: public()}, date(9999, 12, 31)) == []


def test_transitions_keep_keys_and_order() -> None:
    later = restricted(sunset=SUNSET + DAY)
    assignments = {
        "c": restricted("c"),
        "a": protected("a"),
        "b": later,
        "d": public("d"),
        "e": restricted("e"),
    }
    due = due_transitions(assignments, SUNSET)
    assert [t.key for t in due] == ["c", "a", "e"]
    assert [type(t) for t in due] == [Move, OpenReview, Move]
    assert [t.key for t in due_transitions(assignments, SUNSET + DAY)] == ["c", "a", "b", "e"]


def test_open_reviews_are_not_opened_again() -> None:
    assignments = {1: protected("a"), 2: protected("b")}
    due = due_transitions(assignments, SUNSET, under_review={1})
    assert [t.key for t in due] == [2]


# --- Protected identities never open by themselves ---------------------------------------


def test_protected_identity_is_not_due_the_day_before() -> None:
    assert due_transitions({1: protected()}, SUNSET - DAY) == []


def test_protected_identity_sunset_opens_a_review_not_the_material() -> None:
    old = protected("a/w.pdf")
    for today in (SUNSET, SUNSET + 365 * DAY):
        [t] = due_transitions({1: old}, today)
        assert isinstance(t, OpenReview)
        assert t.due_on == SUNSET
        assert t.review == Review(old, today)
        assert review_outcome(t.review) == "pending"


def test_two_different_registrars_open() -> None:
    review = approve(pending(), ALICE, on=SUNSET)
    assert review_outcome(review) == "pending"
    review = approve(review, BOB, on=SUNSET + DAY)
    assert review_outcome(review) == "opened"
    assert review.approvals == (
        Approval("Alice Mwangi", SUNSET),
        Approval("Bob Osei", SUNSET + DAY),
    )


def test_one_registrar_approving_twice_does_not_count() -> None:
    once = approve(pending(), ALICE, on=SUNSET)
    for same in (ALICE, Actor("alice mwangi", "registrar"), Actor(" ALICE  Mwangi ", "registrar")):
        with pytest.raises(DuplicateApproval, match="has already approved"):
            approve(once, same, on=SUNSET + DAY)
    assert review_outcome(once) == "pending"
    with pytest.raises(DuplicateApproval):
        Review(once.assignment, SUNSET, (*once.approvals, Approval("ALICE MWANGI", SUNSET)))


def test_names_are_compared_after_normalisation() -> None:
    composed = approve(pending(), Actor("Carol D\u00edaz", "registrar"), on=SUNSET)
    with pytest.raises(DuplicateApproval):
        approve(composed, Actor("Carol Di\u0301az", "registrar"), on=SUNSET)


@pytest.mark.parametrize(
    "role", ["archivist", "depositor", "researcher", "anonymous", "", "Registrar"]
)
def test_only_registrars_take_review_steps(role: str) -> None:
    someone = Actor("Dana", role)
    with pytest.raises(NotARegistrar):
        approve(pending(), someone, on=SUNSET)
    with pytest.raises(NotARegistrar):
        extend(pending(), someone, SUNSET + 3650 * DAY, on=SUNSET, reason="risk")
    # and a non-registrar's step does not count towards opening
    review = approve(pending(), ALICE, on=SUNSET)
    with pytest.raises(NotARegistrar):
        approve(review, someone, on=SUNSET)
    assert review_outcome(review) == "pending"


def test_an_actor_needs_a_name() -> None:
    with pytest.raises(ReviewRefused):
        Actor("  ", "registrar")


def test_a_decided_review_takes_no_more_steps() -> None:
    opened = approve(approve(pending(), ALICE, on=SUNSET), BOB, on=SUNSET)
    with pytest.raises(ReviewClosed):
        approve(opened, CAROL, on=SUNSET)
    with pytest.raises(ReviewClosed):
        extend(opened, CAROL, SUNSET + 3650 * DAY, on=SUNSET, reason="new risk")
    extended = extend(pending(), ALICE, SUNSET + 3650 * DAY, on=SUNSET, reason="risk")
    with pytest.raises(ReviewClosed):
        approve(extended, BOB, on=SUNSET)
    with pytest.raises(ReviewClosed):
        extend(extended, BOB, SUNSET + 7300 * DAY, on=SUNSET, reason="risk")


def test_steps_cannot_be_back_dated() -> None:
    with pytest.raises(BadReviewDate):
        approve(pending(), ALICE, on=SUNSET - DAY)
    review = approve(pending(), ALICE, on=SUNSET + 5 * DAY)
    with pytest.raises(BadReviewDate):
        approve(review, BOB, on=SUNSET + 4 * DAY)
    with pytest.raises(BadReviewDate):
        extend(review, BOB, SUNSET + 3650 * DAY, on=SUNSET + 4 * DAY, reason="risk")
    with pytest.raises(BadReviewDate, match="before the sunset"):
        open_review(protected(), on=SUNSET - DAY)


def test_only_protected_identity_is_reviewed() -> None:
    with pytest.raises(ReviewRefused, match="only protected-identity"):
        open_review(restricted(), on=SUNSET)


def test_a_review_holds_no_more_approvals_than_open_it() -> None:
    a, b, c = (Approval(n, SUNSET) for n in ("A", "B", "C"))
    with pytest.raises(ReviewClosed):
        Review(protected(), SUNSET, (a, b, c))
    ext = Extension("C", SUNSET, SUNSET + DAY, "risk")
    with pytest.raises(ReviewClosed):
        Review(protected(), SUNSET, (a, b), ext)


# --- Extension ---------------------------------------------------------------------------


def test_extension_sets_the_new_date(policy: AccessPolicy) -> None:
    new_date = date(2072, 5, 3)
    review = extend(pending(), ALICE, new_date, on=SUNSET + DAY, reason="witness still at risk")
    assert review_outcome(review) == "extended"
    assert review.extension == Extension(
        "Alice Mwangi", SUNSET + DAY, new_date, "witness still at risk"
    )
    kept = resolve_review(policy, review, depositor="Anyone")
    old = review.assignment
    assert (kept.path, kept.tier, kept.sunset, kept.successor, kept.legal_basis) == (
        old.path,
        "protected-identity",
        new_date,
        old.successor,
        old.legal_basis,
    )
    assert kept.sunset_basis == (
        "extended on 2052-05-04 by registrar Alice Mwangi: witness still at risk"
    )
    # the kept assignment is due again on its new date, as a new review, not before
    assert due_transitions({1: kept}, new_date - DAY) == []
    [again] = due_transitions({1: kept}, new_date)
    assert isinstance(again, OpenReview)


def test_extension_after_one_approval_keeps_it_closed() -> None:
    review = approve(pending(), ALICE, on=SUNSET)
    review = extend(review, BOB, SUNSET + 3650 * DAY, on=SUNSET, reason="risk")
    assert review_outcome(review) == "extended"


@pytest.mark.parametrize(
    ("new_sunset", "reason"),
    [(SUNSET, "risk"), (SUNSET - DAY, "risk"), (SUNSET + DAY, ""), (SUNSET + DAY, "  ")],
)
def test_bad_extensions(new_sunset: date, reason: str) -> None:
    with pytest.raises(BadExtension):
        extend(pending(), ALICE, new_sunset, on=SUNSET, reason=reason)


# --- What replaces the reviewed assignment -----------------------------------------------


def test_pending_review_resolves_to_nothing(policy: AccessPolicy) -> None:
    with pytest.raises(ReviewPending):
        resolve_review(policy, pending(), depositor="Anyone")
    with pytest.raises(ReviewPending):
        resolve_review(policy, approve(pending(), ALICE, on=SUNSET), depositor="Anyone")


def test_opened_to_restricted_gets_a_restricted_sunset_from_the_deciding_day(
    policy: AccessPolicy,
) -> None:
    decided = SUNSET + 10 * DAY
    review = approve(approve(pending(), ALICE, on=SUNSET), BOB, on=decided)
    new = resolve_review(policy, review, depositor="Anyone")
    assert (new.path, new.tier, new.sunset, new.successor) == (
        "a/w.pdf",
        "restricted",
        date(2077, 5, 13),
        "public",
    )
    assert "approved by registrars Alice Mwangi and Bob Osei" in new.legal_basis
    assert "(was: witness order 7)" in new.legal_basis
    assert new.sunset_basis.startswith("25 years from 2052-05-13 (access v1, default: ")


def test_opened_to_public_has_no_sunset(policy: AccessPolicy) -> None:
    review = Review(protected(successor="public"), SUNSET)
    review = approve(approve(review, ALICE, on=SUNSET), BOB, on=SUNSET)
    new = resolve_review(policy, review, depositor="Anyone")
    assert (new.tier, new.sunset, new.successor) == ("public", None, None)


def test_opened_to_restricted_follows_the_depositor_agreement(tmp_path: Path) -> None:
    agreement = load_access_policy(write(tmp_path, BASE))
    review = approve(approve(pending(), ALICE, on=SUNSET), BOB, on=SUNSET)
    new = resolve_review(agreement, review, depositor="Example Mechanism")
    assert new.sunset == date(2082, 5, 3)  # 30 years under the agreement, not 25
    assert "agreement with Example Mechanism" in new.sunset_basis


def test_whole_life_of_a_protected_identity(tmp_path: Path) -> None:
    """Deposit, sunset, review opened by two registrars, restricted, then public by itself."""
    text = changed("period_years = 75", "period_years = 2")
    policy = load_access_policy(write(tmp_path, text))
    deposited = date(2030, 1, 15)
    a = default_assignment(
        policy,
        depositor="Someone",
        tier="protected-identity",
        deposited_on=deposited,
        legal_basis="witness order 7",
        path="w",
    )
    assert a.sunset == date(2032, 1, 15)
    assert due_transitions({1: a}, date(2032, 1, 14)) == []
    [t] = due_transitions({1: a}, date(2032, 1, 15))
    assert isinstance(t, OpenReview)
    review = approve(t.review, ALICE, on=date(2032, 2, 1))
    review = approve(review, CAROL, on=date(2032, 3, 1))
    r = resolve_review(policy, review, depositor="Someone")
    assert (r.tier, r.sunset) == ("restricted", date(2057, 3, 1))
    [m] = due_transitions({1: r}, date(2057, 3, 1))
    assert isinstance(m, Move)
    assert m.replacement.tier == "public"
    assert due_transitions({1: m.replacement}, date(2999, 1, 1)) == []


def test_review_steps_are_dates_not_times() -> None:
    with pytest.raises(BadReviewDate, match="dates, not times"):
        approve(pending(), ALICE, on=datetime(2052, 5, 3, 12, 0))
    with pytest.raises(BadReviewDate, match="dates, not times"):
        extend(pending(), ALICE, datetime(2060, 1, 1), on=SUNSET, reason="risk")
