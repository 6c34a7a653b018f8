"""policies/access.toml: the shipped file loads, and every broken variant is refused with a
PolicyFileError naming the offending key or entry."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from policies.load import PolicyFileError, load_access_policy
from tests.unit.policies.samples import (
    ARCHIVIST_ROW,
    BASE,
    RESEARCHER_ROW,
    changed,
    write,
)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyFileError) as err:
        load_access_policy(write(tmp_path, text))
    return str(err.value)


def test_shipped_policy_loads() -> None:
    policy = load_access_policy()
    assert policy.label == "access v1"
    assert policy.effective_from == date(2026, 11, 22)
    assert policy.tiers.restricted.period_years == 25
    assert policy.tiers.restricted.successor == "public"
    assert policy.tiers.protected_identity.period_years == 75
    assert policy.tiers.protected_identity.successor == "restricted"
    assert set(policy.purposes) == {"public", "research", "prosecution", "third-party-justice"}
    assert policy.purposes["prosecution"].consent == ("prosecution",)


def test_base_variant_loads(tmp_path: Path) -> None:
    policy = load_access_policy(write(tmp_path, BASE))
    assert policy.label == "access v3"
    assert len(policy.rules) == 3
    assert policy.depositors["Example Mechanism"].restricted is not None
    assert policy.rule_for("researcher", "read-content", "public") is not None
    assert policy.rule_for("researcher", "read-content", "restricted") is None


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="does not exist"):
        load_access_policy(tmp_path)


def test_not_toml_is_refused(tmp_path: Path) -> None:
    assert "not valid TOML" in refused(tmp_path, BASE + "\nthis is = = not toml\n")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("version = 3\n", 'version = 3\nowner = "me"\n', "owner"),
        (
            "period_years = 25\n",
            "period_years = 25\nperiod_months = 3\n",
            "tiers.restricted.period_months",
        ),
        (
            'consent = ["prosecution"]\n',
            'consent = ["prosecution"]\nvalid_until = 2030\n',
            "purposes.prosecution.valid_until",
        ),
        ('purposes = ["research"]\n', 'purposes = ["research"]\naudit = true\n', "rules.0.audit"),
        (
            "restricted = { period_years = 30 }",
            "restricted = { period_years = 30, years = 1 }",
            "depositors.Example Mechanism.restricted.years",
        ),
        ("[tiers.public]\n", "[tiers.public]\nsunset = 3\n", "tiers.public.sunset"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, old: str, new: str, key: str) -> None:
    message = refused(tmp_path, changed(old, new))
    assert f"{key}: Extra inputs are not permitted" in message


def test_unknown_tier_table_is_named(tmp_path: Path) -> None:
    text = BASE + '\n[tiers.secret]\nperiod_years = 5\nsuccessor = "public"\nlegal_basis = "x"\n'
    assert "tiers.secret: Extra inputs are not permitted" in refused(tmp_path, text)


def test_bad_tier_name_in_a_rule_is_named(tmp_path: Path) -> None:
    text = changed('tier = "restricted"\ndespite', 'tier = "confidential"\ndespite')
    message = refused(tmp_path, text)
    assert "rules.2.tier" in message and "protected-identity" in message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('role = "archivist"', 'role = "auditor"', "rules.2.role"),
        ('action = "read-metadata"', 'action = "delete"', "rules.2.action"),
        ('consent = ["prosecution"]', 'consent = ["withdrawn"]', "purposes.prosecution.consent.0"),
        ('consent = ["prosecution"]', "consent = []", "purposes.prosecution.consent"),
    ],
)
def test_unknown_names_are_named(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert f"{key}:" in refused(tmp_path, changed(old, new))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('legal_basis = "Rules art. 4"\n', "", "tiers.restricted.legal_basis: Field required"),
        (
            'legal_basis = "Rules art. 5"\n',
            "",
            "tiers.protected-identity.legal_basis: Field required",
        ),
        (
            'legal_basis = "Rules art. 5"',
            'legal_basis = "   "',
            "tiers.protected-identity.legal_basis: String should have at least 1 character",
        ),
        (
            'legal_basis = "Agreement art. 7"\n',
            "",
            "depositors.Example Mechanism.legal_basis: Field required",
        ),
    ],
)
def test_missing_legal_basis_is_named(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert key in refused(tmp_path, changed(old, new))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('successor = "public"', 'successor = "open"', "tiers.restricted.successor"),
        ('successor = "restricted"', 'successor = "x"', "tiers.protected-identity.successor"),
        # A successor must be more open than its tier: these exist but cannot follow.
        ('successor = "public"', 'successor = "restricted"', "tiers.restricted.successor"),
        (
            'successor = "restricted"',
            'successor = "protected-identity"',
            "tiers.protected-identity.successor",
        ),
        (
            "restricted = { period_years = 30 }",
            'restricted = { successor = "closed" }',
            "depositors.Example Mechanism.restricted.successor",
        ),
    ],
)
def test_successor_that_does_not_exist_is_named(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    assert f"{key}: Input should be" in refused(tmp_path, changed(old, new))


def test_missing_tier_is_named(tmp_path: Path) -> None:
    text = changed("[tiers.public]\n", "")
    assert "tiers.public: Field required" in refused(tmp_path, text)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("period_years = 25", 'period_years = "25"', "tiers.restricted.period_years"),
        ("period_years = 25", "period_years = 0", "tiers.restricted.period_years"),
        ("log = false", 'log = "no"', "rules.0.log"),
        ('effective_from = "2027-01-01"', 'effective_from = "soon"', "effective_from"),
    ],
)
def test_wrong_types_are_named(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert f"{key}:" in refused(tmp_path, changed(old, new))


def test_agreement_that_changes_nothing_is_named(tmp_path: Path) -> None:
    text = changed("restricted = { period_years = 30 }\n", "")
    message = refused(tmp_path, text)
    assert "depositors.Example Mechanism" in message and "must override" in message


def test_purpose_and_depositor_names_are_checked(tmp_path: Path) -> None:
    assert "purpose name 'Prosecution!'" in refused(
        tmp_path, changed("[purposes.prosecution]", '[purposes."Prosecution!"]')
    )
    assert "depositor name ' Example Mechanism'" in refused(
        tmp_path, changed('[depositors."Example Mechanism"]', '[depositors." Example Mechanism"]')
    )


EXTRA_ARCHIVIST_ROW = ARCHIVIST_ROW.replace('"read-metadata"', '"read-content"').replace(
    "despite_withdrawal = true", 'purposes = ["prosecution"]'
)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # the same role, action and tier twice: which one applies would be unclear
        (
            ARCHIVIST_ROW,
            ARCHIVIST_ROW + "\n" + ARCHIVIST_ROW,
            "rules[3] (archivist read-metadata restricted): same role, action and tier as rules[2]",
        ),
        (
            'purposes = ["research"]',
            'purposes = ["journalism"]',
            "rules[0] (researcher read-content public): purpose 'journalism' is not declared",
        ),
        (
            'purposes = ["research"]\n',
            "",
            "rules[0] (researcher read-content public): a content read must ask for a purpose",
        ),
        (
            'purposes = ["research"]\n',
            'purposes = ["research"]\ndespite_withdrawal = true\n',
            "rules[0] (researcher read-content public): despite_withdrawal is only for metadata",
        ),
        (
            "despite_withdrawal = true\nlog = true",
            "despite_withdrawal = true\nlog = false",
            "rules[2] (archivist read-metadata restricted): every read of non-public material "
            "must be logged",
        ),
        (
            RESEARCHER_ROW,
            RESEARCHER_ROW.replace('"public"', '"restricted"').replace("false", "true", 1),
            "rules[0] (researcher read-content restricted): researcher may only be granted "
            "public material",
        ),
        (
            "log = true\nsecond_factor = true",
            "log = true\nsecond_factor = false",
            "rules[1] (registrar read-content protected-identity): registrar may read "
            "protected-identity content, so every row",
        ),
        # a role that may read protected-identity content needs the second factor in every row
        (
            ARCHIVIST_ROW,
            ARCHIVIST_ROW
            + "\n"
            + EXTRA_ARCHIVIST_ROW.replace('"restricted"', '"protected-identity"'),
            "rules[2] (archivist read-metadata restricted): archivist may read protected-identity "
            "content",
        ),
    ],
)
def test_table_that_would_weaken_access_is_refused(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert expected in refused(tmp_path, changed(old, new))


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = changed(
        "despite_withdrawal = true\nlog = true", "despite_withdrawal = true\nlog = false"
    )
    text = changed('purposes = ["research"]', 'purposes = ["journalism"]', text)
    message = refused(tmp_path, text)
    assert "purpose 'journalism' is not declared" in message
    assert "must be logged" in message
