"""Replication and fixity policies: strict schemas and the pure functions that evaluate them.

``replication.toml`` says how many copies each tier needs, on distinct locations (the primary
storage root always holds one and counts toward the number), and which configured locations
hold the others. ``fixity.toml`` says how often every copy of every file is checked in full
(per tier), which digest a routine check recomputes, how often both digests are recomputed,
and how many files continuous random sampling checks per hour.

Nothing here reads settings or the catalog: callers pass what they know (configured location
names, a package's tiers, times) and get plain values back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from policies.access import effective
from policies.errors import AccessRuleError
from policies.schema import PolicyHeader, _Strict
from policies.vocabulary import TIERS, Tier

#: The name under which the primary storage root appears among locations.
PRIMARY = "primary"
LOCATION_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
Algorithm = Literal["sha256", "sha512"]


# --- replication.toml ----------------------------------------------------------------------


class TierCopies(_Strict):
    """Copies of a package of this tier: ``copies`` in all, the primary included, on distinct
    locations; ``locations`` lists, in order of preference, the configured locations that
    hold the others (empty: every configured location, in name order)."""

    copies: Annotated[int, Field(strict=True, ge=1, le=16)]
    locations: tuple[Annotated[str, Field(pattern=LOCATION_NAME)], ...] = ()

    @field_validator("locations")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a location is listed twice: copies must be on distinct locations")
        if PRIMARY in value:
            raise ValueError(f"{PRIMARY!r} is the storage root, which always holds one copy")
        return value

    @model_validator(mode="after")
    def _enough(self) -> TierCopies:
        if self.locations and len(self.locations) < self.copies - 1:
            raise ValueError(
                f"copies = {self.copies} needs {self.copies - 1} location(s) beside the primary, "
                f"but only {len(self.locations)} are listed"
            )
        return self


class ReplicationTiers(_Strict):
    public: TierCopies
    restricted: TierCopies
    protected_identity: TierCopies = Field(alias="protected-identity")


class ReplicationPolicy(PolicyHeader):
    """``policies/replication.toml``."""

    tiers: ReplicationTiers

    def for_tier(self, tier: str) -> TierCopies:
        """The rule of ``tier``; an unknown tier gets the most demanding rule (fail closed)."""
        table = {
            "public": self.tiers.public,
            "restricted": self.tiers.restricted,
            "protected-identity": self.tiers.protected_identity,
        }
        if tier in table:
            return table[tier]
        return max(table.values(), key=lambda t: t.copies)


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    """Where a package's copies must be: ``locations`` beside the primary; ``shortfall`` is
    how many required copies have no configured location to go to."""

    tier: str
    copies: int
    locations: tuple[str, ...]
    shortfall: int
    policy: str


def package_tier(tiers: Iterable[str]) -> str:
    """The tier that governs a whole package (its inventories, metadata and evidence records,
    which list every file) for replication and fixity: the most closed of the tiers assigned
    in it; none assigned is ``restricted`` (undeclared material is
    restricted)."""
    found = [TIERS.index(t) if t in TIERS else len(TIERS) - 1 for t in tiers]
    if not found:
        return "restricted"
    return TIERS[max(found)]


#: Where a package's payload files are in the object (``bag/data/…``); access records name
#: them from ``data/…``.
PAYLOAD_PREFIX = "bag/"


class Assigned(NamedTuple):
    """A tier assigned to a path of a package (``""``: the package), as access records say."""

    path: str
    tier: str


def file_tier(logical_path: str, assigned: Sequence[Assigned], governing: str) -> str:
    """The tier that governs one file of a package for replication and fixity.

    A payload file (``bag/data/…``) has its own: the tier of the assignment that governs it
    (:func:`policies.access.effective`: the longest path covering it); covered by none, or
    ambiguously, ``restricted`` (undeclared material is restricted). Every other file of the
    object (tag files, Custos metadata, derivatives, inventories, evidence records) lists or
    derives from all of them and takes the package's ``governing`` tier (the most closed)."""
    if not logical_path.startswith(PAYLOAD_PREFIX + "data/"):
        return governing
    try:
        found = effective(logical_path.removeprefix(PAYLOAD_PREFIX), assigned)
    except AccessRuleError:
        return "restricted"
    return "restricted" if found is None else found.tier


