"""Tier assignments and consent records, and which one governs a path.

Pure values and functions: no database, no clock, no I/O.

* :class:`Assignment`: a tier given to a package (path ``""``), or to a folder or file in
  it, with its sunset date, successor tier and legal basis. Valid by construction:
  ``public`` has no sunset and no successor; the other tiers have both, and the successor
  is more open than the tier.
* :class:`Consent`: the consent scopes recorded for a package, folder or file.
* :func:`effective` and :func:`effective_consent`: the record that governs a path. The most
  specific path wins: a file's record overrides its folder's, which overrides the package's.
  Folder ``a/b`` covers ``a/b`` and ``a/b/c.txt``, never ``a/bc.txt``. Withdrawn consent
  anywhere on the way to a path overrides more specific consent (withdrawal overrides
  everything).
* :func:`default_assignment`: the assignment a tier gets at deposit under the policy's
  defaults and the depositor's agreement.

Paths are the caller's own (for instance the catalog's logical paths); they are compared
as given, without normalisation, and must be relative, ``/``-separated, with no empty,
``.`` or ``..`` names. Errors raised: subclasses of :class:`policies.errors.AccessRuleError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

from policies.errors import AmbiguousRecords, InvalidAssignment, InvalidConsent, InvalidPath
from policies.schema import (
    AccessPolicy,
    ProtectedOverride,
    ProtectedTerms,
    RestrictedOverride,
    RestrictedTerms,
)
from policies.vocabulary import GrantScope, Scope, Tier, is_scope, is_tier, openness

#: The path of a record that concerns the whole package.
PACKAGE = ""


def check_path(path: str) -> str:
    """Return ``path`` if it is ``""`` or a plain relative path; raise :class:`InvalidPath`."""
    if path == PACKAGE:
        return path
    if "\\" in path or "\x00" in path:
        raise InvalidPath(f"path {path!r} holds a backslash or a NUL character")
    for name in path.split("/"):
        if name in ("", ".", ".."):
            raise InvalidPath(f"path {path!r} has an empty, '.' or '..' name")
    return path


def covers(record_path: str, path: str) -> bool:
    """Whether a record on ``record_path`` applies to ``path`` (itself, or anything under it)."""
    return record_path == PACKAGE or path == record_path or path.startswith(record_path + "/")


def _check_date(value: object, what: str) -> None:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidAssignment(f"{what} must be a date (not a time): {value!r}")


@dataclass(frozen=True, slots=True)
class Assignment:
    """A tier given to a path of a package.

    ``sunset`` is the first day on which the tier no longer holds: a ``restricted``
    assignment moves to ``successor`` on that day; a ``protected-identity`` assignment opens
    a review on that day (see :mod:`policies.sunset`). ``legal_basis`` says why the tier
    was given; ``sunset_basis`` says where the sunset and successor come from (the policy
    default, a depositor agreement, an extension).

    Raises :class:`InvalidPath` or :class:`InvalidAssignment`.
    """

    path: str
    tier: Tier
    sunset: date | None
    successor: Tier | None
    legal_basis: str
    sunset_basis: str = ""

    def __post_init__(self) -> None:
        check_path(self.path)
        if not is_tier(self.tier):
            raise InvalidAssignment(
                f"unknown tier {self.tier!r} for {self.path or 'the package'}",
                hint="use public, restricted or protected-identity",
            )
        if not isinstance(self.legal_basis, str) or not self.legal_basis.strip():
            raise InvalidAssignment(
                f"the {self.tier} assignment of {self.path or 'the package'} has no legal basis",
                hint="state the legal basis (law, order, agreement) for the tier",
            )
        if self.tier == "public":
            if self.sunset is not None or self.successor is not None or self.sunset_basis:
                raise InvalidAssignment(
                    "a public assignment has no sunset, successor or sunset basis",
                    hint="closing public material is a tier change, not a sunset",
                )
            return
        _check_date(self.sunset, "sunset")
        if self.successor is None or not is_tier(self.successor):
            raise InvalidAssignment(
                f"the {self.tier} assignment of {self.path or 'the package'} needs a successor "
                f"tier, not {self.successor!r}"
            )
        if openness(self.successor) >= openness(self.tier):
            raise InvalidAssignment(
                f"successor {self.successor!r} of a {self.tier} assignment is not more open",
                hint="restricted opens to public; protected-identity to restricted or public",
            )
        if not isinstance(self.sunset_basis, str) or not self.sunset_basis.strip():
            raise InvalidAssignment(
                f"the sunset of the {self.tier} assignment of {self.path or 'the package'} "
                "has no stated basis"
            )


def assignment_to_json(a: Assignment) -> dict[str, Any]:
    """An assignment as an object's ``custos/access.json`` holds it (dates ISO 8601)."""
    return {
        "path": a.path,
        "tier": a.tier,
        "sunset": a.sunset.isoformat() if a.sunset else None,
        "successor": a.successor,
        "legal_basis": a.legal_basis,
        "sunset_basis": a.sunset_basis,
    }


