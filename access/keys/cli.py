"""``custos keys``: make a tier's key and its shares, make new shares, show the keys.

Shares leave the archive once: each to a file of its own in a new folder (``--out-dir``,
mode 0700, files 0600) or on the terminal, one at a time, the screen cleared between them.
They are never printed to a pipe, never in ``--json``, never logged.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from archive.cli import JsonOpt, emit_json, err, operator, out, run, state
from archive.errors import InputRejected, StorageError
from archive.findings import Finding

if TYPE_CHECKING:
    from access.keys.service import NewShares
    from archive.services import Services

keys_app = typer.Typer(
    help="Tier keys that no single person holds: the age key protected copies are encrypted "
    "to, split into SLIP-39 shares among registrars.",
    no_args_is_help=True,
)

TierOpt = Annotated[
    str, typer.Option("--tier", help="protected-identity or restricted (public never is).")
]
SharesOpt = Annotated[int, typer.Option("--shares", help="Shares to make: one per registrar.")]
ThresholdOpt = Annotated[
    int, typer.Option("--threshold", help="Shares needed to open the key (2 or more).")
]
OutDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--out-dir",
        help="A new (or empty) folder for the shares, one file each (0600). Without it the "
        "shares are shown on this terminal, one at a time.",
    ),
]
ShareFileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--share-file",
        help="A file holding one share (as `keys init` wrote it); repeat for each share. "
        "Without it the shares are asked for on this terminal, not echoed.",
    ),
]

_CLEAR = "\033[3J\033[2J\033[H"  # scrollback, screen, cursor home


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def open_for_command(
    services: Services, tier: str, purpose: str, share_files: list[Path] | None
) -> None:
    """Open ``tier``'s key in this process for the command being run (``custos verify
    --open-key``): shares from ``share_files``, or asked for on this terminal. Registered
    as the ``custos.key_opener`` entry point, so that the core's commands open a key without
    importing this layer."""
    from access.decisions.rules import access_policy
    from access.keys.service import open_for_command as open_key
    from access.keys.service import require_key

    with services.sessions() as session:
        key = require_key(session, tier)
        needed = key.threshold
    presented = _read_shares(share_files, needed)
    with services.session_scope() as session:
        open_key(
            session,
            services.keyring,
            tier=tier,
            purpose=purpose,
            presented=presented,
            by=operator(),
            policy=access_policy(services.settings),
            minutes=services.settings.keys.unlock_minutes,
        )


def _refuse(code: str, message: str, where: str, hint: str) -> InputRejected:
    return InputRejected(message, [Finding(code, "error", message, where)], hint=hint)


def _check_out_dir(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise _refuse(
            "KEY-OUT-DIR",
            f"{folder} exists and is not an empty folder",
            "--out-dir",
            "name a new folder: shares are never written over other files",
        )


def _check_destination(out_dir: Path | None, as_json: bool) -> None:
    """Where shares are to go: a new or empty folder, or else this terminal."""
    if out_dir is None:
        run(as_json, lambda: _check_terminal("--out-dir"))
    else:
        run(as_json, lambda: _check_out_dir(out_dir))


def _check_terminal(option: str) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise _refuse(
            "KEY-NO-TERMINAL",
            "shares are shown only on a terminal, and this command's input or output is not one",
            option,
            f"give {option}, or run the command on a terminal",
        )


def _share_text(made: NewShares, n: int, words: str) -> str:
    total = len(made.shares.mnemonics)
    return (
        f"# Custos: share {n} of {total} of the {made.tier} tier's key "
        f"(set {made.shares.share_set}; any {made.shares.threshold} open it)\n"
        f"# recipient {made.recipient}\n"
        "# Keep this file offline and to yourself; never send it by e-mail or chat.\n"
        "# Recovering the key without Custos: docs/guides/keys.md in the Custos sources.\n"
        f"{words}\n"
    )


def _hand_out(made: NewShares, out_dir: Path | None) -> list[Path]:
    """Each share to its own file in ``out_dir``, or on the terminal one at a time."""
    if out_dir is None:
        for n, words in enumerate(made.shares.mnemonics, 1):
            input(
                f"{_CLEAR}Share {n} of {len(made.shares.mnemonics)}: hand the screen to its "
                "registrar, then press Enter to show it. "
            )
            sys.stdout.write(_share_text(made, n, words))
            input("\nWrite the words down, then press Enter to clear the screen. ")
            sys.stdout.write(_CLEAR)
            sys.stdout.flush()
        return []
    written: list[Path] = []
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(out_dir, 0o700)
        for n, words in enumerate(made.shares.mnemonics, 1):
            path = out_dir / f"share-{n}-of-{len(made.shares.mnemonics)}.txt"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(_share_text(made, n, words))
            written.append(path)
    except OSError as exc:
        for path in written:  # shares of a key that is not recorded open nothing: gone
            path.unlink(missing_ok=True)
        raise StorageError(
            f"the shares could not be written to {out_dir}: {exc.strerror or exc}; the key "
            "is not kept (nothing was recorded)",
            hint="free the folder, or name another, and run the command again",
        ) from exc
    return written


def _read_shares(files: list[Path] | None, needed: int | None) -> list[tuple[str, str]]:
    """``(where, words)`` of each share file, or of each share typed at the terminal."""
    if files:
        shares = []
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise _refuse(
                    "KEY-SHARE-FILE",
                    f"{path} could not be read: {getattr(exc, 'strerror', None) or exc}",
                    "--share-file",
                    "name the file `custos keys init` wrote",
                ) from None
            words = " ".join(
                line for line in text.splitlines() if line.strip() and not line.startswith("#")
            )
            shares.append((str(path), words))
        return shares
    _check_terminal("--share-file")
    count = needed or 2
    return [
        (f"share {n}", getpass.getpass(f"Share {n} of {count} (not shown): "))
        for n in range(1, count + 1)
    ]


@keys_app.command("init")
def init_cmd(
    ctx: typer.Context,
    tier: TierOpt = "protected-identity",
    shares: SharesOpt = 5,
    threshold: ThresholdOpt = 2,
    out_dir: OutDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a tier's key and split it into shares, one per registrar, any THRESHOLD of which
    open it. The shares are handed out once (files in --out-dir, or this terminal); the
    archive keeps only the recipient (the public key). A custody event records the tier, the
    recipient, the counts and who ran the command.

    A tier has one key: a second init is refused (`custos keys reshare` makes new shares)."""
    from access.decisions.rules import access_policy
    from access.keys.service import init_key

    services = run(as_json, state(ctx).services)
    policy = run(as_json, lambda: access_policy(services.settings))
    _check_destination(out_dir, as_json)

    files: list[Path] = []

    def go() -> NewShares:
        with services.session_scope() as session:
            return init_key(
                session,
                tier=tier,
                shares=shares,
                threshold=threshold,
                by=operator(),
                hand_out=lambda made: files.extend(_hand_out(made, out_dir)),
                policy=policy,
            )

    _report(as_json, run(as_json, go), files, "key made")


