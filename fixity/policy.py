"""The replication and fixity policies in force, loaded from ``settings.policy_dir`` (or the
shipped defaults) and translated into Custos errors. Each file's tier: :mod:`fixity.tiers`."""

from __future__ import annotations

from archive.config import Settings
from archive.errors import PolicyError
from policies.load import PolicyFileError, load_fixity_policy, load_replication_policy
from policies.preservation import FixityPolicy, ReplicationPolicy


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