def assignment_from_json(row: Mapping[str, Any]) -> Assignment:
    """The assignment :func:`assignment_to_json` wrote. Raises :class:`InvalidAssignment`
    (also for an unknown tier or a malformed date) or :class:`InvalidPath`."""
    tier, successor = row.get("tier", ""), row.get("successor")
    if not is_tier(tier) or (successor is not None and not is_tier(successor)):
        raise InvalidAssignment(f"unknown tier in an assignment: {tier!r} -> {successor!r}")
    try:
        sunset = date.fromisoformat(row["sunset"]) if row.get("sunset") else None
    except (TypeError, ValueError):
        raise InvalidAssignment(f"the sunset {row['sunset']!r} is not a date") from None
    return Assignment(
        row.get("path", ""),
        tier,
        sunset,
        successor,
        row.get("legal_basis", ""),
        row.get("sunset_basis", ""),
    )


@dataclass(frozen=True, slots=True)
class Consent:
    """The consent scopes recorded for a path. ``withdrawn`` overrides every other scope.

    An empty set of scopes means that nothing was consented to. Raises
    :class:`InvalidPath` or :class:`InvalidConsent`.
    """

    path: str
    scopes: frozenset[Scope]

    def __post_init__(self) -> None:
        check_path(self.path)
        if isinstance(self.scopes, str) or not isinstance(self.scopes, frozenset):
            raise InvalidConsent(f"consent scopes must be a frozenset, not {self.scopes!r}")
        unknown = sorted(s for s in self.scopes if not is_scope(s))
        if unknown:
            raise InvalidConsent(
                f"unknown consent scope(s) {', '.join(map(repr, unknown))}",
                hint="use prosecution, third-party-justice, research, public or withdrawn",
            )

    @property
    def withdrawn(self) -> bool:
        return "withdrawn" in self.scopes

    def grants(self, accepted: Iterable[GrantScope]) -> bool:
        """Whether this consent holds one of ``accepted``; never when withdrawn."""
        return not self.withdrawn and any(scope in self.scopes for scope in accepted)


class HasPath(Protocol):
    @property
    def path(self) -> str: ...


R = TypeVar("R", bound=HasPath)


def _most_specific(path: str, records: Iterable[R]) -> R | None:
    best: R | None = None
    tie = False
    for record in records:
        if not covers(record.path, path):
            continue
        if best is None or len(record.path) > len(best.path):
            best, tie = record, False
        elif record.path == best.path:
            tie = True
    if tie and best is not None:
        raise AmbiguousRecords(
            f"two records name {best.path or 'the package'}: which governs {path!r} is unknown"
        )
    return best


