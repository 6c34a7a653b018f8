"""Preservation planning, pure: what the format policy asks for the files held.

Input: the payload files held (with the PUID identification gave them), the derivatives already
stored, and the migrations that failed; output: the work to do (:func:`tasks`) and, per format,
the plan an archivist reads before anything runs (:func:`plan`). Nothing here reads the catalog
or runs a tool (see ``migration.holdings`` and ``migration.service``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from policies.formats import FormatPolicy, Pathway, Role, derivative_path

RISK_ORDER = {"high": 0, "medium": 1, "low": 2, "unknown": 3}
UNIDENTIFIED = "unidentified"


@dataclass(frozen=True, slots=True)
class HeldFile:
    """A payload file of a package, as the catalog knows it."""

    package_id: str
    logical_path: str
    content_path: str
    size: int
    sha512: str
    puid: str | None
    format_name: str | None


@dataclass(frozen=True)
class Holdings:
    files: tuple[HeldFile, ...]
    #: (package id, logical path) of every derivative stored.
    derivatives: frozenset[tuple[str, str]]
    #: (package id, source logical path, attempt key) of every migration recorded as failed.
    failures: frozenset[tuple[str, str, str]]


@dataclass(frozen=True, slots=True)
class Task:
    """One copy to make: a held file, the pathway that makes it, where the copy goes."""

    file: HeldFile
    pathway_name: str
    role: Role
    output_path: str


def attempt_key(pathway_name: str, policy_label: str) -> str:
    """What a failed attempt is remembered by: the pathway and the policy version in force.
    Every migration event's detail starts with it (see :func:`parse_attempt_key`)."""
    return f"{pathway_name} ({policy_label})"


_KEY = re.compile(r"^([a-z][a-z0-9-]*) \(([^()]*)\)")


def parse_attempt_key(detail: str) -> str | None:
    m = _KEY.match(detail)
    return attempt_key(m.group(1), m.group(2)) if m else None


def _pathways(policy: FormatPolicy, puid: str | None) -> list[tuple[str, Pathway]]:
    rule = policy.rule_for(puid)
    if rule is None:
        return []
    return [(name, policy.pathways[name]) for name in rule.pathways]


def _status(
    f: HeldFile, name: str, pathway: Pathway, holdings: Holdings, policy: FormatPolicy
) -> tuple[str, str]:
    """("done" | "failed" | "to do", output path) of one pathway for one file."""
    output = derivative_path(pathway.role, f.logical_path, pathway.extension)
    if (f.package_id, output) in holdings.derivatives:
        return "done", output
    if (f.package_id, f.logical_path, attempt_key(name, policy.label)) in holdings.failures:
        return "failed", output
    return "to do", output


def tasks(holdings: Holdings, policy: FormatPolicy, *, retry_failed: bool = False) -> list[Task]:
    """Every copy the policy asks for that is not stored yet (nor failed, unless
    ``retry_failed``), in the order of the files."""
    out: list[Task] = []
    for f in holdings.files:
        for name, pathway in _pathways(policy, f.puid):
            status, output = _status(f, name, pathway, holdings, policy)
            if status == "to do" or (status == "failed" and retry_failed):
                out.append(Task(f, name, pathway.role, output))
    return out


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One format held, and what the policy does with it."""

    puid: str | None
    format_name: str
    files: int
    bytes: int
    action: str  # keep | migrate | access | migrate+access | no rule
    risk: str  # low | medium | high | unknown
    rule: str
    migrate: str | None
    access: str | None
    preserved: int  # files with their preservation copy stored
    access_copies: int  # files with their access copy stored
    failed: int  # copies whose attempt failed under this policy version
    to_do: int  # copies still to make

    def as_dict(self) -> dict[str, Any]:
        return {
            "puid": self.puid,
            "format_name": self.format_name,
            "files": self.files,
            "bytes": self.bytes,
            "action": self.action,
            "risk": self.risk,
            "rule": self.rule,
            "migrate": self.migrate,
            "access": self.access,
            "preserved": self.preserved,
            "access_copies": self.access_copies,
            "failed": self.failed,
            "to_do": self.to_do,
        }


def plan(holdings: Holdings, policy: FormatPolicy) -> list[PlanRow]:
    """Per format held: files, bytes, name, action, risk and progress; the riskiest first,
    then the largest."""
    groups: dict[str | None, list[HeldFile]] = {}
    for f in holdings.files:
        groups.setdefault(f.puid, []).append(f)
    rows = [_row(puid, files, holdings, policy) for puid, files in groups.items()]
    return sorted(rows, key=lambda r: (RISK_ORDER[r.risk], -r.bytes, r.puid or ""))


def _row(
    puid: str | None, files: list[HeldFile], holdings: Holdings, policy: FormatPolicy
) -> PlanRow:
    rule = policy.rule_for(puid)
    counts = {"preservation": 0, "access": 0, "failed": 0, "to do": 0}
    for f in files:
        for name, pathway in _pathways(policy, puid):
            status, _ = _status(f, name, pathway, holdings, policy)
            if status == "done":
                counts[pathway.role] += 1
            else:
                counts[status] += 1
    return PlanRow(
        puid=puid,
        format_name=_common_name(f.format_name for f in files) if puid else UNIDENTIFIED,
        files=len(files),
        bytes=sum(f.size for f in files),
        action=rule.action if rule else "no rule",
        risk=rule.risk if rule else "unknown",
        rule=rule.label if rule else "",
        migrate=rule.migrate if rule else None,
        access=rule.access if rule else None,
        preserved=counts["preservation"],
        access_copies=counts["access"],
        failed=counts["failed"],
        to_do=counts["to do"],
    )


def _common_name(names: Iterable[str | None]) -> str:
    """The name most files of a PUID carry (FIDO gives one name per PUID, so: that name)."""
    tally: dict[str, int] = {}
    for n in names:
        if n:
            tally[n] = tally.get(n, 0) + 1
    return max(sorted(tally), key=lambda n: tally[n]) if tally else ""
