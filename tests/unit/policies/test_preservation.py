"""Replication and fixity policies: strict loading and the pure functions over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies.load import PolicyFileError, load_fixity_policy, load_replication_policy
from policies.preservation import (
    Assigned,
    file_tier,
    package_tier,
    plan_for_tiers,
    plan_replicas,
)

HEADER = 'id = "replication"\nversion = 2\neffective_from = "2026-12-01"\n'


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_shipped_policies_load() -> None:
    rep, fix = load_replication_policy(), load_fixity_policy()
    assert rep.label == "replication v1" and fix.label == "fixity v1"
    assert all(rep.for_tier(t).copies == 2 for t in ("public", "restricted", "protected-identity"))
    assert fix.period("protected-identity") == timedelta(days=30)
    assert fix.period("public") == timedelta(days=90)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[tiers.public]\ncopies = 2\nmirror = 1\n", "mirror"),
        ("[tiers.public]\ncopies = 0\n", "copies"),
        ('[tiers.public]\ncopies = 3\nlocations = ["a"]\n', "needs 2 location"),
        ('[tiers.public]\ncopies = 2\nlocations = ["a", "a"]\n', "listed twice"),
        ('[tiers.public]\ncopies = 2\nlocations = ["primary"]\n', "storage root"),
    ],
)
def test_bad_replication_policies_are_refused(tmp_path: Path, body: str, problem: str) -> None:
    rest = "[tiers.restricted]\ncopies = 2\n[tiers.protected-identity]\ncopies = 2\n"
    folder = write(tmp_path, "replication.toml", HEADER + body + rest)
    with pytest.raises(PolicyFileError, match=problem):
        load_replication_policy(folder)


def test_plans() -> None:
    policy = load_replication_policy()
    plan = plan_replicas(policy, "restricted", ["zeta", "alpha"])
    assert plan.locations == ("alpha",) and plan.shortfall == 0
    assert plan_replicas(policy, "public", []).shortfall == 1
    assert package_tier([]) == "restricted"
    assert package_tier(["public", "protected-identity", "restricted"]) == "protected-identity"


def test_each_payload_file_has_its_own_tier() -> None:
    assigned = [
        Assigned("", "public"),
        Assigned("data/testimonies", "protected-identity"),
        Assigned("data/testimonies/w2.txt", "restricted"),
    ]
    gov = package_tier(a.tier for a in assigned)
    assert gov == "protected-identity"
    assert file_tier("bag/data/report.txt", assigned, gov) == "public"
    assert file_tier("bag/data/testimonies/w1.txt", assigned, gov) == "protected-identity"
    assert file_tier("bag/data/testimonies/w2.txt", assigned, gov) == "restricted"
    assert file_tier("bag/data/testimonies-2/x", assigned, gov) == "public"  # not a prefix
    # tag files, Custos metadata and derivatives list or derive from every file
    for other in ("bag/manifest-sha512.txt", "custos/premis.xml", "custos/derivatives/x"):
        assert file_tier(other, assigned, gov) == "protected-identity"
    # undeclared or ambiguous: restricted (fail closed)
    assert file_tier("bag/data/x", [Assigned("data/y", "public")], "public") == "restricted"
    twice = [Assigned("data/x", "public"), Assigned("data/x", "public")]
    assert file_tier("bag/data/x", twice, "public") == "restricted"


def test_a_package_plan_per_tier(tmp_path: Path) -> None:
    body = (
        "[tiers.public]\ncopies = 2\n[tiers.restricted]\ncopies = 2\n"
        '[tiers.protected-identity]\ncopies = 3\nlocations = ["vault", "beta"]\n'
    )
    policy = load_replication_policy(write(tmp_path, "replication.toml", HEADER + body))
    found = plan_for_tiers(policy, "protected-identity", {"public"}, ["alpha", "beta", "vault"])
    assert found.by_tier == {"public": ("alpha",), "protected-identity": ("vault", "beta")}
    assert found.plan.locations == ("alpha", "vault", "beta")
    assert found.plan.copies == 3 and found.plan.shortfall == 0
    assert found.holds("alpha", "public") and not found.holds("alpha", "protected-identity")
    short = plan_for_tiers(policy, "protected-identity", (), ["alpha"])
    assert short.plan.shortfall == 2


def test_which_digests_a_check_recomputes() -> None:
    policy = load_fixity_policy()
    at = datetime(2027, 1, 1, tzinfo=UTC)
    assert policy.algorithms(None, at) == ("sha512", "sha256")
    assert policy.algorithms(at - timedelta(days=10), at) == ("sha256",)
    assert policy.algorithms(at - timedelta(days=400), at) == ("sha512", "sha256")
