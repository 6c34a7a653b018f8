"""The fixed words of access: tiers, roles, actions and consent scopes.

These are the names the code knows. ``policies/access.toml`` may only use them: a policy
file naming a tier, role, action or scope that is not listed here is rejected when it is
loaded, and the access decision denies any name it does not know (fail closed).
Purposes are not fixed here: each policy declares its own and maps it to consent scopes.
"""

from __future__ import annotations

from typing import Literal, TypeGuard

Tier = Literal["public", "restricted", "protected-identity"]
#: Tiers from the most open to the most closed.
TIERS: tuple[Tier, ...] = ("public", "restricted", "protected-identity")

Role = Literal["anonymous", "researcher", "depositor", "archivist", "registrar"]
ROLES: tuple[Role, ...] = ("anonymous", "researcher", "depositor", "archivist", "registrar")

#: ``read-metadata``: descriptive metadata, file lists, formats, fixity and events of a path;
#: ``read-content``: the bytes of a file.
Action = Literal["read-metadata", "read-content"]
ACTIONS: tuple[Action, ...] = ("read-metadata", "read-content")

#: What a person who gave material may have agreed to, and ``withdrawn``.
Scope = Literal["prosecution", "third-party-justice", "research", "public", "withdrawn"]
SCOPES: tuple[Scope, ...] = (
    "prosecution",
    "third-party-justice",
    "research",
    "public",
    "withdrawn",
)

#: The scopes a purpose can rest on (``withdrawn`` grants nothing).
GrantScope = Literal["prosecution", "third-party-justice", "research", "public"]

#: The one role that approves or extends a protected-identity review.
REVIEWER_ROLE: Role = "registrar"

#: Distinct registrars whose approvals open protected-identity material.
APPROVALS_TO_OPEN = 2


def openness(tier: Tier) -> int:
    """0 for ``public``, growing as the tier closes; a successor must be more open."""
    return TIERS.index(tier)


def is_tier(text: str) -> TypeGuard[Tier]:
    return text in TIERS


def is_role(text: str) -> TypeGuard[Role]:
    return text in ROLES


def is_action(text: str) -> TypeGuard[Action]:
    return text in ACTIONS


def is_scope(text: str) -> TypeGuard[Scope]:
    return text in SCOPES
