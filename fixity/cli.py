"""``custos replicate``, ``custos fixity …`` and ``custos worker``: thin over the services."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from archive.cli import JsonOpt, emit_json, err, human_bytes, out, progress_bar, run, state
from fixity import replication


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
    """Copy packages to the locations the replication policy requires, read every copy back,
    and record it.

    Exit status 0 when every package named (or every package) is safely stored afterwards,
    1 otherwise (each reason on stderr)."""
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
        for pid, loc, why in report.failures:
            err.print(f"[red]not copied:[/] {escape(pid)} to {escape(loc)}: {escape(why)}")
        for pid, st in report.states.items():
            out.print(f"{pid}: {st['summary']}", markup=False)
        if not report.states:
            out.print("every package is safely stored", markup=False)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("replicate")(replicate_cmd)
