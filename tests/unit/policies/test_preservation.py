"""Replication and fixity policies: strict loading and the pure functions over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies.load import PolicyFileError, load_fixity_policy, load_replication_policy
from policies.preservation import package_tier, plan_replicas

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


def test_which_digests_a_check_recomputes() -> None:
    policy = load_fixity_policy()
    at = datetime(2027, 1, 1, tzinfo=UTC)
    assert policy.algorithms(None, at) == ("sha512", "sha256")
    assert policy.algorithms(at - timedelta(days=10), at) == ("sha256",)
    assert policy.algorithms(at - timedelta(days=400), at) == ("sha512", "sha256")
