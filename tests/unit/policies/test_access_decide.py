"""The access decision over the full matrix of role × action × tier × sunset state × consent ×
purpose × second factor × own deposit, against an expectation written here from the issue's
rules (not read from access.toml, not a copy of the evaluator), plus the no-leak invariants."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import cast, get_args

import pytest

from policies.access import Assignment, Consent, effective, effective_consent
from policies.decide import REASONS, Decision, ReasonCode, decide
from policies.load import load_access_policy
from policies.schema import AccessPolicy
from policies.sunset import Move, due_transitions
from policies.vocabulary import Scope
from tests.unit.policies.samples import ARCHIVIST_ROW, BASE, changed, write

ON = date(2060, 6, 1)
DAY = timedelta(days=1)
POLICY = load_access_policy()

# --- The expectation, from the issue --------------------------------------------------------

KNOWN_ROLES = {"anonymous", "researcher", "depositor", "archivist", "registrar"}
KNOWN_ACTIONS = {"read-metadata", "read-content"}
# Purposes and the consent scopes each rests on.
PURPOSE_SCOPES = {
    "public": {"public"},
    "research": {"research", "public"},
    "prosecution": {"prosecution"},
    "third-party-justice": {"third-party-justice"},
}
JUSTICE = {"prosecution", "third-party-justice"}
# Public material, content or metadata: who reads it, for which purposes.
PUBLIC_READERS = {
    "anonymous": {"public"},
    "researcher": {"public", "research"},
    "depositor": {"public", "research"},
    "archivist": {"public", "research"},
    "registrar": set(PURPOSE_SCOPES),
}
# Non-public content: registrars only, for these purposes.
REGISTRAR_CONTENT = {"restricted": {"research"} | JUSTICE, "protected-identity": JUSTICE}


# Refusals decided before the table is consulted: no row, so no second factor is asked.
BEFORE_ANY_ROW = {
    "UNKNOWN-ROLE",
    "UNKNOWN-ACTION",
    "UNKNOWN-PURPOSE",
    "UNDECLARED",
    "ROLE-NOT-PERMITTED",
}


@dataclass(frozen=True)
class Expected:
    allowed: bool
    code: str
    must_log: bool
    second_factor: bool


def expected(
    role: str,
    action: str,
    tier: str | None,
    scopes: frozenset[str] | None,
    purpose: str | None,
    second_factor: bool,
    own: bool,
) -> Expected:
    """What the issue asks for this read: allowed or the first reason it is not, whether it
    is logged (any read of non-public or undeclared material), whether a second factor is
    asked (every step a registrar takes: registrars may read protected identities)."""
    sensitive = tier != "public"  # undeclared (None) counts as sensitive
    registrar = role == "registrar"

    def no(code: str) -> Expected:
        return Expected(False, code, sensitive, registrar and code not in BEFORE_ANY_ROW)

    if role not in KNOWN_ROLES:
        return no("UNKNOWN-ROLE")
    if action not in KNOWN_ACTIONS:
        return no("UNKNOWN-ACTION")
    if purpose is not None and purpose not in PURPOSE_SCOPES:
        return no("UNKNOWN-PURPOSE")
    if tier is None:
        return no("UNDECLARED")

    withdrawn = scopes is not None and "withdrawn" in scopes
    # Which purposes the reader needs (None: no purpose asked), or a refusal.
    needs_purpose: set[str] | None
    if tier == "public" and not (action == "read-metadata" and role in ("archivist", "registrar")):
        needs_purpose = PUBLIC_READERS[role]
    elif action == "read-metadata" and role in ("archivist", "registrar"):
        needs_purpose = None  # staff see every tier's metadata, even after withdrawal
        withdrawn = False
    elif action == "read-metadata" and role == "depositor":
        if not own:
            return no("NOT-OWN-DEPOSIT")
        needs_purpose = None
    elif action == "read-content" and registrar:
        needs_purpose = REGISTRAR_CONTENT[tier]
    else:
        return no("ROLE-NOT-PERMITTED")

    if withdrawn:
        return no("CONSENT-WITHDRAWN")
    if needs_purpose is not None:
        if purpose is None:
            return no("PURPOSE-REQUIRED")
        if purpose not in needs_purpose:
            return no("PURPOSE-NOT-PERMITTED")
        if scopes is None:
            return no("CONSENT-MISSING")
        if not scopes & PURPOSE_SCOPES[purpose]:
            return no("CONSENT-NOT-GIVEN")
    if registrar and not second_factor:
        return no("SECOND-FACTOR-REQUIRED")
    return Expected(True, "ALLOWED", sensitive, registrar)


# --- The matrix -----------------------------------------------------------------------------

ROLES = [
    "anonymous",
    "researcher",
    "depositor",
    "archivist",
    "registrar",
    "auditor",
    "",
    "Registrar",
]
ACTIONS = ["read-metadata", "read-content", "delete", "read"]
MATERIAL: dict[str, Assignment | None] = {
    "undeclared": None,
    "public": Assignment("a", "public", None, None, "cleared"),
    **{
        f"{tier}-{state}": Assignment("a", tier, ON + offset * DAY, "public", "order 5", "default")
        for tier in ("restricted", "protected-identity")
        for state, offset in (("before-sunset", 1), ("at-sunset", 0), ("after-sunset", -1))
    },
}
CONSENTS: list[frozenset[Scope] | None] = [
    None,
    frozenset(),
    frozenset({"prosecution"}),
    frozenset({"third-party-justice"}),
    frozenset({"research"}),
    frozenset({"public"}),
    frozenset({"withdrawn"}),
    frozenset({"public", "withdrawn"}),
    frozenset({"prosecution", "third-party-justice", "research", "public"}),
]
PURPOSES = [None, "public", "research", "prosecution", "third-party-justice", "journalism", ""]


@dataclass(frozen=True)
class Case:
    role: str
    action: str
    material: str
    scopes: frozenset[Scope] | None
    purpose: str | None
    second_factor: bool
    own: bool

    @property
    def tier(self) -> str | None:
        a = MATERIAL[self.material]
        return None if a is None else a.tier

    def decide(self, policy: AccessPolicy = POLICY) -> Decision:
        consent = None if self.scopes is None else Consent("a", self.scopes)
        return decide(
            policy,
            action=self.action,
            assignment=MATERIAL[self.material],
            role=self.role,
            consent=consent,
            purpose=self.purpose,
            on=ON,
            second_factor=self.second_factor,
            own_deposit=self.own,
        )


def cases(role: str, action: str) -> Iterator[Case]:
    for material, scopes, purpose, second, own in product(
        MATERIAL, CONSENTS, PURPOSES, (False, True), (False, True)
    ):
        yield Case(role, action, material, scopes, purpose, second, own)


def all_cases() -> Iterator[tuple[Case, Decision]]:
    for role, action in product(ROLES, ACTIONS):
        for case in cases(role, action):
            yield case, case.decide()


@pytest.mark.parametrize(("role", "action"), list(product(ROLES, ACTIONS)))
def test_matrix_matches_the_expectation(role: str, action: str) -> None:
    wrong = []
    count = 0
    for case in cases(role, action):
        count += 1
        d = case.decide()
        want = expected(
            case.role,
            case.action,
            case.tier,
            case.scopes,
            case.purpose,
            case.second_factor,
            case.own,
        )
        got = Expected(d.allowed, d.reason_code, d.must_log, d.needs_second_factor)
        if got != want:
            wrong.append((case, got, want))
    assert count == len(MATERIAL) * len(CONSENTS) * len(PURPOSES) * 4
    assert not wrong, f"{len(wrong)} of {count} differ, e.g.:\n" + "\n".join(
        f"{c}\n   got  {g}\n   want {w}" for c, g, w in wrong[:5]
    )


def test_the_matrix_is_not_trivial() -> None:
    codes = {d.reason_code for _, d in all_cases()}
    assert codes == set(REASONS) - {"POLICY-NOT-IN-FORCE"}  # every other outcome is reached
    allowed = [(c, d) for c, d in all_cases() if d.allowed]
    assert {c.tier for c, _ in allowed} == {"public", "restricted", "protected-identity"}


# --- Zero leaks, over the same matrix -------------------------------------------------------


def test_no_researcher_or_anonymous_reader_ever_sees_non_public_material() -> None:
    for case, d in all_cases():
        if case.role in ("researcher", "anonymous") and case.tier != "public":
            assert not d.allowed, case


def test_withdrawn_consent_never_allows_a_content_read() -> None:
    for case, d in all_cases():
        if case.scopes is not None and "withdrawn" in case.scopes and d.allowed:
            assert case.action == "read-metadata", case
            assert case.role in ("archivist", "registrar", "depositor"), case


def test_protected_identity_never_without_a_second_factor() -> None:
    for case, d in all_cases():
        if case.tier == "protected-identity" and case.action == "read-content" and d.allowed:
            assert d.needs_second_factor and case.second_factor, case


def test_every_allowed_non_public_read_is_logged() -> None:
    for case, d in all_cases():
        if d.allowed and case.tier != "public":
            assert d.must_log, case
        if not d.allowed and case.tier != "public":
            assert d.must_log, case  # attempts on closed material are recorded too


def test_unknown_or_undeclared_is_denied() -> None:
    for case, d in all_cases():
        unknown = (
            case.role not in KNOWN_ROLES
            or case.action not in KNOWN_ACTIONS
            or (case.purpose is not None and case.purpose not in PURPOSE_SCOPES)
            or case.tier is None
        )
        if unknown:
            assert not d.allowed, case


def test_content_read_needs_a_purpose_and_the_consent_it_rests_on() -> None:
    for case, d in all_cases():
        if d.allowed and case.action == "read-content":
            assert case.purpose is not None and case.scopes is not None, case
            assert case.scopes & PURPOSE_SCOPES[case.purpose], case


def test_a_passed_sunset_opens_nothing_until_its_transition_is_recorded() -> None:
    decisions: dict[tuple[object, ...], dict[str, Decision]] = {}
    for case, d in all_cases():
        if case.tier in ("restricted", "protected-identity"):
            key = (
                case.role,
                case.action,
                case.tier,
                case.scopes,
                case.purpose,
                case.second_factor,
                case.own,
            )
            decisions.setdefault(key, {})[case.material] = d
    assert decisions
    for by_state in decisions.values():
        assert len(by_state) == 3 and len(set(by_state.values())) == 1, by_state


# --- Named scenarios ------------------------------------------------------------------------


def consent(*scopes: Scope, path: str = "a") -> Consent:
    return Consent(path, frozenset(scopes))


PROTECTED = Assignment("w.pdf", "protected-identity", ON, "restricted", "witness order", "d")
RESTRICTED = Assignment("r.pdf", "restricted", ON - DAY, "public", "privacy law", "default")
PUBLIC = Assignment("p", "public", None, None, "cleared")


def read(
    assignment: Assignment | None,
    *,
    role: str,
    action: str = "read-content",
    consent: Consent | None = None,
    purpose: str | None = None,
    second_factor: bool = False,
    own_deposit: bool = False,
    policy: AccessPolicy = POLICY,
    on: date = ON,
) -> Decision:
    return decide(
        policy,
        action=action,
        assignment=assignment,
        role=role,
        consent=consent,
        purpose=purpose,
        on=on,
        second_factor=second_factor,
        own_deposit=own_deposit,
    )


def test_registrar_reads_protected_identity_for_prosecution() -> None:
    given = consent("prosecution")
    d = read(PROTECTED, role="registrar", consent=given, purpose="prosecution", second_factor=True)
    assert d == Decision(True, "ALLOWED", True, True, "access v1")
    d = read(PROTECTED, role="registrar", consent=given, purpose="prosecution")
    assert (d.allowed, d.reason_code, d.needs_second_factor) == (
        False,
        "SECOND-FACTOR-REQUIRED",
        True,
    )
    d = read(PROTECTED, role="registrar", consent=given, purpose="research", second_factor=True)
    assert d.reason_code == "PURPOSE-NOT-PERMITTED"
    d = read(
        PROTECTED,
        role="registrar",
        consent=consent("research", "public"),
        purpose="prosecution",
        second_factor=True,
    )
    assert d.reason_code == "CONSENT-NOT-GIVEN"


def test_restricted_past_its_sunset_opens_only_once_the_move_is_applied() -> None:
    given = consent("research")
    before = read(RESTRICTED, role="researcher", consent=given, purpose="research")
    assert (before.allowed, before.reason_code) == (False, "ROLE-NOT-PERMITTED")
    [move] = due_transitions({1: RESTRICTED}, ON)
    assert isinstance(move, Move)
    after = read(move.replacement, role="researcher", consent=given, purpose="research")
    assert (after.allowed, after.must_log) == (True, False)


def test_resolved_from_paths() -> None:
    assignments = [
        Assignment("", "public", None, None, "cleared"),
        Assignment("testimony", "protected-identity", ON, "restricted", "witness order", "d"),
    ]
    consents = [consent("public", "research", path=""), consent("withdrawn", path="testimony/w1")]

    def researcher(path: str) -> Decision:
        return read(
            effective(path, assignments),
            role="researcher",
            consent=effective_consent(path, consents),
            purpose="research",
        )

    assert researcher("photos/p1.jpg").allowed
    assert researcher("testimonyX.txt").allowed  # not inside folder "testimony"
    assert researcher("testimony/w2/t.txt").reason_code == "ROLE-NOT-PERMITTED"
    assert researcher("testimony/w1/t.txt").reason_code == "ROLE-NOT-PERMITTED"
    registrar = read(
        effective("testimony/w1/t.txt", assignments),
        role="registrar",
        consent=effective_consent("testimony/w1/t.txt", consents),
        purpose="prosecution",
        second_factor=True,
    )
    assert registrar.reason_code == "CONSENT-WITHDRAWN"


def test_depositor_sees_only_its_own_closed_deposits_metadata() -> None:
    own = read(PROTECTED, role="depositor", action="read-metadata", own_deposit=True)
    assert (own.allowed, own.must_log, own.needs_second_factor) == (True, True, False)
    other = read(PROTECTED, role="depositor", action="read-metadata")
    assert other.reason_code == "NOT-OWN-DEPOSIT"
    content = read(
        PROTECTED,
        role="depositor",
        consent=consent("prosecution"),
        purpose="prosecution",
        own_deposit=True,
    )
    assert content.reason_code == "ROLE-NOT-PERMITTED"


def test_archivist_keeps_metadata_after_withdrawal_but_never_content() -> None:
    withdrawn = consent("withdrawn")
    meta = read(PROTECTED, role="archivist", action="read-metadata", consent=withdrawn)
    assert (meta.allowed, meta.must_log) == (True, True)
    content = read(PUBLIC, role="archivist", consent=withdrawn, purpose="research")
    assert content.reason_code == "CONSENT-WITHDRAWN"


def test_no_decision_before_the_policy_is_in_force() -> None:
    d = read(
        PUBLIC,
        role="anonymous",
        consent=consent("public"),
        purpose="public",
        on=POLICY.effective_from - DAY,
    )
    assert (d.allowed, d.reason_code, d.must_log) == (False, "POLICY-NOT-IN-FORCE", False)
    assert d.explanation == "the access policy is not in force on that date"
    on_the_day = read(
        PUBLIC,
        role="anonymous",
        consent=consent("public"),
        purpose="public",
        on=POLICY.effective_from,
    )
    assert on_the_day.allowed


def test_the_day_must_be_a_date() -> None:
    with pytest.raises(TypeError, match="must be a date"):
        read(PUBLIC, role="anonymous", on=datetime(2060, 1, 1))


def test_decision_is_consistent_by_construction() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        Decision(True, "CONSENT-MISSING", True, False, "access v1")
    with pytest.raises(ValueError, match="contradicts"):
        Decision(False, "ALLOWED", True, False, "access v1")
    with pytest.raises(ValueError, match="unknown reason code"):
        Decision(False, cast(ReasonCode, "NOPE"), True, False, "access v1")


def test_every_reason_code_is_explained() -> None:
    assert set(get_args(ReasonCode)) == set(REASONS)
    assert all(REASONS.values())


def test_the_decision_table_is_data(tmp_path: Path) -> None:
    """A row added to the table grants exactly what it says, and nothing else."""
    row = ARCHIVIST_ROW.replace('"read-metadata"', '"read-content"').replace(
        "despite_withdrawal = true", 'purposes = ["research"]'
    )
    text = changed(ARCHIVIST_ROW, ARCHIVIST_ROW + "\n" + row, BASE)
    policy = load_access_policy(write(tmp_path, text))
    given = consent("research")
    granted = read(RESTRICTED, role="archivist", consent=given, purpose="research", policy=policy)
    assert (granted.allowed, granted.must_log, granted.policy) == (True, True, "access v3")
    assert not read(RESTRICTED, role="archivist", consent=given, purpose="research").allowed
    assert not read(
        PROTECTED, role="archivist", consent=given, purpose="research", policy=policy
    ).allowed
