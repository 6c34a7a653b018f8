"""``custos status``: what the archive holds and what awaits work, rendered from
:func:`archive.status.status`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from archive.cli.shell import (
    JsonOpt,
    app,
    emit_json,
    human_bytes,
    out,
    run,
    state,
)

if TYPE_CHECKING:
    pass


@app.command("status")
def status_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Holdings, characterisation pending (formats, text), the work queued (by job, and what
    failed and why), replication (packages safely stored), fixity coverage, the seal backlog
    (and its age), and the custody log's last sealed checkpoint."""
    from archive.status import status

    services = run(as_json, state(ctx).services)
    st = run(as_json, lambda: status(services))
    if as_json:
        emit_json({"status": "ok", **st.as_dict()})
        return
    out.print(
        f"holdings: {st.packages} package(s), {st.payload_files} file(s), "
        f"{human_bytes(st.payload_bytes)}",
        markup=False,
    )
    q = st.queued
    if q.total:
        out.print(
            "queued work: "
            + ", ".join(f"{job} {n}" for job, n in sorted(q.by_job.items()))
            + (f" ({q.running} running)" if q.running else "")
            + " (a worker or `custos serve` runs it; `custos worker --until-idle` now)",
            markup=False,
        )
        for w in q.failing:
            out.print(
                f"  failed {w.attempts} time(s): {w.job} {w.key}; next try "
                f"{w.not_before:%Y-%m-%d %H:%M} UTC: {(w.last_error or '').splitlines()[0]}",
                markup=False,
            )
        if q.failing_count > len(q.failing):
            out.print(f"  ... {q.failing_count - len(q.failing)} more failed", markup=False)
    else:
        out.print("queued work: none", markup=False)
    if st.unidentified or st.text_pending:
        out.print(
            f"characterisation backlog: {st.unidentified} payload file(s) in "
            f"{st.unidentified_packages} package(s) not identified yet, {st.text_pending} public "
            "file(s) not yet read for text (a worker, `custos serve` or `custos identify` does "
            "this work)",
            markup=False,
        )
    else:
        out.print("characterisation: nothing pending", markup=False)
    for tool, n in st.texts_awaiting_tool.items():
        out.print(
            f"  {n} public file(s) not read for text: {tool} was not installed; once it is, "
            "`custos identify` (or a worker, or `custos serve`) reads them",
            markup=False,
        )
    r = st.replication
    out.print(
        f"replication: {r.safely_stored} of {r.packages} package(s) safely stored (every "
        "required copy written and read back)"
        + (
            f"; {r.packages - r.safely_stored} not yet ({r.not_planned} never replicated)"
            if r.packages - r.safely_stored
            else ""
        ),
        markup=False,
    )
    if r.log_files:
        held = ", ".join(f"{n} at {name}" for name, n in r.log_held) or "none at any replica"
        out.print(
            f"custody log: {r.log_files} checkpoint file(s) in the storage root; read-back "
            f"copies: {held}",
            markup=False,
        )
    fx = st.fixity
    if fx.tracked == 0:
        out.print(f"fixity: no copy checked yet ({fx.expected} copies to check)", markup=False)
    else:
        oldest = fx.oldest_check.isoformat() if fx.oldest_check else "never"
        newest = fx.newest_check.isoformat() if fx.newest_check else "never"
        out.print(
            f"fixity: {fx.covered} of {fx.expected} copies checked within their cycle; "
            f"oldest check {oldest}; last check {newest}"
            + (f"; {fx.bad} damaged copies outstanding" if fx.bad else ""),
            markup=False,
        )
    b = st.seal
    if b.pending == 0:
        out.print("seal backlog: none", markup=False)
    else:
        age = (st.at - b.oldest).total_seconds() if b.oldest else 0.0
        out.print(
            f"seal backlog: {b.pending} manifest(s) awaiting their seal, the oldest for "
            f"{_duration(age)}",
            markup=False,
        )
        if b.failures:
            out.print(
                f"  {b.failures} failed attempt(s) since the last seal; last: "
                f"{b.last_failure_detail}",
                markup=False,
            )
        when = b.next_attempt.isoformat() if b.next_attempt else "now"
        out.print(f"  next attempt due: {when}", markup=False)
    if b.files_versions:
        out.print(
            f"file seals: {b.files_versions} version(s) of {b.files_packages} package(s) await "
            "the seal of each file on its own (`custos seal files`, or the worker's seal job)",
            markup=False,
        )
    else:
        out.print("file seals: every version's files are sealed on their own", markup=False)
    sealed = (
        f"last sealed checkpoint at entry {st.last_sealed_checkpoint} (written "
        f"{st.last_checkpoint_at.isoformat()})"
        if st.last_sealed_checkpoint and st.last_checkpoint_at
        else "no checkpoint sealed yet"
    )
    out.print(f"custody log: {st.log_entries} entries; {sealed}", markup=False)


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{int(seconds)} seconds"
