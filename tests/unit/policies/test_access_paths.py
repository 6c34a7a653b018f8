"""Assignments and consent records: valid by construction, the most specific path governs,
withdrawal wins, and the defaults a tier gets at deposit."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from policies.access import (
    Assignment,
    Consent,
    add_years,
    covers,
    default_assignment,
    effective,
    effective_consent,
)
from policies.errors import AmbiguousRecords, InvalidAssignment, InvalidConsent, InvalidPath
from policies.load import load_access_policy
from policies.schema import AccessPolicy
from policies.vocabulary import Scope
from tests.unit.policies.samples import BASE, write

SUNSET = date(2050, 1, 1)


def restricted(path: str = "", basis: str = "court order 12") -> Assignment:
    return Assignment(path, "restricted", SUNSET, "public", basis, "policy default")


def public(path: str = "") -> Assignment:
    return Assignment(path, "public", None, None, "cleared for release")


def protected(path: str = "") -> Assignment:
    return Assignment(path, "protected-identity", SUNSET, "restricted", "witness", "default")


def consent(path: str, *scopes: Any) -> Consent:
    return Consent(path, frozenset(scopes))


# --- Assignment --------------------------------------------------------------------------


def test_valid_assignments() -> None:
    assert restricted("a/b").tier == "restricted"
    assert public().sunset is None
    assert protected().successor == "restricted"
    assert Assignment("x", "protected-identity", SUNSET, "public", "w", "d").successor == "public"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"tier": "secret"}, "unknown tier 'secret'"),
        ({"legal_basis": ""}, "has no legal basis"),
        ({"legal_basis": "  \t"}, "has no legal basis"),
        ({"legal_basis": None}, "has no legal basis"),
        ({"successor": None}, "needs a successor"),
        ({"successor": "archive"}, "needs a successor"),
        ({"successor": "restricted"}, "is not more open"),
        ({"successor": "protected-identity"}, "is not more open"),
        ({"sunset": None}, "sunset must be a date"),
        ({"sunset": datetime(2050, 1, 1)}, "sunset must be a date"),
        ({"sunset_basis": ""}, "has no stated basis"),
    ],
)
def test_invalid_restricted_assignments(kwargs: dict[str, Any], words: str) -> None:
    values: dict[str, Any] = {
        "path": "a",
        "tier": "restricted",
        "sunset": SUNSET,
        "successor": "public",
        "legal_basis": "order",
        "sunset_basis": "default",
        **kwargs,
    }
    with pytest.raises(InvalidAssignment, match=words):
        Assignment(**values)


@pytest.mark.parametrize(
    "kwargs",
    [{"sunset": SUNSET}, {"successor": "restricted"}, {"sunset_basis": "default"}],
)
def test_public_has_no_sunset(kwargs: dict[str, Any]) -> None:
    values: dict[str, Any] = {"sunset": None, "successor": None, "sunset_basis": "", **kwargs}
    with pytest.raises(InvalidAssignment, match="public assignment has no sunset"):
        Assignment("a", "public", legal_basis="cleared", **values)


def test_protected_identity_successor_must_be_more_open() -> None:
    with pytest.raises(InvalidAssignment, match="not more open"):
        Assignment("a", "protected-identity", SUNSET, "protected-identity", "w", "d")


@pytest.mark.parametrize(
    "path", ["/a", "a/", "a//b", "./a", "a/./b", "a/../b", "..", "a\\b", "a\0"]
)
def test_invalid_paths(path: str) -> None:
    with pytest.raises(InvalidPath):
        restricted(path)
    with pytest.raises(InvalidPath):
        consent(path, "research")
    with pytest.raises(InvalidPath):
        effective(path, [restricted()])


def test_errors_explain_themselves() -> None:
    with pytest.raises(InvalidAssignment) as err:
        Assignment("a", "restricted", SUNSET, "restricted", "b", "d")
    text = err.value.diagnostics()
    assert text.startswith("ACCESS-ASSIGNMENT-INVALID: successor 'restricted'")
    assert "what to do: restricted opens to public" in text


# --- Consent -----------------------------------------------------------------------------


def test_consent_scopes() -> None:
    c = consent("a", "research", "public")
    assert not c.withdrawn
    assert c.grants(["research"]) and c.grants(["prosecution", "public"])
    assert not c.grants(["prosecution"])
    assert not consent("a").grants(["research", "public"])


def test_withdrawn_consent_grants_nothing() -> None:
    c = consent("a", "research", "public", "prosecution", "third-party-justice", "withdrawn")
    assert c.withdrawn
    for scope in ("research", "public", "prosecution", "third-party-justice"):
        assert not c.grants([scope])


def test_unknown_consent_scope() -> None:
    with pytest.raises(InvalidConsent, match="'everything'"):
        consent("a", "research", "everything")
    with pytest.raises(InvalidConsent, match="frozenset"):
        Consent("a", cast(frozenset[Scope], {"research"}))
    with pytest.raises(InvalidConsent, match="frozenset"):
        Consent("a", cast(frozenset[Scope], "research"))


# --- The most specific path wins ---------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "path", "expected"),
    [
        ("", "a.txt", True),
        ("", "", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c.txt", True),
        ("a/b", "a/b/c/d/e", True),
        ("a/b", "a/bc.txt", False),
        ("a/b", "a/bc/d", False),
        ("a/b", "a", False),
        ("a/b", "", False),
        ("a/b", "x/a/b", False),
        ("a/b.txt", "a/b.txt.bak", False),
    ],
)
def test_covers(record: str, path: str, expected: bool) -> None:
    assert covers(record, path) is expected


def test_file_overrides_folder_overrides_package() -> None:
    package, folder, file = restricted(), protected("a/b"), public("a/b/c.txt")
    records = [file, package, folder]  # order does not matter
    assert effective("a/b/c.txt", records) is file
    assert effective("a/b/d.txt", records) is folder
    assert effective("a/b/c.txt/x", records) is file  # a folder named like a file
    assert effective("a/b", records) is folder
    assert effective("a/bc.txt", records) is package  # not under folder a/b
    assert effective("z", records) is package
    assert effective("", records) is package


def test_nothing_covers_is_undeclared() -> None:
    records = [restricted("a/b"), restricted("a/bc")]
    assert effective("a/bcd", records) is None
    assert effective("a", records) is None
    assert effective("x", []) is None


def test_two_records_on_the_same_path_are_ambiguous() -> None:
    with pytest.raises(AmbiguousRecords, match="two records name a/b"):
        effective("a/b/c", [restricted("a/b"), protected("a/b")])
    # a more specific record decides, so the tie above it does not matter
    assert effective("a/b/c", [restricted("a"), protected("a"), public("a/b/c")]) is not None


def test_consent_most_specific_wins() -> None:
    package, file = consent("", "research"), consent("a/b.txt", "prosecution")
    assert effective_consent("a/b.txt", [package, file]) is file
    assert effective_consent("a/b.txtx", [package, file]) is package
    assert effective_consent("a/c.txt", [file]) is None


def test_withdrawal_above_overrides_more_specific_consent() -> None:
    folder_withdrawn = consent("a", "withdrawn")
    file_granted = consent("a/b.txt", "prosecution", "public")
    result = effective_consent("a/b.txt", [file_granted, folder_withdrawn])
    assert result is folder_withdrawn
    # a withdrawal on a sibling path does not spread
    assert effective_consent("ab.txt", [consent("", "public"), folder_withdrawn]) == consent(
        "", "public"
    )


def test_most_specific_withdrawal_is_returned() -> None:
    package, file = consent("", "withdrawn"), consent("a/b.txt", "withdrawn", "research")
    assert effective_consent("a/b.txt", [package, file]) is file


# --- Defaults at deposit -----------------------------------------------------------------


@pytest.fixture
def shipped() -> AccessPolicy:
    return load_access_policy()


def test_default_restricted(shipped: AccessPolicy) -> None:
    a = default_assignment(
        shipped,
        depositor="Anyone",
        tier="restricted",
        deposited_on=date(2027, 5, 3),
        legal_basis="privacy law art. 9",
        path="bag/data/x",
    )
    assert (a.path, a.tier, a.sunset, a.successor) == (
        "bag/data/x",
        "restricted",
        date(2052, 5, 3),
        "public",
    )
    assert a.legal_basis == "privacy law art. 9"
    assert a.sunset_basis.startswith("25 years from 2027-05-03 (access v1, default: ")


def test_default_protected_identity(shipped: AccessPolicy) -> None:
    a = default_assignment(
        shipped,
        depositor="Anyone",
        tier="protected-identity",
        deposited_on=date(2027, 5, 3),
        legal_basis="witness protection",
    )
    assert (a.path, a.sunset, a.successor) == ("", date(2102, 5, 3), "restricted")


def test_default_public(shipped: AccessPolicy) -> None:
    a = default_assignment(
        shipped, depositor="A", tier="public", deposited_on=date(2027, 1, 1), legal_basis="open"
    )
    assert (a.tier, a.sunset, a.successor, a.sunset_basis) == ("public", None, None, "")


def test_depositor_agreement_overrides_defaults(tmp_path: Path) -> None:
    text = BASE.replace(
        "restricted = { period_years = 30 }",
        'restricted = { period_years = 30 }\nprotected-identity = { successor = "public" }',
    )
    policy = load_access_policy(write(tmp_path, text))
    day = date(2027, 1, 1)
    r = default_assignment(
        policy,
        depositor=" Example Mechanism ",
        tier="restricted",
        deposited_on=day,
        legal_basis="x",
    )
    assert (r.sunset, r.successor) == (date(2057, 1, 1), "public")
    assert "agreement with Example Mechanism: Agreement art. 7" in r.sunset_basis
    p = default_assignment(
        policy,
        depositor="Example Mechanism",
        tier="protected-identity",
        deposited_on=day,
        legal_basis="x",
    )
    assert (p.sunset, p.successor) == (date(2102, 1, 1), "public")  # period stays the default
    other = default_assignment(
        policy, depositor="example mechanism", tier="restricted", deposited_on=day, legal_basis="x"
    )
    assert (other.sunset, other.successor) == (date(2052, 1, 1), "public")  # names match exactly
    assert "default: Rules art. 4" in other.sunset_basis


def test_agreement_for_one_tier_leaves_the_other_default(tmp_path: Path) -> None:
    policy = load_access_policy(write(tmp_path, BASE))
    p = default_assignment(
        policy,
        depositor="Example Mechanism",
        tier="protected-identity",
        deposited_on=date(2027, 1, 1),
        legal_basis="x",
    )
    assert (p.sunset, p.successor) == (date(2102, 1, 1), "restricted")
    assert "default: Rules art. 5" in p.sunset_basis


def test_default_refuses_unknown_tier_and_blank_basis(shipped: AccessPolicy) -> None:
    with pytest.raises(InvalidAssignment, match="unknown tier 'closed'"):
        default_assignment(
            shipped, depositor="A", tier="closed", deposited_on=date(2027, 1, 1), legal_basis="x"
        )
    with pytest.raises(InvalidAssignment, match="no legal basis"):
        default_assignment(
            shipped,
            depositor="A",
            tier="restricted",
            deposited_on=date(2027, 1, 1),
            legal_basis=" ",
        )


def test_add_years() -> None:
    assert add_years(date(2027, 5, 3), 25) == date(2052, 5, 3)
    assert add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)
    assert add_years(date(2024, 2, 29), 1) == date(2025, 3, 1)  # never earlier than a full year


def test_assignments_round_trip_through_their_stored_form() -> None:
    from policies.access import assignment_from_json, assignment_to_json
    from policies.errors import InvalidAssignment

    a = Assignment("data/a.txt", "restricted", date(2051, 1, 1), "public", "Order 1", "25 years")
    row = assignment_to_json(a)
    assert row["sunset"] == "2051-01-01" and assignment_from_json(row) == a
    for bad in ({**row, "tier": "secret"}, {**row, "successor": "open"}, {**row, "sunset": "x"}):
        with pytest.raises(InvalidAssignment):
            assignment_from_json(bad)
