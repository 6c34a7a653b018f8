"""``custos ingest``, ``custos identify`` and ``custos depositors``: thin over
:mod:`ingest.service` and :mod:`archive.depositors`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from archive.cli import (
    JsonOpt,
    emit_json,
    err,
    human_bytes,
    operator,
    out,
    progress_bar,
    run,
    state,
)
from archive.errors import CustosError

# The ingest services (and the seal, the queue, the catalog) are imported by the commands
# that call them, so that `custos --help` starts without them.
if TYPE_CHECKING:
    from archive.depositors import DepositorSummary, Registration
    from archive.services import Services
    from ingest.service import IngestResult


def ingest_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A bag: folder, .zip, .tar or .tar.gz.")],
    depositor: Annotated[
        str,
        typer.Option(
            help="The organisation handing the bag over: a registered depositor "
            "(`custos depositors list`)."
        ),
    ],
    new_depositor: Annotated[
        bool,
        typer.Option(
            "--new-depositor",
            help="Register --depositor first (as `custos depositors add` does), for its first "
            "deposit; a depositor already registered is kept as it is.",
        ),
    ] = False,
    identify: Annotated[
        bool,
        typer.Option(
            "--identify/--no-identify",
            help="Identify formats (PRONOM) and extract the text of public documents right "
            "after the package is stored; with --no-identify that work is queued for "
            "`custos worker` (or `custos serve`, or run `custos identify`).",
        ),
    ] = True,
    seal: Annotated[
        bool,
        typer.Option(
            "--seal/--no-seal",
            help="Timestamp the new manifests before exiting when a TSA answers; "
            "otherwise they wait for `custos seal`.",
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Validate a bag and store it as a new package.

    The depositor must be registered (`custos depositors add`), or registered by this command
    with --new-depositor: a name that is not is refused before anything is read, naming the
    registered depositors with a close name.

    Exit status: 0 stored (or already held: the same payload is never stored twice),
    65 refused (every problem is listed on stderr), 74 storage failed (a full or read-only
    disk: never the bag's fault), other non-zero values for errors (`custos --help`).
    """
    from ingest import service
    from ingest.extract import tool_missing_hint
    from ingest.unpack import source_size

    services = run(as_json, state(ctx).services)
    with progress_bar(f"receiving {path.name}", source_size(path), not as_json) as tick:
        result = run(
            as_json,
            lambda: service.ingest(
                services,
                path,
                depositor=depositor,
                new_depositor=new_depositor,
                by=operator(),
                progress=tick,
            ),
        )
    report = result.as_dict()
    if not as_json:
        if result.registration is not None:
            _say_registered(result.registration)
        _say_stored(result)
    # The deposit's commit queued its follow-up work in the outbox (the same work an API
    # deposit queues); this command does the characterisation and the seal itself, at once,
    # and leaves replication to a worker (or `custos serve`, or `custos worker --until-idle`).
    # An already-held package may still await identification (an earlier run was stopped).
    done: set[str] = set()
    if identify and services.settings.identify_formats:
        report["identification"] = _identify_after_commit(services, result.package_id, as_json)
        if services.settings.characterisation.extract_text:
            report["texts"] = texts = _extract_after_commit(services, result.package_id)
            if texts and not as_json:
                err.print(
                    "text of public files, for the search: "
                    + ", ".join(f"{k} {n}" for k, n in sorted(texts.items()))
                )
                if hint := tool_missing_hint(texts):
                    err.print(f"  {hint}", markup=False)
        if report["identification"]["status"] == "ok":
            done.add("characterise")
    else:
        report["identification"] = {"status": "queued"}
        if not as_json:
            err.print(
                "formats and text: queued for a worker (or `custos serve`); "
                f"`custos identify {result.package_id}` does it now"
            )
    if seal:
        report["seal"] = _seal_after_commit(services, as_json)
        if report["seal"]["status"] == "sealed":
            done.add("seal")
    report["queued"] = _settle(services, result.package_id, done, as_json)
    report["replication"] = {
        "status": "queued" if ("replicate", result.package_id) in report["queued"] else "done"
    }
    if as_json:
        report["queued"] = [{"job": j, "key": k} for j, k in report["queued"]]
        emit_json(report)


