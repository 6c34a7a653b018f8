"""``custos seal`` (and ``seal files``, ``seal renew``), ``custos verify`` and ``custos audit
verify``: the proofs of what is held, and of the custody log."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from archive.cli.shell import (
    JsonOpt,
    app,
    emit_json,
    err,
    fail,
    out,
    progress_bar,
    run,
    state,
)
from archive.errors import ConfigError, InputRejected
from archive.findings import Finding

if TYPE_CHECKING:
    from archive.proofs.seal import SealReport

audit_app = typer.Typer(help="The hash-chained custody log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


seal_app = typer.Typer(
    help="Timestamp what awaits a seal; `custos seal files` seals each file on its own; "
    "`custos seal renew` renews evidence records; `export-pending`, `stamp` and `import` "
    "carry seals across an air gap.",
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
    from archive.proofs.backlog import Backlog
    from archive.proofs.seal import seal_now, seal_with_retry

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
    from archive.proofs.backlog import files_backlog
    from archive.proofs.seal import seal_now

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


@seal_app.command("export-pending")
def seal_export_pending_cmd(
    ctx: typer.Context,
    to: Annotated[
        Path,
        typer.Option("--to", metavar="FILE", help="A new file (e.g. on removable media)."),
    ],
    as_json: JsonOpt = False,
) -> None:
    """For an archive with no timestamp authority within reach: write the hash-tree roots of
    everything awaiting a seal (manifests, file seals, the custody log's head) to FILE,
    digests only, for another archive or any RFC 3161 client to stamp (`custos seal stamp`).
    What each root covers stays here, in the storage root, until `custos seal import`. The
    crossing is a `transfer` custody event listing the roots."""
    from archive.proofs.airgap import export_pending

    services = run(as_json, state(ctx).services)
    result = run(as_json, lambda: export_pending(services, to))
    if as_json:
        emit_json({"status": "exported", **result.as_dict()})
        return
    if not result.roots:
        out.print(f"nothing awaits a seal; {to} lists no root", markup=False)
    else:
        out.print(
            f"{len(result.roots)} root(s) of {result.subjects} manifest(s), file seal(s) or "
            f"checkpoint(s) written to {to}: have them stamped (custos seal stamp), then "
            "custos seal import the tokens",
            markup=False,
        )
    for failure in result.failures:
        err.print(f"[yellow]not exported:[/] {escape(failure)}")


@seal_app.command("stamp")
def seal_stamp_cmd(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(metavar="FILE", help="The roots another archive exported.")
    ],
    to: Annotated[Path, typer.Option("--to", metavar="TOKENS", help="A new file for the tokens.")],
    as_json: JsonOpt = False,
) -> None:
    """Ask this archive's timestamp authorities for a token over each root in FILE (written by
    `custos seal export-pending` on an archive across an air gap) and write them to TOKENS.
    A `transfer` custody event. Exit status 75 when no authority answered (nothing written)."""
    from archive.proofs.airgap import stamp

    services = run(as_json, state(ctx).services)
    result = run(as_json, lambda: stamp(services, source, to))
    if as_json:
        emit_json({"status": "stamped", **result.as_dict()})
        return
    out.print(f"{len(result.tokens)} token(s) written to {to}", markup=False)
    for root, tsa, when in result.tokens:
        out.print(f"  {root[:16]}… by {tsa} at {when}", markup=False)


@seal_app.command("import")
def seal_import_cmd(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(metavar="TOKENS", help="The tokens `custos seal stamp` wrote.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Complete the seals of the roots this archive exported, with the tokens in TOKENS. Every
    token is checked first (a root this archive exported and has not imported, its imprint,
    its signature against this archive's trust anchors: tsa.roots and the local authority's);
    one that fails refuses the whole file, naming it, and nothing is imported (exit 65).
    A `transfer` custody event."""
    from archive.proofs.airgap import import_tokens

    services = run(as_json, state(ctx).services)
    report = run(as_json, lambda: import_tokens(services, source))
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


