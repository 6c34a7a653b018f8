"""Check a migration's output: it opens, it is of the promised format, and its significant
properties match the original's.

:func:`check_output` returns an :class:`OutputCheck` holding every finding (``info`` for a
check passed, ``error`` for one failed): a verdict, not an exception. Codes:

- ``MIGRATION-FORMAT``: FIDO identifies the output as one of the pathway's target PUIDs.
- ``MIGRATION-OPENS``: the pathway's validator (pdfinfo, identify, ffprobe) opens the output.
- ``MIGRATION-PDFA``: the output's XMP declares the PDF/A part and conformance promised.
- ``MIGRATION-PROPERTY``: a significant property equals the original's (duration within the
  pathway's tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archive.findings import Finding, errors_in
from migration.probe import Identified, Properties, Unreadable, identify_format, read_properties
from policies.formats import Pathway


@dataclass(frozen=True)
class OutputCheck:
    findings: tuple[Finding, ...]
    identified: Identified | None

    @property
    def ok(self) -> bool:
        return not errors_in(self.findings)

    def summary(self) -> str:
        """The findings in one line, failed ones first."""
        ordered = sorted(self.findings, key=lambda f: f.severity != "error")
        return "; ".join(f.message for f in ordered)


def check_output(pathway: Pathway, output: Path, source: Properties, workdir: Path) -> OutputCheck:
    """Every check of ``output`` against ``pathway`` and the original's properties ``source``.

    Never raises for a bad output (that is a finding); a validator or FIDO missing from the
    machine raises :class:`migration.tools.ToolUnavailable`."""
    findings: list[Finding] = []
    identified: Identified | None = None
    try:
        identified = identify_format(output, workdir)
    except Unreadable as exc:
        findings.append(Finding("MIGRATION-FORMAT", "error", f"not identified: {exc}"))
    if identified is not None:
        if identified.puid in pathway.target_puids:
            findings.append(Finding("MIGRATION-FORMAT", "info", f"FIDO: {identified.puid}"))
        else:
            findings.append(
                Finding(
                    "MIGRATION-FORMAT",
                    "error",
                    f"FIDO identifies the output as {identified.puid or 'nothing known'}, "
                    f"not one of {', '.join(pathway.target_puids)}",
                )
            )
    try:
        result = read_properties(pathway.validator, output, workdir)
    except Unreadable as exc:
        findings.append(
            Finding("MIGRATION-OPENS", "error", f"{pathway.validator} cannot open it: {exc}")
        )
        return OutputCheck(tuple(findings), identified)
    findings.append(Finding("MIGRATION-OPENS", "info", f"opens in {pathway.validator}"))
    if pathway.declares_pdfa is not None:
        declared = result.get("pdfa")
        if declared == pathway.declares_pdfa:
            findings.append(Finding("MIGRATION-PDFA", "info", f"declares PDF/A-{declared}"))
        else:
            findings.append(
                Finding(
                    "MIGRATION-PDFA",
                    "error",
                    f"declares PDF/A-{declared} instead of PDF/A-{pathway.declares_pdfa}"
                    if declared
                    else f"declares no PDF/A conformance (PDF/A-{pathway.declares_pdfa} promised)",
                )
            )
    findings.extend(compare(pathway, source, result))
    return OutputCheck(tuple(findings), identified)


def compare(pathway: Pathway, source: Properties, output: Properties) -> list[Finding]:
    """One finding per significant property of the pathway."""
    found: list[Finding] = []
    for name in pathway.properties:
        before, after = source.get(name), output.get(name)
        label = name.replace("_", " ")
        if name == "duration" and before is not None and after is not None:
            same = abs(float(before) - float(after)) <= pathway.duration_tolerance_seconds
            shown = f"{before} s -> {after} s (tolerance {pathway.duration_tolerance_seconds} s)"
        else:
            same = before == after
            shown = f"{before} -> {after}"
        found.append(
            Finding(
                "MIGRATION-PROPERTY",
                "info" if same else "error",
                f"{label} {'kept' if same else 'changed'}: {shown}",
            )
        )
    return found


def read_source(pathway: Pathway, original: Path, workdir: Path) -> Properties:
    """The original's significant properties (empty if the pathway compares none), read by
    the pathway's source reader (its validator unless it names another).

    Raises :class:`Unreadable` if the reader cannot open the original."""
    if not pathway.properties:
        return {}
    try:
        return read_properties(pathway.reads_source_with, original, workdir)
    except Unreadable as exc:
        raise Unreadable(f"the original cannot be read: {exc}") from exc
