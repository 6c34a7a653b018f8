"""The risk report as one HTML page: plain, server-side HTML and CSS, no JavaScript.

Every value from the catalog or the policy is escaped (format names come from PRONOM, rule
labels from the policy file: neither is trusted as markup).
"""

from __future__ import annotations

from html import escape
from typing import Any

from migration.service import Report

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.high td.risk { background: #f8d0d0; } tr.medium td.risk { background: #f8ecc8; }
tr.low td.risk { background: #d8f0d8; } tr.unknown td.risk { background: #e4e4e4; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
"""


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _cell(value: Any, numeric: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("n" if numeric else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{escape(str(value))}</td>"


def render_html(report: Report) -> str:
    """The report as a complete HTML document."""
    data = report.as_dict()
    totals = data["totals"]
    rows = []
    for r in report.rows:
        pathways = ", ".join(p for p in (r.migrate, r.access) if p) or "-"
        rows.append(
            f'<tr class="{escape(r.risk)}">'
            + _cell(r.puid or "-")
            + _cell(r.format_name or "-")
            + _cell(r.files, True)
            + _cell(human_bytes(r.bytes), True)
            + _cell(r.action)
            + _cell(r.risk, cls="risk")
            + _cell(pathways)
            + _cell(r.preserved, True)
            + _cell(r.access_copies, True)
            + _cell(r.failed, True)
            + _cell(r.to_do, True)
            + "</tr>"
        )
    derivatives = [
        "<tr>"
        + _cell(d["role"])
        + _cell(d["extension"])
        + _cell(d["files"], True)
        + _cell(human_bytes(d["bytes"]), True)
        + "</tr>"
        for d in report.derivatives
    ] or ['<tr><td colspan="4">no derivative stored yet</td></tr>']
    events = ", ".join(f"{escape(k)}: {n}" for k, n in sorted(report.outcomes.items())) or "none"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Custos format risk report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Format risk report</h1>
<p>Policy {escape(report.policy)}; generated {escape(report.generated_at.isoformat())}.
{totals["files"]} payload files, {escape(human_bytes(totals["bytes"]))}; preservation copies
stored: {totals["preserved"]}; access copies: {totals["access_copies"]}; failed:
{totals["failed"]}; still to do: {totals["to_do"]}.</p>
<table>
<caption>Formats held</caption>
<thead><tr><th>PUID</th><th>PRONOM name</th><th>files</th><th>bytes</th><th>action</th>
<th>risk</th><th>pathways</th><th>preserved</th><th>access copies</th><th>failed</th>
<th>to do</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<table>
<caption>Derivatives stored</caption>
<thead><tr><th>role</th><th>extension</th><th>files</th><th>bytes</th></tr></thead>
<tbody>
{chr(10).join(derivatives)}
</tbody>
</table>
<p>Migration events in the custody log: {events}.</p>
</body>
</html>
"""
