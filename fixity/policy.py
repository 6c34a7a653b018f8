"""The replication and fixity policies in force, loaded from ``settings.policy_dir`` (or the
shipped defaults) and translated into Custos errors; each package's governing tier."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive.catalog.tables import AccessAssignment
from archive.config import Settings
from archive.errors import PolicyError
from policies.load import PolicyFileError, load_fixity_policy, load_replication_policy
from policies.preservation import FixityPolicy, ReplicationPolicy, package_tier


def replication_policy(settings: Settings) -> ReplicationPolicy:
    """Raises :class:`PolicyError` naming the file and every problem in it."""
    try:
        return load_replication_policy(settings.policy_dir)
    except PolicyFileError as exc:
        raise PolicyError(
            str(exc), hint="fix the policy file (or the policy_dir setting) and run again"
        ) from exc


def fixity_policy(settings: Settings) -> FixityPolicy:
    """Raises :class:`PolicyError` naming the file and every problem in it."""
    try:
        return load_fixity_policy(settings.policy_dir)
    except PolicyFileError as exc:
        raise PolicyError(
            str(exc), hint="fix the policy file (or the policy_dir setting) and run again"
        ) from exc


def package_tiers(session: Session, package_ids: list[str] | None = None) -> dict[str, str]:
    """The governing tier of each package that has assignments (the most closed one);
    packages without any are left out (callers treat them as restricted)."""
    stmt = select(AccessAssignment.package_id, AccessAssignment.tier)
    if package_ids is not None:
        stmt = stmt.where(AccessAssignment.package_id.in_(package_ids))
    found: dict[str, list[str]] = {}
    for pid, tier in session.execute(stmt):
        found.setdefault(pid, []).append(tier)
    return {pid: package_tier(tiers) for pid, tiers in found.items()}