def _key_opener(as_json: bool) -> Any:
    """The ``custos.key_opener`` entry point: opens a tier's key from shares (the access
    layer's, which the core does not import)."""
    from importlib.metadata import entry_points

    found = sorted(entry_points(group="custos.key_opener"), key=lambda e: e.name)
    if not found:
        raise fail(
            ConfigError(
                "no key opener is installed: this installation cannot open tier keys",
                hint="install Custos whole (`make install`), which registers it",
            ),
            as_json,
        )
    return found[0].load()


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
    open_key: Annotated[
        str | None,
        typer.Option(
            "--open-key",
            metavar="TIER",
            help="Open this tier's key for this command (shares from --share-file, or asked "
            "for on this terminal), to prove the plain bytes of files stored encrypted and "
            "find them by their real names. A custody event.",
        ),
    ] = None,
    share_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--share-file", help="With --open-key: a file holding one share; repeat for each."
        ),
    ] = None,
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            help="With --open-key: why it is opened (a purpose the access policy declares).",
        ),
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Prove, step by step, that stored files are what was received, and when.

    A file stored encrypted is proved by its stored bytes and its sealed plain digest; with
    --open-key, by its decrypted bytes too. Exit status 0 only if every step holds; 3 if any
    fails."""
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
        if open_key is not None:
            opener = _key_opener(as_json)
            tier = open_key
            run(as_json, lambda: opener(services, tier, purpose, share_file))
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
def audit_verify_cmd(
    ctx: typer.Context,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Processes that check a long log in parallel, each a run of its entries "
            "(a log of fewer than 400,000 events is checked in one); 0: as many as the CPUs "
            "this process may use.",
        ),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Check every entry and event of the custody log, its head, and its sealed checkpoints
    in storage.

    Exit status 0 only if nothing was deleted, inserted, moved, altered or rewritten; 3 if
    anything was."""
    import os

    from archive.audit import verify_log

    processes = workers or len(os.sched_getaffinity(0))
    services = run(as_json, state(ctx).services)
    with progress_bar("checking the custody log", None, not as_json, unit="events") as advance:
        report = run(as_json, lambda: verify_log(services, progress=advance, workers=processes))
    if as_json:
        emit_json({"status": "ok" if report.ok else "failed", **report.as_dict()})
    else:
        out.print(
            f"{report.entries} entries ({report.events} events) in {len(report.chains)} "
            "chain(s) checked"
        )
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


tsa_app = typer.Typer(help="The archive's own timestamp authority.", no_args_is_help=True)
app.add_typer(tsa_app, name="tsa")


@tsa_app.command("serve")
def tsa_serve_cmd(
    folder: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="The authority's folder: its root and TSA certificates, keys and serial, "
            "made at first use (keep it, and back it up: it signs every seal).",
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 3180,
) -> None:
    """Run the embedded RFC 3161 timestamp authority as a service for several hosts, until
    interrupted (Ctrl-C or SIGTERM): each host names it in `[tsa] urls` and trusts
    `DIR/root.pem` in `[tsa] roots` (with `[tsa] local = false`), so that every host's seals
    rest on one authority and verify on any of them. It listens on 127.0.0.1 unless --host
    says otherwise; it receives digests only. Exit 78 if it cannot listen, 74 if the folder
    cannot hold its keys."""
    import hashlib
    import signal

    from archive.proofs.local_tsa import LocalTSAServer

    server = run(False, lambda: LocalTSAServer(folder.absolute(), host=host, port=port))
    root = server.tsa.root_certificate
    fingerprint = hashlib.sha256(root.read_bytes()).hexdigest()
    err.print(
        f"timestamp authority on {server.url} (Ctrl-C stops)\n"
        f'  for each host: [tsa] local = false, urls = ["{server.url}"], '
        f'roots = ["{root}"]\n'
        f"  root certificate {root} (sha256 of the PEM file {fingerprint})",
        markup=False,
    )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    err.print("stopped")