def effective(path: str, records: Iterable[R]) -> R | None:
    """The record governing ``path``: the one on the longest path that covers it.

    ``records`` are the assignments (or consent records) of one package. Returns None when
    none covers ``path`` (undeclared: the access decision denies it). Raises
    :class:`AmbiguousRecords` when the most specific path holds two records, and
    :class:`InvalidPath` for a malformed ``path``.
    """
    return _most_specific(check_path(path), records)


def effective_tier(path: str, assignments: Iterable[Assignment]) -> str | None:
    """The tier governing ``path`` (:func:`effective`); None when undeclared."""
    found = effective(path, assignments)
    return found.tier if found is not None else None


def effective_consent(path: str, consents: Iterable[Consent]) -> Consent | None:
    """The consent governing ``path``: the most specific record, unless withdrawn above it.

    A withdrawal recorded on any path covering ``path`` wins over more specific consent:
    withdrawal overrides everything, so a folder's withdrawal cannot be undone by an older
    record on a file inside it. Returns the most specific withdrawn record in that case.
    Raises :class:`AmbiguousRecords` and :class:`InvalidPath` as :func:`effective` does.
    """
    check_path(path)
    covering = [c for c in consents if covers(c.path, path)]
    withdrawn = _most_specific(path, (c for c in covering if c.withdrawn))
    if withdrawn is not None:
        return withdrawn
    return _most_specific(path, covering)


def add_years(day: date, years: int) -> date:
    """``day`` moved by whole years; 29 February becomes 1 March in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)


@dataclass(frozen=True, slots=True)
class SunsetTerms:
    """How long a tier lasts for a depositor, what follows it, and on what basis."""

    period_years: int
    successor: Tier
    basis: str


def sunset_terms(policy: AccessPolicy, tier: Tier, depositor: str) -> SunsetTerms | None:
    """The sunset terms of ``tier`` for ``depositor``: the depositor's agreement where it
    overrides the policy default, else the default. None for ``public`` (no sunset).

    Depositor names are matched exactly, after removing leading and trailing spaces.
    """
    if tier == "public":
        return None
    agreement = policy.depositors.get(depositor.strip())
    defaults: RestrictedTerms | ProtectedTerms
    override: RestrictedOverride | ProtectedOverride | None
    if tier == "restricted":
        defaults = policy.tiers.restricted
        override = agreement.restricted if agreement else None
    else:
        defaults = policy.tiers.protected_identity
        override = agreement.protected_identity if agreement else None
    period: int = defaults.period_years
    successor: Tier = defaults.successor
    basis, source = defaults.legal_basis, "default"
    if agreement is not None and override is not None:
        period = override.period_years or period
        successor = override.successor or successor
        basis, source = agreement.legal_basis, f"agreement with {depositor.strip()}"
    return SunsetTerms(period, successor, f"{policy.label}, {source}: {basis}")


def default_assignment(
    policy: AccessPolicy,
    *,
    depositor: str,
    tier: str,
    deposited_on: date,
    legal_basis: str,
    path: str = PACKAGE,
) -> Assignment:
    """The assignment of ``tier`` to ``path`` of a deposit made on ``deposited_on``.

    The sunset is ``deposited_on`` plus the tier's period (the depositor agreement's, or the
    policy default), the successor the agreement's or the default; ``public`` gets neither.
    Raises :class:`InvalidAssignment` for an unknown tier or a blank legal basis.
    """
    if not is_tier(tier):
        raise InvalidAssignment(
            f"unknown tier {tier!r}", hint="use public, restricted or protected-identity"
        )
    _check_date(deposited_on, "deposited_on")
    terms = sunset_terms(policy, tier, depositor)
    if terms is None:
        return Assignment(path, tier, None, None, legal_basis)
    return Assignment(
        path,
        tier,
        add_years(deposited_on, terms.period_years),
        terms.successor,
        legal_basis,
        f"{terms.period_years} years from {deposited_on.isoformat()} ({terms.basis})",
    )
