"""The fixity check as Archivematica's Storage Service answers it
(``GET /api/v2/file/<uuid>/check_fixity/``, which Artefactual's ``fixity`` tool calls; also
``POST /archivist/packages/<uuid>/fixity``).

There is one fixity check: :func:`check_fixity` runs the fixity service's check of every copy of
the package (:func:`fixity.service.check_package`, what ``custos fixity run`` does to each copy,
recorded the same way: coverage rows, one ``fixity check`` event per copy, repairs) and puts
its report in the Storage Service's shape: ``success``, ``message``, ``failures.files``
(``changed``, ``missing``, ``untracked``) and ``timestamp``. The AIP listing is in
:mod:`access.compat`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archive.config import PRIMARY_LOCATION
from archive.errors import NotFound
from archive.services import Services
from archive.storage.readback import Verdict
from fixity.check import CheckResult
from fixity.service import FixityReport, check_package


def _copies(n: int) -> str:
    return f"{n} copy" if n == 1 else f"{n} copies"


def _name(result: CheckResult) -> str:
    """A damaged copy as the Storage Service lists files: its path in the object, and where
    the copy is when it is not the primary one."""
    path = result.expected.content_path
    return path if result.location == PRIMARY_LOCATION else f"{path} (copy at {result.location})"


@dataclass
class FixityResult:
    """One check of a package, in the Storage Service's terms."""

    package_id: str
    at: datetime
    checked: int = 0  # copies read in full
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    repaired: int = 0
    unrecoverable: int = 0
    #: What kept copies from being checked (a location that could not be read, copies held
    #: by another run).
    error: str = ""

    @classmethod
    def of(cls, package_id: str, report: FixityReport) -> FixityResult:
        result = cls(package_id, report.started_at, checked=report.checked)
        for check in report.damaged:
            target = result.missing if check.verdict is Verdict.MISSING else result.changed
            target.append(_name(check))
        result.changed += [p.path for p in report.mismatched]
        result.changed.sort()
        result.missing.sort()
        result.untracked = list(report.untracked)
        result.repaired = len(report.repairs)
        result.unrecoverable = len(report.unrecoverable) + len(report.refused)
        problems = [
            f"location {loc} could not be read: {why}" for loc, why in report.unreachable.items()
        ]
        if report.unchecked:
            problems.append(
                f"{_copies(report.unchecked)} of the package's files not checked (another "
                "fixity run holds them, or their location could not be read): ask again later"
            )
        result.error = "; ".join(problems)
        return result

    @property
    def success(self) -> bool:
        return not (self.changed or self.missing or self.untracked or self.error)

    def as_storage_service(self) -> dict[str, Any]:
        counts = (
            f"{len(self.changed)} changed, {len(self.missing)} missing, "
            f"{len(self.untracked)} untracked"
        )
        if self.success:
            message = (
                f"Fixity check succeeded: {_copies(self.checked)} of the package's stored files "
                "read in full, each matching the catalog's sha512 and sha256"
            )
        else:
            message = (
                f"Fixity check failed: {counts} ({_copies(self.checked)} read; "
                f"{self.repaired} repaired from an intact copy, {self.unrecoverable} not)"
                + (f"; {self.error}" if self.error else "")
            )
        return {
            "success": self.success,
            "message": message,
            "failures": {
                "files": {
                    "changed": self.changed,
                    "missing": self.missing,
                    "untracked": self.untracked,
                }
            },
            "timestamp": self.at.strftime("%Y-%m-%dT%H:%M:%S"),
        }


def check_fixity(services: Services, package_id: str) -> FixityResult:
    """Check every copy of the package now with the fixity service's check, and answer as the
    Storage Service does. Raises :class:`NotFound` for a package the catalog does not hold,
    :class:`PolicyError` for a fixity policy that cannot be read."""
    try:
        report = check_package(services, package_id)
    except NotFound as exc:
        raise NotFound(
            f"no AIP {package_id.removeprefix('urn:uuid:')}",
            hint="GET /api/v2/file/ lists the AIPs held",
        ) from exc
    return FixityResult.of(package_id, report)
