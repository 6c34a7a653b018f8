"""``custos db upgrade``, ``custos catalog rebuild``, ``custos list`` and ``custos show``: the
catalog as a whole, and the packages it holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from archive.cli.shell import (
    JsonOpt,
    app,
    emit_json,
    err,
    human_bytes,
    out,
    progress_bar,
    run,
    state,
)

if TYPE_CHECKING:
    pass

db_app = typer.Typer(help="The catalog database schema.", no_args_is_help=True)
catalog_app = typer.Typer(help="The catalog as a whole.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(catalog_app, name="catalog")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create or upgrade the catalog schema (Alembic migrations)."""
    from archive.catalog.session import make_engine, upgrade

    def go() -> tuple[str | None, str | None]:
        settings = state(ctx).settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.catalog_url)
        try:
            return upgrade(engine)
        finally:
            engine.dispose()

    before, after = run(as_json, go)
    if as_json:
        emit_json({"status": "ok", "from": before, "to": after})
    else:
        out.print(f"catalog schema at revision {after} (was {before or 'empty'})")


@catalog_app.command("rebuild")
def catalog_rebuild(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Recreate the catalog from the storage root alone. Exit status 5 if some objects could
    not be indexed (each listed)."""
    from archive.catalog.rebuild import rebuild

    services = run(as_json, state(ctx).services)
    total = sum(1 for _ in services.primary.iter_objects())
    with progress_bar("indexing objects", total, not as_json, unit="items") as tick:
        report = run(as_json, lambda: rebuild(services, progress=tick))
    if as_json:
        emit_json(
            {
                "status": "ok" if not report.failed else "incomplete",
                "indexed": report.indexed,
                "failed": [{"object_path": p, "reason": r} for p, r in report.failed],
                "earlier_custody_logs": report.earlier_logs,
            }
        )
    else:
        where = services.primary.root or services.primary.uri
        out.print(f"indexed {len(report.indexed)} package(s) from {where}")
        for chain in report.earlier_logs:
            err.print(
                f"[yellow]note:[/] the custody log restarts here; the sealed checkpoints of the "
                f"earlier log {chain} stay in storage"
            )
        for path, reason in report.failed:
            err.print(f"[red]not indexed:[/] {escape(path)}: {escape(reason)}")
    if report.failed:
        raise typer.Exit(5)  # partly done (archive.errors.EXIT_CODES)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    depositor: Annotated[str | None, typer.Option(help="Only this depositor's packages.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the packages held."""
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    from archive.catalog.queries import list_packages

    services = run(as_json, state(ctx).services)
    with services.sessions() as session:
        rows = list_packages(session, depositor=depositor)
    if as_json:
        emit_json({"status": "ok", "packages": [_summary_dict(r) for r in rows]})
        return
    if not rows:
        out.print(
            "no packages held yet; deposit one with `custos ingest PATH --depositor NAME`",
            markup=False,
        )
        return
    # Package ids are never cut (they are what `custos show` takes): a table when every
    # column fits without breaking a word, else one block per package, its id on a line.
    table = Table("package", "depositor", "title", "stored", "files", "size", "version")
    table.columns[0].no_wrap = True
    for r in rows:
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    r.id,
                    r.depositor,
                    r.title,
                    f"{r.created_at:%Y-%m-%d %H:%M}",
                    r.files,
                    human_bytes(r.bytes),
                    f"v{r.head}",
                )
            )
        )
    if Measurement.get(out, out.options.update_width(10_000), table).minimum <= out.width:
        out.print(table)
        return
    for r in rows:
        out.print(r.id, markup=False)
        if r.title:
            out.print(f"  {r.title}", markup=False)
        out.print(
            f"  {r.depositor}; stored {r.created_at:%Y-%m-%d %H:%M}; {r.files} file(s), "
            f"{human_bytes(r.bytes)}; v{r.head}",
            markup=False,
        )


