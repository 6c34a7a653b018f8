"""The ``custos`` command line: the root app, shared options, output and the error handler.

Commands are thin: parse, call one service function, render. Sub-apps of the function
packages (ingest, ...) are registered through the ``custos.commands`` entry points in
``pyproject.toml``, so this core module never imports upward.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.core
import typer.main
from rich.console import Console
from rich.markup import escape

from archive.errors import EXIT_CODES, CustosError, InputRejected
from archive.findings import Finding

if TYPE_CHECKING:
    from typer._click import Command, Context

    from archive.config import Settings
    from archive.proofs.seal import SealReport
    from archive.services import Services

T = TypeVar("T")


class _RootGroup(typer.core.TyperGroup):
    """The root command group. The sub-apps of the function packages are loaded only when a
    command outside the core is named, or when every command is listed (``--help``): the core
    commands (``custos status``, ...) start without importing them."""

    def list_commands(self, ctx: Context) -> list[str]:
        self._load_sub_apps()
        return super().list_commands(ctx)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] not in self.commands:
            self._load_sub_apps()
        return super().resolve_command(ctx, args)

    def _load_sub_apps(self) -> None:
        if _register_sub_apps():
            self.commands = typer.main.get_group(app).commands


app = typer.Typer(
    name="custos",
    help="Custos: a long-term preservation archive for evidence. BagIt in, OCFL out, "
    "every step recorded.",
    cls=_RootGroup,
    no_args_is_help=True,
    epilog="Exit status: "
    + "; ".join(f"{code} {meaning.split(':')[0]}" for code, meaning in EXIT_CODES.items())
    + " (archive/errors.py).",
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The catalog database schema.", no_args_is_help=True)
catalog_app = typer.Typer(help="The catalog as a whole.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained custody log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(catalog_app, name="catalog")
app.add_typer(audit_app, name="audit")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@dataclass
class State:
    data_dir: Path | None = None
    config: Path | None = None
    _services: Services | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        from archive.config import load_settings

        return load_settings(data_dir=self.data_dir, config_file=self.config)

    def services(self) -> Services:
        from archive.services import open_services

        if self._services is None:
            self._services = open_services(self.settings())
            for line in self._services.recovered:
                err.print(f"[yellow]recovery:[/] {escape(line)}")
        return self._services


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data folder holding the catalog and the storage root "
            "(env CUSTOS_DATA_DIR; default ./custos-data).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML settings file (env CUSTOS_CONFIG; default DATA_DIR/custos.toml if present).",
        ),
    ] = None,
) -> None:
    ctx.obj = State(data_dir, config)
    ctx.call_on_close(lambda: ctx.obj._services.close() if ctx.obj._services else None)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def fail(exc: CustosError, as_json: bool) -> typer.Exit:
    """Report an error on stderr (and as JSON on stdout when asked); return the exit."""
    err.print(f"[red]error:[/] {escape(exc.diagnostics())}")
    if as_json:
        body: dict[str, Any] = {
            "status": "error",
            "error": exc.__class__.__name__,
            "message": exc.message,
            "hint": exc.hint,
        }
        if isinstance(exc, InputRejected):
            body["status"] = "refused"
            body["findings"] = [f.as_dict() for f in exc.findings]
        emit_json(body)
    return typer.Exit(exc.exit_code)


def run(as_json: bool, fn: Callable[[], T]) -> T:
    """Call a service; turn a :class:`CustosError` into its message and exit status."""
    try:
        return fn()
    except CustosError as exc:
        raise fail(exc, as_json) from None


@contextmanager
def progress_bar(
    label: str, total: int | None, enabled: bool, *, unit: str = "bytes"
) -> Iterator[Callable[[int], None] | None]:
    """A Rich progress bar on stderr when it is a terminal (in ``unit``: bytes or items);
    otherwise nothing. Yields the function that advances it."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        if unit == "bytes"
        else (MofNCompleteColumn(), TimeRemainingColumn())
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), *columns, console=err, transient=True
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def operator() -> str:
    """The acting operator, as far as a command knows: the system account running it (named
    in the custody events of what it changes)."""
    try:
        account = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        account = f"uid {os.geteuid()}"
    return f"operator {account} (system account)"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# --- core commands -------------------------------------------------------------------------


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
    total = sum(1 for _ in services.store.iter_objects())
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
        out.print(f"indexed {len(report.indexed)} package(s) from {services.store.root}")
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


seal_app = typer.Typer(
    help="Timestamp what awaits a seal; `custos seal files` seals each file on its own; "
    "`custos seal renew` renews evidence records.",
    invoke_without_command=True,
)
app.add_typer(seal_app, name="seal")