def _settle(
    services: Services, package_id: str, done: set[str], quiet: bool
) -> list[tuple[str, str]]:
    """Close the outbox entries of the work this command has just done itself (running their
    jobs finds nothing left to do); return what stays queued for this package."""
    from archive import outbox
    from archive.jobs import run_outbox

    def work() -> list[tuple[str, str]]:
        if done:
            run_outbox(services, jobs=done, key=package_id)
        with services.sessions() as session:
            return [e for e in outbox.entries(session) if e[1] in (package_id, "")]

    try:
        left = work()
    except CustosError as exc:
        err.print(f"[yellow]queued work not read:[/] {escape(exc.diagnostics())}")
        return []
    if left and not quiet:
        err.print(
            "queued for a worker: "
            + ", ".join(job for job, _ in left)
            + " (`custos worker --until-idle` runs it now; `custos serve` runs it too)"
        )
    return left


def _say_registered(done: Registration) -> None:
    if done.created:
        err.print(f"registered the depositor {done.name}", markup=False)
        _say_similar(done.similar)


def _say_similar(similar: tuple[str, ...]) -> None:
    """A new name close to registered ones may be a typo of one of them."""
    if similar:
        err.print(
            "[yellow]note:[/] registered depositors with a close name: "
            + escape(", ".join(similar))
            + " (a typo? `custos depositors list` shows every registered depositor)"
        )


def _say_stored(result: IngestResult) -> None:
    if result.status == "already-held":
        err.print(
            f"[yellow]already held:[/] the same payload was deposited as {result.deposit_id}; "
            "nothing was stored twice"
        )
    else:
        for w in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(w.render())}")
        err.print(
            f"stored {result.payload_files} files ({human_bytes(result.payload_bytes)}) "
            f"from BagIt {result.bagit_version} bag as:"
        )
    out.print(result.package_id, markup=False)


def _identify_after_commit(services: Services, package_id: str, quiet: bool) -> dict[str, Any]:
    """The package is already stored: a failure here is reported, never a refusal."""
    from ingest import service

    try:
        with progress_bar("identifying formats", None, not quiet, unit="items") as tick:
            done = service.identify_package(services, package_id, progress=tick)
    except CustosError as exc:
        err.print(
            f"[yellow]format identification did not run:[/] {escape(exc.diagnostics())}\n"
            f"  the package is stored; run `custos identify {package_id}` later"
        )
        return {"status": "failed", "message": exc.message}
    if not quiet and done.version is not None:
        err.print(
            f"formats: {done.identified} identified, {done.unidentified} unidentified "
            f"(recorded in version v{done.version})"
        )
    return {"status": "ok", **done.as_dict()}


def _extract_after_commit(services: Services, package_id: str) -> dict[str, int]:
    """Text of the package's public documents, for the search (failures are recorded)."""
    from ingest.characterise import extract_texts

    return extract_texts(services, package_id)


def _seal_after_commit(services: Services, quiet: bool) -> dict[str, Any]:
    """The package is stored: a TSA that does not answer leaves its manifests awaiting seal."""
    from archive.proofs.seal import seal_now

    try:
        report = seal_now(services)
    except CustosError as exc:
        err.print(
            f"[yellow]not sealed yet:[/] {escape(exc.diagnostics())}\n"
            "  the package is stored; its manifests await `custos seal`"
        )
        return {"status": "pending", "message": exc.message}
    if not quiet and report.sealed:
        err.print(f"sealed {report.summary()}: {report.authorities()}")
    return {"status": "sealed", **report.as_dict()}


