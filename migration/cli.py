"""``custos migrate plan|run|report``: thin over :mod:`migration.service`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from archive.cli import JsonOpt, emit_json, err, human_bytes, out, progress_bar, run, state
from archive.errors import CustosError, StorageError

# The migration service (and the seal, the catalog) are imported by the commands that call
# them, so that `custos --help` and the other commands start without them.
if TYPE_CHECKING:
    from archive.services import Services
    from migration.service import RunReport

migrate_app = typer.Typer(
    help="Preservation planning and format migration, as the format policy says "
    "(policies/formats.toml).",
    no_args_is_help=True,
)


@migrate_app.command("plan")
def plan_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Per format held: files, bytes, PRONOM name, the action and the risk; nothing runs."""
    from migration import service

    services = run(as_json, state(ctx).services)
    result = run(as_json, lambda: service.plan_formats(services))
    if as_json:
        emit_json({"status": "ok", **result.as_dict()})
        return
    if not result.rows:
        out.print("no payload files held yet", markup=False)
    else:
        table = Table(
            "PUID", "format", "files", "size", "action", "risk", "preserved", "access",
            "failed", "to do", title=f"format plan ({result.policy})",
        )  # fmt: skip
        for r in result.rows:
            table.add_row(
                *map(
                    Text,
                    (
                        r.puid or "-",
                        r.format_name,
                        str(r.files),
                        human_bytes(r.bytes),
                        r.action,
                        r.risk,
                        str(r.preserved),
                        str(r.access_copies),
                        str(r.failed),
                        str(r.to_do),
                    ),
                )
            )
        out.print(table)
    for t in result.tools:
        if not t.available:
            err.print(f"[yellow]tool missing:[/] {escape(t.detail)}")


def run_cmd(
    ctx: typer.Context,
    package: Annotated[
        str | None,
        typer.Argument(help="Package id or unique UUID prefix; omit for every package."),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Try again the copies whose migration failed under this policy version.",
        ),
    ] = False,
    seal: Annotated[
        bool,
        typer.Option(
            "--seal/--no-seal",
            help="Timestamp the new versions' inventories before exiting when a TSA answers.",
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Make the preservation and access copies the policy asks for.

    Originals are never altered; each package's valid copies go into one new OCFL version;
    PDF/A copies carry the archive seal (PAdES B-LTA) and are stored only with it.
    Exit status 0 when every copy was made, 5 when some failed (each failure is recorded),
    75 when some were deferred because no timestamp authority answered (the next run makes
    them)."""
    from migration import service

    services = run(as_json, state(ctx).services)
    todo = run(
        as_json,
        lambda: service.pending_tasks(services, package, retry_failed=retry_failed),
    )
    with progress_bar("migrating", len(todo), not as_json, unit="items") as tick:
        result = run(as_json, lambda: service.run_tasks(services, todo, tick))
    body: dict[str, Any] = {"status": "ok", **result.as_dict()}
    if seal and any(p.version is not None for p in result.packages):
        body["seal"] = _seal_after_commit(services, as_json)
    failed, deferred = body["failed"], body["deferred"]
    if failed:
        body["status"] = "failures"
    elif deferred:
        body["status"] = "deferred"
    if as_json:
        emit_json(body)
    else:
        _say(result)
    if failed:
        raise typer.Exit(5)
    if deferred:
        raise typer.Exit(75)  # try again later (archive.errors.EXIT_CODES)


def _say(result: RunReport) -> None:
    if not result.packages:
        out.print("nothing to migrate: every copy the policy asks for is stored", markup=False)
        return
    for p in result.packages:
        where = f" (version v{p.version})" if p.version else ""
        out.print(
            f"{p.package_id}: {p.succeeded} cop{'y' if p.succeeded == 1 else 'ies'} stored"
            f"{where}, {p.failed} failed" + (f", {p.deferred} deferred" if p.deferred else ""),
            markup=False,
        )
        for a in p.attempts:
            if a.outcome != "success":
                label = "[red]failed:[/]" if a.outcome == "failure" else "[yellow]deferred:[/]"
                err.print(
                    f"{label} {escape(a.task.file.logical_path)} "
                    f"({escape(a.task.pathway_name)}): {escape(a.reason)}"
                )


def _seal_after_commit(services: Services, quiet: bool) -> dict[str, Any]:
    """The copies are stored: a TSA that does not answer leaves the inventories pending."""
    from archive.proofs.seal import seal_now

    try:
        result = seal_now(services).as_dict()
    except CustosError as exc:
        err.print(
            f"[yellow]not sealed yet:[/] {escape(exc.diagnostics())}\n"
            "  the copies are stored; their inventories await `custos seal`"
        )
        return {"status": "pending", "message": exc.message}
    return {"status": "sealed", **result}


def report_cmd(
    ctx: typer.Context,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write the report as an HTML page."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The risk report: formats held, counts, bytes, PRONOM names, actions, risks, and what
    has been migrated."""
    from migration import service
    from migration.report import render_html

    services = run(as_json, state(ctx).services)
    result = run(as_json, lambda: service.report(services))
    if html is not None:

        def write() -> None:
            try:
                html.write_text(render_html(result), encoding="utf-8")
            except OSError as exc:
                raise StorageError(
                    f"cannot write the report to {html}: {exc}",
                    hint="choose a writable path for --html",
                ) from exc

        run(as_json, write)
    data = result.as_dict()
    if as_json:
        emit_json({"status": "ok", **data, "html": str(html) if html else None})
        return
    t = data["totals"]
    out.print(
        f"{result.policy}: {t['files']} payload files ({human_bytes(t['bytes'])}); "
        f"{t['preserved']} preservation and {t['access_copies']} access copies stored, "
        f"{t['failed']} failed, {t['to_do']} to do",
        markup=False,
    )
    table = Table("PUID", "format", "files", "size", "action", "risk", title="formats held")
    for r in result.rows:
        table.add_row(
            *map(
                Text,
                (
                    r.puid or "-",
                    r.format_name,
                    str(r.files),
                    human_bytes(r.bytes),
                    r.action,
                    r.risk,
                ),
            )
        )
    out.print(table)
    if html is not None:
        err.print(f"report written to {escape(str(html))}")


migrate_app.command("run")(run_cmd)
migrate_app.command("report")(report_cmd)


def register(app: typer.Typer) -> None:
    app.add_typer(migrate_app, name="migrate")
