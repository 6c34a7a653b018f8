"""Strict schemas for policy files: unknown keys are errors, every policy is versioned."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from policies.vocabulary import Action, GrantScope, Role, Tier


class PolicyHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    version: int = Field(ge=1)
    effective_from: date

    @property
    def label(self) -> str:
        return f"{self.id} v{self.version}"


class IngestPolicy(PolicyHeader):
    refuse_fetch: bool = True
    refuse_name_collisions: bool = True
    junk_action: Literal["warn", "refuse"] = "warn"
    junk_file_names: tuple[str, ...] = ()
    junk_dir_names: tuple[str, ...] = ()
    junk_file_prefixes: tuple[str, ...] = ()


# --- access.toml ---------------------------------------------------------------------------

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Years = Annotated[int, Field(strict=True, ge=1, le=999)]
Flag = Annotated[bool, Field(strict=True)]
PURPOSE_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublicTerms(_Strict):
    """``public`` has no sunset and no successor: it is the most open tier."""

    description: str = ""


class RestrictedTerms(_Strict):
    """Default sunset of a ``restricted`` assignment: it opens to ``successor`` by itself.
    ``encrypt_at_rest``: its files are stored encrypted once the tier has a key (``custos keys
    init --tier restricted``), as protected-identity files always are."""

    period_years: Years
    successor: Literal["public"]
    legal_basis: NonBlank
    description: str = ""
    encrypt_at_rest: bool = False


class ProtectedTerms(_Strict):
    """Default sunset of a ``protected-identity`` assignment: it opens a review, never itself."""

    period_years: Years
    successor: Literal["public", "restricted"]
    legal_basis: NonBlank
    description: str = ""


class TierTable(_Strict):
    public: PublicTerms
    restricted: RestrictedTerms
    protected_identity: ProtectedTerms = Field(alias="protected-identity")


class RestrictedOverride(_Strict):
    period_years: Years | None = None
    successor: Literal["public"] | None = None


class ProtectedOverride(_Strict):
    period_years: Years | None = None
    successor: Literal["public", "restricted"] | None = None


class DepositorTerms(_Strict):
    """A depositor agreement: its reference, and the tier defaults it changes."""

    legal_basis: NonBlank
    restricted: RestrictedOverride | None = None
    protected_identity: ProtectedOverride | None = Field(default=None, alias="protected-identity")

    @model_validator(mode="after")
    def _changes_something(self) -> DepositorTerms:
        if self.restricted is None and self.protected_identity is None:
            raise ValueError("an agreement must override 'restricted' or 'protected-identity'")
        return self


class PurposeTerms(_Strict):
    """A purpose a reader states, and the consent scopes any one of which allows it."""

    consent: tuple[GrantScope, ...] = Field(min_length=1)
    description: str = ""


class AccessRule(_Strict):
    """One row of the decision table: ``role`` may do ``action`` on material of ``tier``.

    ``purposes``: the stated purposes the row accepts; the consent recorded for the material
    must then hold a scope the purpose rests on. Empty: no purpose is asked and consent is
    not consulted, except that withdrawn consent still denies unless ``despite_withdrawal``.
    """

    role: Role
    action: Action
    tier: Tier
    purposes: tuple[str, ...] = ()
    own_deposits_only: Flag = False
    despite_withdrawal: Flag = False
    log: Flag
    second_factor: Flag

    @property
    def label(self) -> str:
        return f"{self.role} {self.action} {self.tier}"


class AccessPolicy(PolicyHeader):
    """``policies/access.toml``: tier defaults, depositor agreements, purposes, decision table.

    Besides the shape of each entry, loading checks the rules that keep access fail-closed,
    so that no policy file can weaken them (each names the offending entry):
    one row per role, action and tier; every purpose named by a row is declared;
    content rows ask a purpose and never read through withdrawn consent; rows on
    non-public tiers are logged; anonymous readers and researchers get public material only;
    a role that may read protected-identity content uses a second factor in every row.
    """

    tiers: TierTable
    purposes: dict[str, PurposeTerms] = Field(min_length=1)
    rules: tuple[AccessRule, ...] = Field(min_length=1)
    depositors: dict[str, DepositorTerms] = Field(default_factory=dict)

    @field_validator("purposes")
    @classmethod
    def _purpose_names(cls, value: dict[str, PurposeTerms]) -> dict[str, PurposeTerms]:
        for name in value:
            if not PURPOSE_NAME.fullmatch(name):
                raise ValueError(f"purpose name {name!r}: lower-case letters, digits and '-'")
        return value

    @field_validator("depositors")
    @classmethod
    def _depositor_names(cls, value: dict[str, DepositorTerms]) -> dict[str, DepositorTerms]:
        for name in value:
            if not name.strip() or name != name.strip():
                raise ValueError(f"depositor name {name!r}: no leading or trailing spaces")
        return value

    @model_validator(mode="after")
    def _fail_closed(self) -> AccessPolicy:
        problems: list[str] = []
        seen: dict[tuple[str, str, str], int] = {}
        second_factor_roles = {
            r.role
            for r in self.rules
            if r.tier == "protected-identity" and r.action == "read-content"
        }
        for i, rule in enumerate(self.rules):
            where = f"rules[{i}] ({rule.label})"
            key = (rule.role, rule.action, rule.tier)
            if key in seen:
                problems.append(f"{where}: same role, action and tier as rules[{seen[key]}]")
            seen.setdefault(key, i)
            for purpose in rule.purposes:
                if purpose not in self.purposes:
                    problems.append(f"{where}: purpose {purpose!r} is not declared in [purposes]")
            if rule.action == "read-content" and not rule.purposes:
                problems.append(f"{where}: a content read must ask for a purpose")
            if rule.despite_withdrawal and (rule.action == "read-content" or rule.purposes):
                problems.append(
                    f"{where}: despite_withdrawal is only for metadata rows without purposes"
                )
            if rule.tier != "public" and not rule.log:
                problems.append(f"{where}: every read of non-public material must be logged")
            if rule.role in ("anonymous", "researcher") and rule.tier != "public":
                problems.append(f"{where}: {rule.role} may only be granted public material")
            if rule.role in second_factor_roles and not rule.second_factor:
                problems.append(
                    f"{where}: {rule.role} may read protected-identity content, "
                    "so every row of that role needs second_factor = true"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rule_for(self, role: str, action: str, tier: str) -> AccessRule | None:
        """The one row for this role, action and tier, or None: no row, no access."""
        for rule in self.rules:
            if rule.role == role and rule.action == action and rule.tier == tier:
                return rule
        return None
