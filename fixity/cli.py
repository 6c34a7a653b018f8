"""``custos replicate``, ``custos fixity …`` and ``custos worker``: thin over the services."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from archive.cli import JsonOpt, emit_json, err, human_bytes, out, progress_bar, run, state


def replicate_cmd(
    ctx: typer.Context,
    package: Annotated[
        str | None,
        typer.Argument(
            help="Package id or unique UUID prefix; omit for every package not safely stored."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy packages to the locations the replication policy requires (each payload file where
    its own tier's rule puts it), read every copy back, and record it; add evidence records
    sealed or renewed since a copy was made. Without PACKAGE, also copy the custody log's
    checkpoints, their evidence records and trust anchors (extensions/custos-custody-log/ in
    the storage root) to every configured location, each read back before it is recorded.

    Exit status 0 when every package named (or every package) is safely stored afterwards
    and no copy failed, 5 otherwise (each reason on stderr)."""
    from fixity import replication

    services = run(as_json, state(ctx).services)
    with progress_bar("replicating", None, not as_json) as tick:
        report = run(as_json, lambda: replication.replicate(services, package, progress=tick))
    if as_json:
        emit_json({"status": "ok" if report.ok else "incomplete", **report.as_dict()})
    else:
        for pid, c in report.copied:
            out.print(
                f"{pid}: copy at {c.location} read back ({c.files} files, "
                f"{human_bytes(c.bytes)}; {c.written} written)",
                markup=False,
            )
        for c in report.log_copies:
            out.print(
                f"custody log: copy at {c.location} read back ({c.files} files: {c.kinds}; "
                f"{human_bytes(c.bytes)}; {c.written} written)",
                markup=False,
            )
        for pid, loc, why in report.failures:
            err.print(f"[red]not copied:[/] {escape(pid)} to {escape(loc)}: {escape(why)}")
        for pid, st in report.states.items():
            out.print(f"{pid}: {st['summary']}", markup=False)
        if not report.states:
            out.print("every package is safely stored", markup=False)
        if report.hint:
            err.print(f"hint: {report.hint}", markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(5)  # partly done (archive.errors.EXIT_CODES)


fixity_app = typer.Typer(
    help="Fixity: check every copy of every file, repair from good copies, report.",
    no_args_is_help=True,
)


@fixity_app.command("run")
def fixity_run_cmd(
    ctx: typer.Context,
    everything: Annotated[
        bool,
        typer.Option("--all", help="Check every copy now, not only those due in their cycle."),
    ] = False,
    sample: Annotated[
        int,
        typer.Option(
            "--sample", metavar="N", help="Check N copies picked at random instead.", min=0
        ),
    ] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", help="Stop after N copies.", min=1)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the copies due in their tier's cycle (policies/fixity.toml) of every stored file
    (content files, version inventories and sidecars, evidence records, trust anchors): read
    every byte, compare with the catalog's digests, repair damage from a copy that still
    verifies, and record a fixity check event per file per copy.

    Exit status 0 when every copy checked is intact or was repaired; 3 when a copy could not
    be repaired (no intact copy left, or the location refused), a primary inventory does not
    match the catalog, or a replica location could not be read; 74 when this host cannot read
    the primary copy (nothing is recorded for its copies, which are left for a host that can
    read them)."""
    from fixity.service import run_cycle, run_sample

    services = run(as_json, state(ctx).services)
    with progress_bar("checking copies", None, not as_json) as tick:
        if sample:
            report = run(as_json, lambda: run_sample(services, sample, progress=tick))
        else:
            report = run(
                as_json,
                lambda: run_cycle(services, full=everything, limit=limit, progress=tick),
            )
    if as_json:
        emit_json({"status": "ok" if report.ok else "failed", **report.as_dict()})
    else:
        out.print(
            f"{report.checked} copies checked ({human_bytes(report.bytes_read)} read); "
            f"{len(report.damage)} damaged, {len(report.repairs)} repaired, "
            f"{len(report.unrecoverable)} unrecoverable",
            markup=False,
        )
        for line in report.damage:
            err.print(f"[yellow]damaged:[/] {escape(line)}")
        for line in report.repairs:
            err.print(f"[green]repaired:[/] {escape(line)}")
        for line in report.unrecoverable + report.refused:
            err.print(f"[red]{escape(line)}[/]")
        for loc, why in report.unreachable.items():
            err.print(f"[red]not checked:[/] location {escape(loc)}: {escape(why)}")
    if report.primary_unreachable:
        raise typer.Exit(74)  # storage failed (archive.errors.EXIT_CODES)
    if not report.ok:
        raise typer.Exit(3)


@fixity_app.command("status")
def fixity_status_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Coverage: per location, copies tracked, checked within their cycle, never checked,
    damaged; the oldest check; copies left unrecoverable (content files by digest)."""
    from fixity.report import fixity_status

    services = run(as_json, state(ctx).services)
    with services.sessions() as session:
        found = fixity_status(session)
    cov = found.coverage
    if as_json:
        emit_json({"status": "ok", **found.as_dict()})
        return
    oldest = cov.oldest_check.isoformat() if cov.oldest_check else "never"
    out.print(
        f"{cov.covered} of {cov.expected} copies checked within their cycle; "
        f"{cov.tracked} tracked; oldest check: {oldest}; {cov.bad} damaged, "
        f"{len(found.unrecoverable)} unrecoverable",
        markup=False,
    )
    for u in found.unrecoverable:
        out.print(f"UNRECOVERABLE: {u.package_id} at {u.location}: {u.kind} {u.name}", markup=False)
    table = Table("location", "tracked", "in cycle", "never checked", "damaged", "oldest check")
    for c in cov.locations:
        table.add_row(
            c.location,
            str(c.tracked),
            str(c.covered),
            str(c.never_checked),
            str(c.bad),
            c.oldest_check.isoformat() if c.oldest_check else "never",
        )
    out.print(table)


def worker_cmd(
    ctx: typer.Context,
    schedule: Annotated[
        bool,
        typer.Option(
            "--schedule/--no-schedule",
            help="Also run the periodic jobs (characterisation of what is pending, due "
            "fixity cycles, sampling, replication, sealing, the daily renewal, the daily "
            "sunset run of `policies apply`, format migration when migration.every_minutes "
            "is set); with --no-schedule only take queued jobs.",
        ),
    ] = True,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Run the work that is queued (the outbox: identify, seal, replicate, "
            "migrate; and the queue's jobs) until none is left, then exit: for cron, tests "
            "and one machine with no worker running. Exit 5 when some of it failed (it stays "
            "queued, and is tried again).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run queued and scheduled jobs, one at a time, until stopped (SIGINT or SIGTERM), or
    with --until-idle until nothing queued is left.

    The work that deposits, new versions and tier changes queue (the outbox, in the catalog)
    runs in a thread beside the queue's consumer. Any number of workers may run against one
    catalog and one queue (PostgreSQL and Redis when on many machines; an outbox entry and
    fixity work are claimed, so no entry runs twice at once and no copy is checked twice in
    a cycle). On SQLite, workers on one machine take turns at each catalog write."""
    import logging

    from archive.jobs import run_until_idle, run_worker

    services = run(as_json, state(ctx).services)
    if until_idle:
        logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")

        def say(job: str, key: str) -> None:
            if not as_json:
                err.print(f"running {job}" + (f" of {key}" if key else ""), markup=False)

        report = run(as_json, lambda: run_until_idle(services, on_entry=say))
        if as_json:
            emit_json(
                {"status": "partly-done" if report.outbox.failed else "ok", **report.as_dict()}
            )
        else:
            out.print(
                f"ran {len(report.outbox.ran)} queued piece(s) of work and "
                f"{report.queued_jobs} job(s) of the queue",
                markup=False,
            )
            for job, key, when in report.outbox.deferred:
                out.print(f"put off: {job} {key} until {when:%Y-%m-%d %H:%M} UTC", markup=False)
            for job, key, why in report.outbox.failed:
                err.print(f"[red]failed:[/] {job} {key}: {escape(why)}")
            if report.outbox.failed:
                err.print("  the failed work stays queued and is tried again (`custos status`)")
        if report.outbox.failed:
            raise typer.Exit(5)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    q = services.settings.queue
    where = q.redis_url if q.backend == "redis" else str(services.settings.queue_path)
    run(
        False,
        lambda: run_worker(
            services,
            schedule=schedule,
            on_ready=lambda: err.print(f"worker ready: queue {q.backend} at {escape(where)}"),
        ),
    )


@fixity_app.command("report")
def fixity_report_cmd(
    ctx: typer.Context,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", metavar="FILE", help="Also write it as CSV.")
    ] = None,
    html_path: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write an HTML page (chart: inline SVG)."),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Only checks from this date (YYYY-MM-DD, UTC) on.", formats=["%Y-%m-%d"]),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The auditor's report: per location and tier, copies, files checked, bytes read,
    failures, repairs, unrecoverable copies and the oldest check; coverage over time."""
    from fixity.report import build_report, write_csv, write_html

    services = run(as_json, state(ctx).services)
    start = since.replace(tzinfo=UTC) if since else None
    with services.sessions() as session:
        report = build_report(session, since=start)
    if csv_path:
        run(as_json, lambda: write_csv(report, csv_path))
    if html_path:
        run(as_json, lambda: write_html(report, html_path))
    if as_json:
        emit_json({"status": "ok", **report.as_dict()})
        return
    table = Table(
        "location", "tier", "copies", "checked", "read", "failures", "repairs",
        "unrecoverable", "oldest check", title="fixity",
    )  # fmt: skip
    for r in report.rows:
        table.add_row(
            r.location, r.tier, str(r.copies), str(r.files_checked), human_bytes(r.bytes_read),
            str(r.failures), str(r.repairs), str(r.unrecoverable),
            r.oldest_check.isoformat() if r.oldest_check else "never",
        )  # fmt: skip
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("replicate")(replicate_cmd)
    app.add_typer(fixity_app, name="fixity")
    app.command("worker")(worker_cmd)