def _report(as_json: bool, made: NewShares, files: list[Path], what: str) -> None:
    if as_json:
        emit_json({"status": "ok", **made.as_dict(), "files": [str(f) for f in files]})
        return
    out.print(
        f"{what}: {made.tier} tier, recipient {made.recipient}; "
        f"{len(made.shares.mnemonics)} shares (set {made.shares.share_set}), any "
        f"{made.shares.threshold} open it"
    )
    for f in files:
        out.print(f"  {escape(str(f))}")
    if files:
        out.print("Hand each file to its registrar, then delete the folder.")


@keys_app.command("reshare")
def reshare_cmd(
    ctx: typer.Context,
    tier: TierOpt = "protected-identity",
    share_file: ShareFileOpt = None,
    shares: SharesOpt = 5,
    threshold: ThresholdOpt = 2,
    out_dir: OutDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a new set of shares of a tier's key from enough shares of the current set (a
    share lost, a registrar gone). The key stays the same; the old shares still open it until
    they are destroyed (revoking them takes a new key)."""
    from access.keys.service import own_key, reshare

    services = run(as_json, state(ctx).services)
    _check_destination(out_dir, as_json)

    files: list[Path] = []

    def go() -> NewShares:
        with services.session_scope() as session:
            key = own_key(session, tier)
            return reshare(
                session,
                tier=tier,
                presented=_read_shares(share_file, key.threshold if key else None),
                shares=shares,
                threshold=threshold,
                by=operator(),
                hand_out=lambda made: files.extend(_hand_out(made, out_dir)),
            )

    _report(as_json, run(as_json, go), files, "new shares made")


@keys_app.command("rotate")
def rotate_cmd(
    ctx: typer.Context,
    tier: TierOpt = "protected-identity",
    share_file: ShareFileOpt = None,
    shares: SharesOpt = 5,
    threshold: ThresholdOpt = 2,
    out_dir: OutDirOpt = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish a rotation cut short: the shares given are then the retired key's.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace a tier's key with a new one and re-wrap every encrypted copy of the tier to it
    (headers only: the encrypted contents are copied unchanged, as a new version of each
    package). The shares given open the current key; the new key's shares are handed out
    once (--out-dir or this terminal) before anything is recorded. Packages are re-wrapped
    one at a time, each committed: a rotation cut short is finished with --resume and shares
    of the retired key. The old versions keep copies wrapped to the old key (OCFL keeps every
    version): destroy the old shares."""
    from access.keys.rotate import Rotation, begin, rewrap_all
    from access.keys.rotate import resume as resume_rotation
    from access.keys.service import own_key

    services = run(as_json, state(ctx).services)
    if not resume:
        _check_destination(out_dir, as_json)
    files: list[Path] = []

    def start() -> tuple[Rotation, bytes]:
        with services.session_scope() as session:
            key = own_key(session, tier)
            presented = _read_shares(share_file, key.threshold if key else None)
            if resume:
                return resume_rotation(session, tier=tier, presented=presented)
            return begin(
                session,
                tier=tier,
                presented=presented,
                shares=shares,
                threshold=threshold,
                by=operator(),
                hand_out=lambda made: files.extend(_hand_out(made, out_dir)),
            )

    rotation, old_secret = run(as_json, start)
    if not as_json:
        if rotation.new is not None:
            _report(False, rotation.new, files, "new key made")
        err.print(f"re-wrapping the {tier} tier's copies to {rotation.recipient}…")

    def progress(package_id: str, copies: int) -> None:
        if copies and not as_json:
            err.print(f"  {package_id}: {copies} cop{'y' if copies == 1 else 'ies'} re-wrapped")

    done = run(as_json, lambda: rewrap_all(services, rotation, old_secret, progress=progress))
    if as_json:
        emit_json({"status": "ok", **done.as_dict(), "files": [str(f) for f in files]})
        return
    out.print(
        f"rotated: {done.packages} package(s), {done.copies} cop(ies) re-wrapped to "
        f"{done.recipient}; {done.retired} retired (destroy its shares)"
    )