def identify_cmd(
    ctx: typer.Context,
    package: Annotated[
        str | None, typer.Argument(help="Package id or unique UUID prefix; omit for all pending.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Identify the formats (PRONOM PUIDs) of payload files not yet identified, then extract
    the text of public documents not yet read (what the `characterise` job does)."""
    from ingest import service
    from ingest.characterise import extract_texts, pending_packages
    from ingest.extract import tool_missing_hint

    services = run(as_json, state(ctx).services)
    targets = [package] if package else run(as_json, partial(pending_packages, services))
    results = []
    texts: dict[str, int] = {}
    for target in targets:
        with progress_bar(f"identifying {target}", None, not as_json, unit="items") as tick:
            done = run(as_json, partial(service.identify_package, services, target, progress=tick))
        results.append(done)
        if services.settings.characterisation.extract_text:
            got = run(as_json, partial(extract_texts, services, done.package_id))
            for outcome, n in got.items():
                texts[outcome] = texts.get(outcome, 0) + n
    if as_json:
        emit_json({"status": "ok", "packages": [r.as_dict() for r in results], "texts": texts})
        return
    if not results:
        out.print("nothing to identify: every payload file has a format and public text is read")
    for r in results:
        kinds = ", ".join(f"{puid} ×{n}" for puid, n in sorted(r.formats.items()))
        where = f" (recorded in version v{r.version})" if r.version else ""
        out.print(
            f"{r.package_id}: {r.identified} identified, {r.unidentified} unidentified"
            f"{where}{': ' + kinds if kinds else ''}",
            markup=False,
        )
    if texts:
        out.print(
            "text of public files: " + ", ".join(f"{k} {n}" for k, n in sorted(texts.items()))
        )
        if hint := tool_missing_hint(texts):
            out.print(f"  {hint}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)
    app.command("identify")(identify_cmd)


depositors_app = typer.Typer(
    help="The depositors: the organisations that hand holdings over. A deposit (`custos "
    "ingest`, an API upload) names a registered depositor; registering one is a custody "
    "event naming the system account that ran the command and the reason.",
    no_args_is_help=True,
)


@depositors_app.command("add")
def depositors_add_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The organisation's name, as its deposits name it.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded in the custody log with it).")
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register a depositor, so that `custos ingest --depositor NAME` and depositor users
    bound to it (`custos users add --role depositor --organisation NAME`) are accepted.

    Exit status: 0 registered, or already registered (nothing changes: said so, and
    `already-registered` with --json); 65 refused (an unusable name, or one registered
    under another spelling: names differing only in case or spaces are one depositor)."""
    from archive.depositors import register

    services = run(as_json, state(ctx).services)

    def go() -> Registration:
        with services.session_scope() as session:
            return register(session, name, by=operator(), reason=reason)

    done = run(as_json, go)
    if as_json:
        emit_json(
            {
                "status": "registered" if done.created else "already-registered",
                "name": done.name,
                "registered_at": done.registered_at,
                "similar": list(done.similar),
            }
        )
        return
    if done.created:
        out.print(f"depositor {done.name} registered", markup=False)
    else:
        out.print(
            f"depositor {done.name} already registered "
            f"(since {done.registered_at:%Y-%m-%d %H:%M} UTC); nothing changed",
            markup=False,
        )
    if done.created:
        _say_similar(done.similar)


@depositors_app.command("list")
def depositors_list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the registered depositors, each with its number of deposits and of packages."""
    from archive.depositors import list_depositors

    services = run(as_json, state(ctx).services)

    def go() -> list[DepositorSummary]:
        with services.sessions() as session:
            return list_depositors(session)

    rows = run(as_json, go)
    if as_json:
        emit_json(
            {
                "status": "ok",
                "depositors": [
                    {
                        "name": d.name,
                        "registered_at": d.registered_at,
                        "deposits": d.deposits,
                        "packages": d.packages,
                    }
                    for d in rows
                ],
            }
        )
        return
    if not rows:
        out.print('no depositor registered: `custos depositors add "NAME"` registers one')
    for d in rows:
        out.print(
            f"{d.name}: {d.deposits} deposit(s), {d.packages} package(s); "
            f"registered {d.registered_at:%Y-%m-%d}",
            markup=False,
        )


def register_depositors(app: typer.Typer) -> None:
    app.add_typer(depositors_app, name="depositors")