@seal_app.callback()
def seal_cmd(
    ctx: typer.Context,
    retry_for: Annotated[
        float,
        typer.Option(
            "--retry-for",
            metavar="SECONDS",
            help="When no authority answers, try again with back-off (tsa.retry_base doubling "
            "up to tsa.retry_max) for up to this long.",
            min=0,
        ),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Timestamp every manifest awaiting its seal (RFC 3161 token, RFC 4998 evidence records).

    Also seals the custody log's head, and each file of up to 200,000 files' worth of versions
    awaiting their file seal (`custos seal files` seals them all). Exit status 75 when no
    authority answered (the attempt is recorded; the manifests stay pending)."""
    if ctx.invoked_subcommand is not None:
        return
    from archive.proofs.seal import Backlog, seal_now, seal_with_retry

    def waiting(state: Backlog) -> None:
        if not as_json and state.next_attempt:
            err.print(
                f"[yellow]no authority answered[/] ({state.failures} attempt(s)); next try at "
                f"{state.next_attempt.isoformat()}"
            )

    services = run(as_json, state(ctx).services)
    if retry_for > 0:
        report = run(as_json, lambda: seal_with_retry(services, within=retry_for, on_wait=waiting))
    else:
        report = run(as_json, lambda: seal_now(services))
    result = report.as_dict()
    if as_json:
        emit_json({"status": "ok", **result})
        return
    _print_sealed(report)


def _print_sealed(report: SealReport) -> None:
    result = report.as_dict()
    if not result["sealed"]:
        out.print("nothing awaits a seal", markup=False)
    else:
        out.print(f"sealed {report.summary()}", markup=False)
    for t in result["tokens"]:
        line = f"  token from {t['tsa']} at {t['gen_time']} (serial {t['serial']})"
        out.print(line, markup=False)
    for failure in result["failures"]:
        err.print(f"[yellow]not answered:[/] {escape(failure)}")


@seal_app.command("files")
def seal_files_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Seal each file of every version not yet sealed file by file: the proof a court bundle
    gives for one file without naming any other. New deposits get it with their seal; this
    brings an archive sealed before then up to date (the worker's seal job does too, a batch
    at a time). Exit status 75 when no authority answered (what was sealed stays sealed)."""
    from archive.proofs.seal import files_backlog, seal_now

    services = run(as_json, state(ctx).services)
    with services.sessions() as session:
        versions, _ = files_backlog(session, services.settings.proofs.algorithm)
    with progress_bar("sealing versions", versions, not as_json, unit="items") as advance:
        report = run(
            as_json,
            lambda: seal_now(
                services,
                manifests=False,
                files=None,
                progress=advance,
            ),
        )
    if as_json:
        emit_json({"status": "ok", **report.as_dict()})
        return
    _print_sealed(report)


@seal_app.command("renew")
def seal_renew_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Renew evidence records (RFC 4998 §5.2) before their TSA certificates expire, and rehash
    those resting on an algorithm the proof policy retires (settings `proofs.*`).

    Exit status 3 if any record has lapsed (its TSA certificate expired before it was
    renewed); 75 if renewals were due and no authority answered."""
    from archive.proofs.renew import renew

    services = run(as_json, state(ctx).services)
    report = run(as_json, lambda: renew(services))
    if as_json:
        emit_json({"status": "ok" if not report.lapsed else "lapsed", **report.as_dict()})
    else:
        kinds: dict[str, int] = {}
        for r in report.renewed:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        done = ", ".join(f"{n} {k} renewal(s)" for k, n in sorted(kinds.items())) or "none due"
        out.print(f"{report.checked} current evidence record(s) checked; {done}", markup=False)
        for tsa, when, serial in report.tokens:
            out.print(f"  token from {tsa} at {when.isoformat()} (serial {serial})", markup=False)
        for record, why in report.lapsed:
            err.print(f"[red]lapsed:[/] {escape(record)}: {escape(why)}")
        for record, why in report.superseded:
            err.print(f"[yellow]superseded:[/] {escape(record)}: {escape(why)}")
    if report.lapsed:
        raise typer.Exit(3)


@app.command("status")
def status_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Holdings, characterisation pending (formats, text) and jobs queued, replication
    (packages safely stored), fixity coverage, the seal backlog (and its age), and the
    custody log's last sealed checkpoint."""
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
    queued = "unknown (the queue did not answer)" if st.jobs_queued is None else st.jobs_queued
    if st.unidentified or st.text_pending:
        out.print(
            f"characterisation backlog: {st.unidentified} payload file(s) in "
            f"{st.unidentified_packages} package(s) not identified yet, {st.text_pending} public "
            f"file(s) not yet read for text; jobs queued: {queued} (a worker, `custos serve` "
            "or `custos identify` does this work)",
            markup=False,
        )
    else:
        out.print(f"characterisation: nothing pending; jobs queued: {queued}", markup=False)
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


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    package: Annotated[
        str | None, typer.Argument(help="Package id, or a unique prefix of its UUID.")
    ] = None,
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Files to prove (e.g. data/report.pdf); default: every seal."),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            metavar="DIR",
            help="Verify a court bundle written by `custos export` instead, on its own.",
        ),
    ] = None,
    trust: Annotated[
        list[Path] | None,
        typer.Option(
            "--trust",
            metavar="PEM",
            help="With --bundle: the trust anchor(s) to check the timestamps against "
            "(default: those inside the bundle, whose fingerprints you must then compare).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove, step by step, that stored files are what was received, and when.

    Exit status 0 only if every step holds; 3 if any fails."""
    if bundle is not None:
        from archive.proofs.bundle import verify_bundle

        anchors = [p.read_bytes() for p in trust] if trust else None
        report: Any = run(as_json, lambda: verify_bundle(bundle, trust=anchors))
    else:
        from archive.proofs.verify import verify_package

        if package is None:
            usage = InputRejected(
                "nothing to verify",
                [Finding("VERIFY-NOTHING", "error", "no package and no --bundle given")],
                hint="name a package (custos list), or give --bundle DIR",
            )
            raise fail(usage, as_json)
        name = package
        services = run(as_json, state(ctx).services)
        report = run(as_json, lambda: verify_package(services, name, list(paths or [])))
    if as_json:
        emit_json({"status": "ok" if report.ok else "failed", **report.as_dict()})
    else:
        for n, step in enumerate(report.steps, start=1):
            mark = "[green]passed[/]" if step.ok else "[red]FAILED[/]"
            out.print(f"{n}. {mark} {escape(step.text)}")
        out.print("verified" if report.ok else "NOT verified", markup=False)
    if not report.ok:
        raise typer.Exit(3)


@audit_app.command("verify")
def audit_verify_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Check every entry of the custody log, its head, and its sealed checkpoints in storage.

    Exit status 0 only if nothing was deleted, inserted, moved, altered or rewritten; 3 if
    anything was."""
    from archive.audit import verify_log

    services = run(as_json, state(ctx).services)
    with progress_bar("checking the custody log", None, not as_json, unit="items") as advance:
        report = run(as_json, lambda: verify_log(services, progress=advance))
    if as_json:
        emit_json({"status": "ok" if report.ok else "failed", **report.as_dict()})
    else:
        out.print(f"{report.entries} entries in {len(report.chains)} chain(s) checked")
        if report.last_sealed:
            seq, when = report.last_sealed
            out.print(f"last sealed checkpoint: entry {seq}, timestamped {when}", markup=False)
        for note in report.notes:
            out.print(f"note: {note}", markup=False)
        for problem in report.problems:
            out.print(f"[red]FAILED[/] {escape(problem.text)}")
        out.print("custody log verified" if report.ok else "custody log NOT verified")
    if not report.ok:
        raise typer.Exit(3)


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
                "storage_path": str(services.store.object_root(d.summary.object_path)),
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
    where = services.store.object_root(s.object_path)
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


_registered = False


def get_app() -> typer.Typer:
    """The full command line: the core commands plus every registered sub-app (once)."""
    _register_sub_apps()
    return app


def _register_sub_apps() -> bool:
    """Register the sub-apps of the ``custos.commands`` entry points, unless done already;
    say whether this call did."""
    global _registered
    if _registered:
        return False
    for ep in sorted(entry_points(group="custos.commands"), key=lambda e: e.name):
        ep.load()(app)
    _markdown_help(app)
    _registered = True
    return True


def _markdown_help(group: typer.Typer) -> None:
    """Help read as Markdown in every group: a group's list of commands then joins the lines
    of each command's first paragraph (Rich's markup mode kept the docstrings' line breaks
    there, cutting sentences mid-line), and `code` is shown as code rather than with its
    backticks. No help text uses Rich markup (square brackets would be taken for it)."""
    group.rich_markup_mode = "markdown"
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _markdown_help(sub.typer_instance)


def main() -> None:
    """``custos``: the core commands run without loading the sub-apps (see :class:`_RootGroup`)."""
    _markdown_help(app)
    app()
