"""Access declarations at deposit: tier, sunset and consent, from bag-info and a sidecar file.

A depositor declares the package's tier and consent in ``bag-info.txt``::

    Access-Tier: restricted
    Access-Legal-Basis: Deposit agreement of 2026-03-01, art. 4
    Access-Sunset: 2040-01-01            (optional: else the policy's period for the tier)
    Access-Successor: public             (optional: else the policy's successor)
    Consent-Scopes: prosecution, research

and, for files or folders that differ, in a tab-separated tag file ``custos-access.txt`` at the
bag's root, one line per path (``-`` takes the policy's default; ``#`` starts a comment)::

    # path<TAB>tier<TAB>sunset<TAB>successor<TAB>consent<TAB>legal basis
    data/testimonies<TAB>protected-identity<TAB>-<TAB>-<TAB>prosecution<TAB>Order 12/2019

Everything is checked against the access policy; anything undeclared is ``restricted`` and
consented to nothing (fail closed). A malformed declaration refuses the deposit with its line
and the reason. The result is written into the object (``custos/access.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from archive.findings import Finding
from policies.access import (
    PACKAGE,
    Assignment,
    Consent,
    assignment_to_json,
    default_assignment,
    sunset_terms,
)
from policies.errors import AccessRuleError
from policies.schema import AccessPolicy
from policies.vocabulary import is_scope, is_tier

SIDECAR = "custos-access.txt"
UNDECLARED_BASIS = (
    "undeclared at deposit: restricted until a registrar decides otherwise (fail closed)"
)
_FIELDS = ("path", "tier", "sunset", "successor", "consent", "legal basis")
_BAG_INFO = {
    "tier": "Access-Tier",
    "basis": "Access-Legal-Basis",
    "sunset": "Access-Sunset",
    "successor": "Access-Successor",
    "consent": "Consent-Scopes",
}


@dataclass
class AccessDeclaration:
    """What a deposit declares, checked: assignments and consent, and every problem found."""

    assignments: list[Assignment] = field(default_factory=list)
    consents: list[Consent] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def as_json(self, policy: AccessPolicy) -> dict[str, Any]:
        return {
            "policy": policy.label,
            "assignments": [assignment_to_json(a) for a in self.assignments],
            "consent": [{"path": c.path, "scopes": sorted(c.scopes)} for c in self.consents],
        }


def _one(info: Mapping[str, str | list[str]], key: str) -> str | None:
    value = info.get(key)
    if value is None:
        return None
    if isinstance(value, list):
        return "\x00".join(value)  # repeated: refused below
    return value.strip()


def declare(
    info: Mapping[str, str | list[str]],
    bag_dir: Path,
    payload: Iterable[str],
    *,
    policy: AccessPolicy,
    depositor: str,
    deposited_on: date,
) -> AccessDeclaration:
    """Read and check the declarations of a received bag (``payload``: its ``data/…`` paths)."""
    out = AccessDeclaration()
    paths = set(payload)
    folders = {p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1)}
    folders.discard("")
    _package(info, out, policy=policy, depositor=depositor, deposited_on=deposited_on)
    sidecar = bag_dir / SIDECAR
    if sidecar.is_file():
        _sidecar(sidecar, out, paths, folders, policy, depositor, deposited_on)
    return out


def _refuse(out: AccessDeclaration, code: str, message: str, where: str) -> None:
    out.findings.append(Finding(code, "error", message, where, "access policy"))


def _package(
    info: Mapping[str, str | list[str]],
    out: AccessDeclaration,
    *,
    policy: AccessPolicy,
    depositor: str,
    deposited_on: date,
) -> None:
    where = "bag-info.txt"
    values = {k: _one(info, label) for k, label in _BAG_INFO.items()}
    for k, v in values.items():
        if v is not None and "\x00" in v:
            _refuse(out, "ACCESS-REPEATED", f"{_BAG_INFO[k]} is given more than once", where)
            return
    tier, basis = values["tier"], values["basis"]
    if tier is None:
        if any(values[k] for k in ("basis", "sunset", "successor")):
            _refuse(
                out,
                "ACCESS-NO-TIER",
                "Access-Legal-Basis, Access-Sunset or Access-Successor is given without "
                "Access-Tier",
                where,
            )
            return
        assignment: Assignment | None = default_assignment(
            policy,
            depositor=depositor,
            tier="restricted",
            deposited_on=deposited_on,
            legal_basis=UNDECLARED_BASIS,
        )
    else:
        assignment = _assignment(
            out,
            where,
            PACKAGE,
            tier,
            values["sunset"],
            values["successor"],
            basis or "",
            policy,
            depositor,
            deposited_on,
        )
    if assignment is not None:
        out.assignments.append(assignment)
    consent = _consent(out, where, PACKAGE, values["consent"] or "")
    if consent is not None:
        out.consents.append(consent)


def _sidecar(
    sidecar: Path,
    out: AccessDeclaration,
    paths: set[str],
    folders: set[str],
    policy: AccessPolicy,
    depositor: str,
    deposited_on: date,
) -> None:
    try:
        text = sidecar.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _refuse(out, "ACCESS-SIDECAR-ENCODING", f"{SIDECAR} is not UTF-8", SIDECAR)
        return
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{SIDECAR}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) != len(_FIELDS):
            _refuse(
                out,
                "ACCESS-SIDECAR-SYNTAX",
                f"{len(cells)} tab-separated fields instead of {len(_FIELDS)} "
                f"({', '.join(_FIELDS)})",
                where,
            )
            continue
        path, tier, sunset, successor, scopes, basis = cells
        path = path.rstrip("/")
        if path not in paths and path not in folders:
            _refuse(
                out,
                "ACCESS-UNKNOWN-PATH",
                f"{path!r} is neither a payload file nor a payload folder of this bag "
                "(paths start with data/)",
                where,
            )
            continue
        if path in seen:
            _refuse(
                out,
                "ACCESS-DUPLICATE-PATH",
                f"{path!r} is declared again (first on line {seen[path]})",
                where,
            )
            continue
        seen[path] = number
        assignment = _assignment(
            out,
            where,
            path,
            tier,
            None if sunset == "-" else sunset,
            None if successor == "-" else successor,
            basis,
            policy,
            depositor,
            deposited_on,
        )
        if assignment is not None:
            out.assignments.append(assignment)
        if scopes != "-":
            consent = _consent(out, where, path, scopes)
            if consent is not None:
                out.consents.append(consent)


def _assignment(
    out: AccessDeclaration,
    where: str,
    path: str,
    tier: str,
    sunset: str | None,
    successor: str | None,
    basis: str,
    policy: AccessPolicy,
    depositor: str,
    deposited_on: date,
) -> Assignment | None:
    if not is_tier(tier):
        _refuse(
            out,
            "ACCESS-TIER",
            f"unknown tier {tier!r}: use public, restricted or protected-identity",
            where,
        )
        return None
    if not basis.strip():
        _refuse(
            out, "ACCESS-LEGAL-BASIS", f"the {tier} tier is declared without a legal basis", where
        )
        return None
    try:
        base = default_assignment(
            policy, depositor=depositor, tier=tier, deposited_on=deposited_on, legal_basis=basis
        )
        if tier == "public":
            if sunset or successor:
                _refuse(out, "ACCESS-SUNSET", "public material has no sunset or successor", where)
                return None
            return Assignment(path, tier, None, None, basis)
        day = base.sunset
        if sunset is not None:
            day = date.fromisoformat(sunset)
            if day <= deposited_on:
                _refuse(
                    out,
                    "ACCESS-SUNSET",
                    f"sunset {sunset} is not after the deposit date {deposited_on.isoformat()}",
                    where,
                )
                return None
        terms = sunset_terms(policy, tier, depositor)
        then = successor or (terms.successor if terms else None)
        if then is not None and not is_tier(then):
            _refuse(out, "ACCESS-TIER", f"unknown successor tier {then!r}", where)
            return None
        why = (
            f"declared by the depositor at deposit ({where})"
            if sunset or successor
            else base.sunset_basis
        )
        return Assignment(path, tier, day, then, basis, why)
    except ValueError as exc:
        message = exc.message if isinstance(exc, AccessRuleError) else str(exc)
        _refuse(out, "ACCESS-DECLARATION", message, where)
        return None


def _consent(out: AccessDeclaration, where: str, path: str, text: str) -> Consent | None:
    scopes = [s.strip() for s in text.replace(";", ",").split(",") if s.strip()]
    unknown = [s for s in scopes if not is_scope(s)]
    if unknown:
        _refuse(
            out,
            "ACCESS-CONSENT",
            f"unknown consent scope(s) {', '.join(map(repr, unknown))}: use prosecution, "
            "third-party-justice, research, public or withdrawn",
            where,
        )
        return None
    if "withdrawn" in scopes and len(scopes) > 1:
        _refuse(out, "ACCESS-CONSENT", "withdrawn cannot be combined with other scopes", where)
        return None
    return Consent(path, frozenset(scopes))  # type: ignore[arg-type]