@keys_app.command("encrypt-existing")
def encrypt_existing_cmd(
    ctx: typer.Context,
    tier: TierOpt = "protected-identity",
    as_json: JsonOpt = False,
) -> None:
    """Store again, encrypted to the tier's key and escrows, every plain copy of the tier's
    files deposited before the tier had a key: a new version of each package, each committed
    (run it again to finish a run cut short). No share is needed. The earlier versions keep
    the plain copies (OCFL keeps every version), on every location, until the archive's
    storage is rebuilt without them: say so to whoever holds those disks and buckets."""
    from access.keys.rotate import encrypt_existing

    services = run(as_json, state(ctx).services)

    def progress(package_id: str, copies: int) -> None:
        if copies and not as_json:
            err.print(f"  {package_id}: {copies} cop{'y' if copies == 1 else 'ies'} encrypted")

    packages, copies = run(as_json, lambda: encrypt_existing(services, tier, progress=progress))
    if as_json:
        emit_json({"status": "ok", "tier": tier, "packages": packages, "copies": copies})
        return
    out.print(
        f"{copies} plain cop(ies) of the {tier} tier in {packages} package(s) stored again "
        "encrypted; the earlier versions keep the plain copies"
    )


@keys_app.command("add-recipient")
def add_recipient_cmd(
    ctx: typer.Context,
    recipient: Annotated[
        str, typer.Option("--recipient", help="The institution's age public key (age1…).")
    ],
    holder: Annotated[
        str, typer.Option("--holder", help="The institution that holds its identity.")
    ],
    tier: TierOpt = "protected-identity",
    as_json: JsonOpt = False,
) -> None:
    """Escrow a tier to another institution (a successor archive): copies encrypted to the
    tier from now on also open with that institution's own age identity, without the
    registrars' shares. A custody event records the recipient, the holder and who ran the
    command. A secret key given by mistake is refused and not repeated."""
    from access.keys.service import add_recipient

    services = run(as_json, state(ctx).services)

    def go() -> dict[str, object]:
        with services.session_scope() as session:
            return add_recipient(
                session, tier=tier, recipient=recipient, holder=holder, by=operator()
            ).as_dict()

    row = run(as_json, go)
    if as_json:
        emit_json({"status": "ok", **row})
        return
    out.print(
        f"recipient {row['recipient']} of {escape(str(row['holder']))} added to the "
        f"{row['tier']} tier"
    )


@keys_app.command("status")
def status_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The tier keys: tier, recipient, shares and threshold, and the last opening of each."""
    from access.keys.service import key_status

    services = run(as_json, state(ctx).services)

    def go() -> list[dict[str, object]]:
        with services.sessions() as session:
            return [k.as_dict() for k in key_status(session)]

    rows = run(as_json, go)
    if as_json:
        emit_json({"keys": rows})
        return
    if not rows:
        err.print("no tier has a key: `custos keys init --tier protected-identity` makes one")
        return
    for r in rows:
        if r["kind"] == "escrow":
            out.print(
                f"{r['tier']}: escrow recipient {r['recipient']}, held by "
                f"{escape(str(r['holder']))}; added {r['created_at']} by "
                f"{escape(str(r['created_by']))}"
            )
            continue
        opened = (
            f"{r['last_opened_at']} by {r['last_opened_by']}"
            if r["last_opened_at"]
            else "never opened"
        )
        out.print(
            f"{r['tier']}: recipient {r['recipient']}; {r['shares']} shares (set "
            f"{r['share_set']}), {r['threshold']} open it; made {r['created_at']} by "
            f"{escape(str(r['created_by']))}; last opened: {escape(str(opened))}"
        )