@dataclass(frozen=True, slots=True)
class PackagePlan:
    """Where a package's copies go, per tier: ``by_tier`` names the locations holding the
    payload files of each tier present in it (beside the primary); ``plan`` is the whole
    object's: every location of any tier (which holds the object's inventories, metadata and
    evidence records too), as many copies as the most demanding tier needs."""

    plan: ReplicaPlan
    by_tier: dict[str, tuple[str, ...]]

    def holds(self, location: str, tier: str) -> bool:
        """Whether ``location`` must hold the files of ``tier``."""
        return location in self.by_tier.get(tier, self.plan.locations)


def plan_for_tiers(
    policy: ReplicationPolicy, governing: str, tiers: Iterable[str], configured: Sequence[str]
) -> PackagePlan:
    """The plan of a package whose governing tier is ``governing`` and whose files have
    ``tiers``: each tier's own plan (:func:`plan_replicas`), and their union for the object."""
    present = sorted({governing, *tiers}, key=lambda t: TIERS.index(t) if t in TIERS else 99)
    plans = {t: plan_replicas(policy, t, configured) for t in present}
    locations: list[str] = []
    for t in present:
        locations += [loc for loc in plans[t].locations if loc not in locations]
    whole = ReplicaPlan(
        governing,
        max(p.copies for p in plans.values()),
        tuple(locations),
        max(p.shortfall for p in plans.values()),
        policy.label,
    )
    return PackagePlan(whole, {t: p.locations for t, p in plans.items()})


def plan_replicas(policy: ReplicationPolicy, tier: str, configured: Sequence[str]) -> ReplicaPlan:
    """The locations that must hold a package of ``tier``, given the configured location
    names (settings order does not matter: without a list in the policy, names are sorted)."""
    rule = policy.for_tier(tier)
    needed = rule.copies - 1
    candidates = list(rule.locations) if rule.locations else sorted(configured)
    usable = [c for c in candidates if c in configured]
    chosen = tuple(usable[:needed])
    return ReplicaPlan(tier, rule.copies, chosen, needed - len(chosen), policy.label)


# --- fixity.toml ---------------------------------------------------------------------------

Days = Annotated[int, Field(strict=True, ge=1, le=3650)]


class TierCycle(_Strict):
    """Every copy of every file of this tier is checked at least once per ``period_days``."""

    period_days: Days


class FixityCycles(_Strict):
    public: TierCycle
    restricted: TierCycle
    protected_identity: TierCycle = Field(alias="protected-identity")


class Sampling(_Strict):
    """Continuous random sampling between cycles: ``files_per_hour`` copies chosen at random
    (0 turns it off), each checked with both digests."""

    files_per_hour: Annotated[int, Field(strict=True, ge=0, le=1_000_000)]


class FixityPolicy(PolicyHeader):
    """``policies/fixity.toml``."""

    #: The digest a routine check recomputes (sha256 is about twice as fast here).
    algorithm: Algorithm
    #: A copy whose last check with both sha512 and sha256 is older than this is checked
    #: with both.
    full_digest_every_days: Days
    cycles: FixityCycles
    sampling: Sampling

    def period(self, tier: str) -> timedelta:
        """The cycle period of ``tier``; an unknown tier gets the shortest (fail closed)."""
        table = {
            "public": self.cycles.public,
            "restricted": self.cycles.restricted,
            "protected-identity": self.cycles.protected_identity,
        }
        chosen = table.get(tier) or min(table.values(), key=lambda c: c.period_days)
        return timedelta(days=chosen.period_days)

    def cutoffs(self, at: datetime) -> dict[Tier, datetime]:
        """Per tier: a copy last checked before this time is due."""
        return {t: at - self.period(t) for t in TIERS}

    def algorithms(self, last_full: datetime | None, at: datetime) -> tuple[Algorithm, ...]:
        """The digests to recompute for a copy whose last check with both was ``last_full``."""
        if self.algorithm == "sha512":
            return ("sha512", "sha256")
        if last_full is None or at - last_full >= timedelta(days=self.full_digest_every_days):
            return ("sha512", "sha256")
        return (self.algorithm,)