def _summary_dict(r: Any) -> dict[str, Any]:
    return {
        "package_id": r.id,
        "depositor": r.depositor,
        "title": r.title,
        "created_at": r.created_at,
        "head": r.head,
        "payload_files": r.files,
        "payload_bytes": r.bytes,
        "object_path": r.object_path,
    }


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    package: Annotated[str, typer.Argument(help="Package id, or a unique prefix of its UUID.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one package: its deposit, whether it is safely stored (its replicas), versions,
    files and events."""
    from rich.table import Table
    from rich.text import Text

    from archive.catalog.queries import package_detail
    from archive.replicas import replication_state

    services = run(as_json, state(ctx).services)
    with services.sessions() as session:
        d = run(as_json, lambda: package_detail(session, package))
        copies = replication_state(session, d.summary.id)
    if as_json:
        emit_json(
            {
                "status": "ok",
                **_summary_dict(d.summary),
                "deposit_id": d.deposit_id,
                "source_name": d.source_name,
                "bagit_version": d.bagit_version,
                "fingerprint": d.fingerprint,
                "storage_path": services.primary.object(d.summary.object_path).where(),
                "versions": [
                    v.__dict__ if hasattr(v, "__dict__") else _asdict(v) for v in d.versions
                ],
                "files": [_asdict(f) for f in d.files],
                "access": [_asdict(a) for a in d.access],
                "replication": copies.as_dict(),
                "events": [_event_dict(e) for e in d.events],
            }
        )
        return
    s = d.summary
    where = services.primary.object(s.object_path).where()
    lines = [
        f"{s.id}  {s.title}",
        f"depositor {s.depositor} · deposit {d.deposit_id} · from {d.source_name} · "
        f"BagIt {d.bagit_version}",
        f"stored {s.created_at:%Y-%m-%d %H:%M:%S %Z} at {where}",
        f"{s.files} payload files, {human_bytes(s.bytes)} · fingerprint {d.fingerprint}",
    ]
    lines.append(copies.describe())
    for line in lines:
        out.print(Text(line))
    if copies.replicas:
        rt = Table("location", "where", "version", "status", "read back", title="replicas")
        for rep in copies.replicas:
            rt.add_row(
                *map(
                    Text,
                    (
                        rep.location,
                        rep.uri,
                        f"v{rep.version}",
                        rep.status,
                        f"{rep.verified_at:%Y-%m-%d %H:%M:%S}" if rep.verified_at else "-",
                    ),
                )
            )
        out.print(rt)
    vt = Table("version", "created", "message", "inventory sha512", title="versions")
    for v in d.versions:
        vt.add_row(
            *map(
                Text,
                (
                    f"v{v.number}",
                    f"{v.created_at:%Y-%m-%d %H:%M:%S}",
                    v.message,
                    v.inventory_sha512[:16] + "…",
                ),
            )
        )
    out.print(vt)
    ft = Table("path", "size", "sha512", "format", title="payload files")
    for f in d.files:
        if f.role != "payload":
            continue
        fmt = f"{f.puid} {f.mime_type or ''}".strip() if f.puid else "not identified"
        ft.add_row(
            *map(
                Text,
                (
                    f.logical_path.removeprefix("bag/"),
                    human_bytes(f.size),
                    f.sha512[:16] + "…",
                    fmt,
                ),
            )
        )
    out.print(ft)
    at = Table("path", "tier", "sunset", "then", "consent", "legal basis", title="access")
    for a in d.access:
        at.add_row(
            *map(
                Text,
                (
                    a.path or "(the package)",
                    a.tier or "(as above)",
                    a.sunset.isoformat() if a.sunset else "-",
                    a.successor or "-",
                    ", ".join(a.consent) if a.consent else "none recorded",
                    a.legal_basis,
                ),
            )
        )
    out.print(at)
    et = Table("when", "event", "outcome", "detail", title="events")
    for e in d.events:
        et.add_row(*map(Text, (f"{e.occurred_at:%Y-%m-%d %H:%M:%S}", e.type, e.outcome, e.detail)))
    out.print(et)


def _asdict(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def _event_dict(e: Any) -> dict[str, Any]:
    return {
        "uuid": e.uuid,
        "type": e.type,
        "occurred_at": e.occurred_at,
        "agent": e.agent,
        "outcome": e.outcome,
        "detail": e.detail,
        "links": [_asdict(lk) for lk in e.links],
    }


storage_app = typer.Typer(help="The primary copy's storage.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")


@storage_app.command("migrate-primary")
def storage_migrate_primary(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", metavar="NAME", help="The [locations.NAME] to move it to.")
    ],
    final: Annotated[
        bool,
        typer.Option(
            "--final",
            help="Copy what changed since the last run while deposits and new versions wait "
            "(the commit lock), then say how to switch.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy the local storage root, the primary copy, to a location several hosts can share
    (an S3 bucket with Object Lock), every file read back, while the archive keeps serving
    from the local one. Run it, then again with --final; then set primary_location = NAME on
    every host and restart its processes. A stopped run is started again where it was."""
    from archive.primary_move import migrate_primary

    services = run(as_json, state(ctx).services)
    with progress_bar("copying the primary", None, not as_json) as tick:
        report = run(as_json, lambda: migrate_primary(services, to, final=final, progress=tick))
    body = report.as_dict()
    if as_json:
        emit_json({"status": "ok", **body})
        return
    out.print(
        f"{body['copied']} of {body['files']} file(s) copied ({human_bytes(body['bytes_copied'])})"
        f", {body['objects']} object(s), to {to} ({body['uri']})",
        markup=False,
    )
    out.print(f"next: {escape(body['next'])}")
