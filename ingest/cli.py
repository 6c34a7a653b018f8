"""``custos ingest``: thin over :func:`ingest.service.ingest`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from archive.cli import JsonOpt, byte_progress, emit_json, err, human_bytes, out, run, state
from ingest import service
from ingest.unpack import source_size


def ingest_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A bag: folder, .zip, .tar or .tar.gz.")],
    depositor: Annotated[str, typer.Option(help="The organisation handing the bag over.")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a bag and store it as a new package (refused bags exit with status 2)."""
    services = run(as_json, state(ctx).services)
    with byte_progress(f"receiving {path.name}", source_size(path), not as_json) as tick:
        result = run(
            as_json,
            lambda: service.ingest(services, path, depositor=depositor, progress=tick),
        )
    if as_json:
        emit_json(result.as_dict())
        return
    if result.status == "already-held":
        err.print(
            f"[yellow]already held:[/] the same payload was deposited as {result.deposit_id}; "
            "nothing was stored twice"
        )
        out.print(result.package_id)
        return
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(w.render())}")
    err.print(
        f"stored {result.payload_files} files ({human_bytes(result.payload_bytes)}) "
        f"from BagIt {result.bagit_version} bag as:"
    )
    out.print(result.package_id)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)
