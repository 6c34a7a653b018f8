"""Coded findings: the unit of every verdict.

A check that could run returns a report holding *all* its findings; an exception means it
could not check at all. Each finding has a stable code and, where one exists, the clause of
the specification it enforces (RFC 8493, OCFL 1.1) or the archive policy it applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One coded observation about an input or an object."""

    code: str
    severity: Severity
    message: str
    path: str = ""
    clause: str = ""

    def __post_init__(self) -> None:
        if not self.code or not self.code.replace("-", "").isalnum():
            raise ValueError(f"finding code must be alphanumeric with dashes: {self.code!r}")

    def render(self) -> str:
        """One line for people: code, where, what, and the clause it rests on."""
        where = f" [{self.path}]" if self.path else ""
        basis = f" ({self.clause})" if self.clause else ""
        return f"{self.code}{where}: {self.message}{basis}"

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "clause": self.clause,
        }


def errors_in(findings: list[Finding] | tuple[Finding, ...]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def warnings_in(findings: list[Finding] | tuple[Finding, ...]) -> list[Finding]:
    return [f for f in findings if f.severity == "warning"]
