"""The auditor's fixity report: per location (replica) and tier, the copies checked, bytes
read, failures found, repairs made, copies left unrecoverable and the oldest check; with the
coverage over time (the share of copies checked within their cycle, recorded after every
cycle). Rendered as JSON, CSV, or one self-contained HTML page whose chart is inline SVG (no
JavaScript, no external assets)."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from archive.catalog.tables import (
    File,
    FixityCoverage,
    FixitySnapshot,
    FixityTally,
    StorageLocation,
)
from archive.clock import now
from archive.errors import StorageError
from archive.fixity_state import Coverage, _aware, coverage
from fixity.stored import kind_of

COLUMNS = (
    "location",
    "tier",
    "copies",
    "files_checked",
    "bytes_read",
    "failures",
    "repairs",
    "unrecoverable",
    "oldest_check",
)


@dataclass(frozen=True, slots=True)
class ReportRow:
    location: str
    tier: str
    copies: int  # tracked copies now
    files_checked: int
    bytes_read: int
    failures: int
    repairs: int
    unrecoverable: int
    oldest_check: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            c: (v.isoformat() if isinstance(v, datetime) else v)
            for c in COLUMNS
            for v in [getattr(self, c)]
        }


@dataclass(frozen=True, slots=True)
class FixityAuditReport:
    generated_at: datetime
    since: datetime | None
    rows: tuple[ReportRow, ...]
    coverage: tuple[tuple[datetime, int, int], ...]  # (at, covered, total)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "rows": [r.as_dict() for r in self.rows],
            "coverage_over_time": [
                {"at": at.isoformat(), "covered": c, "total": t} for at, c, t in self.coverage
            ],
        }


def build_report(session: Session, *, since: datetime | None = None) -> FixityAuditReport:
    """Tallies since ``since`` (default: all), coverage rows as they are now."""
    tally = select(
        FixityTally.location,
        FixityTally.tier,
        func.sum(FixityTally.files),
        func.sum(FixityTally.bytes),
        func.sum(FixityTally.failures),
        func.sum(FixityTally.repairs),
        func.sum(FixityTally.unrecoverable),
    ).group_by(FixityTally.location, FixityTally.tier)
    if since is not None:
        tally = tally.where(FixityTally.at >= since)
    done = {(loc, tier): rest for loc, tier, *rest in session.execute(tally).all()}
    tracked = {
        (loc, tier): (int(n), _aware(oldest))
        for loc, tier, n, oldest in session.execute(
            select(
                StorageLocation.name,
                FixityCoverage.tier,
                func.count(FixityCoverage.id),
                func.min(FixityCoverage.last_checked_at),
            )
            .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
            .group_by(StorageLocation.name, FixityCoverage.tier)
        ).all()
    }
    rows = []
    for key in sorted(set(done) | set(tracked)):
        files, size, failures, repairs, lost = done.get(key, (0, 0, 0, 0, 0))
        copies, oldest = tracked.get(key, (0, None))
        rows.append(
            ReportRow(
                key[0],
                key[1],
                copies,
                int(files or 0),
                int(size or 0),
                int(failures or 0),
                int(repairs or 0),
                int(lost or 0),
                oldest,
            )
        )
    snaps = select(FixitySnapshot.at, FixitySnapshot.covered, FixitySnapshot.total).order_by(
        FixitySnapshot.at
    )
    if since is not None:
        snaps = snaps.where(FixitySnapshot.at >= since)
    return FixityAuditReport(
        now(), since, tuple(rows), tuple((a, c, t) for a, c, t in session.execute(snaps).all())
    )


def csv_text(report: FixityAuditReport) -> str:
    """One row per location and tier, with a header row (RFC 4180 line ends)."""
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(COLUMNS)
    for r in report.rows:
        d = r.as_dict()
        out.writerow(["" if d[c] is None else d[c] for c in COLUMNS])
    return buffer.getvalue()


def write_csv(report: FixityAuditReport, path: Path) -> None:
    """One row per location and tier. Raises :class:`StorageError` if it cannot be written."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            fh.write(csv_text(report))
    except OSError as exc:
        raise StorageError(f"cannot write the CSV report to {path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Unrecoverable:
    """A copy no good copy was left to repair from. A content file is named by its digest,
    never its path (paths may identify people); the objects' other files by their path."""

    package_id: str
    location: str
    kind: str  # content, or the stored file's kind (inventory, sidecar, record, …)
    name: str  # sha512:<hex> for content; the path in the object otherwise
    last_checked_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "location": self.location,
            "kind": self.kind,
            "file": self.name,
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
        }


