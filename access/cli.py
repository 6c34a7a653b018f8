"""``custos export``: thin over :mod:`access.export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from access.export import export
from archive.cli import JsonOpt, emit_json, err, human_bytes, out, progress_bar, run, state


def export_cmd(
    ctx: typer.Context,
    package: Annotated[str, typer.Argument(help="Package id, or a unique prefix of its UUID.")],
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Files to export (e.g. data/report.pdf); default: every public one."),
    ] = None,
    to: Annotated[Path, typer.Option("--to", help="A new (or empty) folder for the bundle.")] = (
        Path("bundle")
    ),
    requester: Annotated[
        str, typer.Option(help="Who asked: the justice body or person the bundle is for.")
    ] = "",
    purpose: Annotated[str, typer.Option(help="Why: the request the bundle answers.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Write a court bundle: a BagIt bag with the files, the sealed manifests that list them,
    their evidence records, tokens and TSA certificates, the custody history and VERIFY.txt.

    Only public material can be exported until registrar decisions exist. The export is
    recorded as a custody event. Exit status 2 if the request is refused."""
    services = run(as_json, state(ctx).services)
    with progress_bar("exporting", None, not as_json) as advance:
        result = run(
            as_json,
            lambda: export(
                services,
                package,
                list(paths or []),
                to=to,
                requester=requester,
                purpose=purpose,
                progress=advance,
            ),
        )
    if as_json:
        emit_json({"status": "exported", **result.as_dict()})
        return
    out.print(
        f"exported {len(result.files)} file(s) ({human_bytes(result.payload_bytes)}), "
        f"{result.manifests} sealed manifest(s) and {result.records} evidence record(s) to "
        f"{result.bundle}",
        markup=False,
    )
    if result.left_out:
        err.print(f"[yellow]left out:[/] {result.left_out} file(s) that are not public")
    out.print(f"check it: custos verify --bundle {escape(str(result.bundle))}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