@dataclass(frozen=True, slots=True)
class FixityStatus:
    """Coverage now, damage outstanding and the copies left unrecoverable."""

    coverage: Coverage
    unrecoverable: tuple[Unrecoverable, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.coverage.as_dict(),
            "damage_outstanding": self.coverage.bad,
            "unrecoverable": [u.as_dict() for u in self.unrecoverable],
        }


def fixity_status(session: Session, *, limit: int = 1000) -> FixityStatus:
    """Coverage per location (see :func:`archive.fixity_state.coverage`) and up to ``limit``
    copies whose last check left them unrecoverable."""
    cov = coverage(session)
    rows = session.execute(
        select(
            FixityCoverage.package_id,
            StorageLocation.name,
            FixityCoverage.content_path,
            FixityCoverage.last_checked_at,
            File.sha512,
        )
        .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
        .outerjoin(
            File,
            and_(
                File.package_id == FixityCoverage.package_id,
                File.content_path == FixityCoverage.content_path,
            ),
        )
        .where(FixityCoverage.last_outcome == "unrecoverable")
        .order_by(FixityCoverage.package_id, StorageLocation.name, FixityCoverage.id)
        .limit(limit)
    ).all()
    lost = tuple(
        Unrecoverable(
            pid,
            loc,
            "content" if sha512 else kind_of(path),
            f"sha512:{sha512}" if sha512 else path,
            _aware(checked),
        )
        for pid, loc, path, checked, sha512 in rows
    )
    return FixityStatus(cov, lost)


def coverage_svg(points: tuple[tuple[datetime, int, int], ...], width: int = 640) -> str:
    """A line chart of coverage (percent of copies checked within their cycle) over time."""
    height, left, bottom, top, right = 240, 48, 32, 16, 16
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="coverage over time">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#999"/>',
    ]
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{pct}%</text>'
        )
    if not points:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="13" '
            'text-anchor="middle">no cycle has run yet</text>'
        )
    else:
        t0 = points[0][0].timestamp()
        span = max(points[-1][0].timestamp() - t0, 1.0)
        coords = []
        for at, covered, total in points:
            x = left + plot_w * ((at.timestamp() - t0) / span if len(points) > 1 else 0.5)
            y = top + plot_h * (1 - (covered / total if total else 0.0))
            coords.append((x, y))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1f5fa8" stroke-width="2"/>')
        for (x, y), (at, covered, total) in zip(coords, points, strict=True):
            label = html.escape(f"{at:%Y-%m-%d %H:%M} UTC: {covered} of {total} copies")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1f5fa8"><title>{label}</title>'
                "</circle>"
            )
        for at, anchor, x in ((points[0][0], "start", left), (points[-1][0], "end", left + plot_w)):
            parts.append(
                f'<text x="{x}" y="{height - 10}" font-size="11" text-anchor="{anchor}">'
                f"{at:%Y-%m-%d %H:%M}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: FixityAuditReport) -> str:
    """One page, no script, no external asset."""
    e = html.escape
    head = "".join(f"<th>{e(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = []
    for r in report.rows:
        d = r.as_dict()
        if r.oldest_check is not None:
            d["oldest_check"] = f"{r.oldest_check:%Y-%m-%d %H:%M:%S} UTC"
        cells = "".join(f"<td>{e('never' if d[c] is None else str(d[c]))}</td>" for c in COLUMNS)
        body.append(f"<tr>{cells}</tr>")
    since = report.since.isoformat() if report.since else "the first check"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Custos fixity report</title><style>"
        "body{font-family:sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px;"
        "text-align:right}td:first-child,td:nth-child(2){text-align:left}</style></head><body>"
        f"<h1>Fixity report</h1><p>Generated {e(report.generated_at.isoformat())}; checks "
        f"since {e(since)}. Every copy of every file is read in full and compared with the "
        "catalog's digests; a copy found damaged is repaired from a copy that still verifies.</p>"
        f"<h2>Per location and tier</h2><table><thead><tr>{head}</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table><h2>Coverage over time</h2><p>Share of copies checked within their "
        "tier's cycle, after each cycle.</p>" + coverage_svg(report.coverage) + "</body></html>\n"
    )


def write_html(report: FixityAuditReport, path: Path) -> None:
    try:
        path.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"cannot write the HTML report to {path}: {exc}") from exc
