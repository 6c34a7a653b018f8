"""``custos export``, ``custos users``, ``custos search`` and ``custos policies``: thin over
the access services."""

from __future__ import annotations

from datetime import date
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
from archive.errors import InputRejected
from archive.findings import Finding

# The access services are imported by the commands that call them, so that `custos --help`
# and the other commands start without them (the catalog, argon2, the bundle writer).
if TYPE_CHECKING:
    from access.accounts.users import NewUser
    from access.decisions.reviews import ReviewStep
    from access.decisions.rules import Principal
    from archive.services import Services


def export_cmd(
    ctx: typer.Context,
    package: Annotated[str, typer.Argument(help="Package id, or a unique prefix of its UUID.")],
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files to export (e.g. data/report.pdf); default: every one anyone may read."
        ),
    ] = None,
    to: Annotated[Path, typer.Option("--to", help="A new (or empty) folder for the bundle.")] = (
        Path("bundle")
    ),
    requester: Annotated[
        str, typer.Option(help="Who asked: the justice body or person the bundle is for.")
    ] = "",
    purpose: Annotated[
        str,
        typer.Option(
            help="Why: one of the purposes the access policy declares (public, research, "
            "prosecution, third-party-justice by default)."
        ),
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Write a court bundle: a BagIt bag with the released files, each with its own evidence
    records (RFC 4998), the tokens, TSA certificates and trust anchors, the custody history of
    those files, and VERIFY.txt (every check with sha512sum, xxd and openssl).

    Releases what anyone may read (the access decision for `anonymous`, purpose `public`);
    registrars answer requests for other files through the API. A bundle never contains a
    withheld file's path, name, digest, salt or bytes, a count of the package's files or
    tiers, an event that links a withheld file, the bag manifests or inventories when any file
    is withheld, nor, unless anyone may read the package's metadata, its id or depositor. The
    purpose must be one the access policy declares (public, research, prosecution,
    third-party-justice by default). The export is a custody event. Exit status 65 if the
    request is refused (a file that may not be released, a purpose not declared, files not
    yet sealed each on its own: `custos seal files`)."""
    from access.export.bundle import export

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


users_app = typer.Typer(
    help="Users of the API: roles, tokens, second factors. Adding, disabling and giving a new "
    "token are custody events naming the system account that ran the command and the reason "
    "(never a token or a secret); disabling and giving a new token end the user's sessions.",
    no_args_is_help=True,
)


ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (recorded in the custody log with the change).")
]
search_app = typer.Typer(help="The public search index.", no_args_is_help=True)


@users_app.command("add")
def users_add_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user's name (letters, digits, . _ @ -).")],
    role: Annotated[
        str, typer.Option(help="researcher, depositor, archivist or registrar.")
    ] = "researcher",
    organisation: Annotated[
        str | None,
        typer.Option(
            help="For a depositor: the organisation it deposits for, a registered depositor "
            "(`custos depositors list`)."
        ),
    ] = None,
    new_organisation: Annotated[
        bool,
        typer.Option(
            "--new-organisation",
            help="Register --organisation as a depositor first (as `custos depositors add` "
            "does); a depositor already registered is kept as it is.",
        ),
    ] = False,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a user and print its API token once (and, for roles that need a second
    factor, the TOTP secret and its otpauth:// URI, once). Only hashes are kept.

    A depositor's organisation must be a registered depositor (`custos depositors add`), or
    registered with the user by --new-organisation: one that is not is refused (exit status
    65), naming the registered depositors with a close name.

    A custody event records the user, the role, the reason and the system account that ran
    the command."""
    from access.accounts.users import add_user
    from access.decisions.rules import access_policy

    services = run(as_json, state(ctx).services)

    def go() -> NewUser:
        policy = access_policy(services.settings)
        with services.session_scope() as session:
            return add_user(
                session,
                name,
                role=role,
                policy=policy,
                organisation=organisation,
                new_organisation=new_organisation,
                by=operator(),
                reason=reason,
            )

    _print_new(as_json, run(as_json, go), "created")


def _print_new(as_json: bool, user: NewUser, status: str) -> None:
    if as_json:
        emit_json(
            {
                "status": status.split()[-1],
                "name": user.name,
                "role": user.role,
                "organisation": user.organisation,
                "organisation_registered": bool(user.registration and user.registration.created),
                "token": user.token,
                "totp_secret": user.totp_secret,
                "totp_uri": user.totp_uri,
            }
        )
        return
    done = user.registration
    if done is not None and done.created:
        err.print(f"registered the depositor {done.name}", markup=False)
        if done.similar:
            err.print(
                "[yellow]note:[/] registered depositors with a close name: "
                + escape(", ".join(done.similar))
                + " (a typo? `custos depositors list` shows every registered depositor)"
            )
    out.print(f"user {user.name} ({user.role}) {status}", markup=False)
    out.print(f"API token (shown once, keep it secret): {user.token}", markup=False)
    if user.totp_secret:
        out.print(f"TOTP secret (shown once): {user.totp_secret}", markup=False)
        out.print(f"TOTP URI for an authenticator app: {user.totp_uri}", markup=False)
        out.print("send the current code in the X-Custos-TOTP header", markup=False)


@users_app.command("disable")
def users_disable_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user to disable.")],
    reason: Annotated[
        str, typer.Option(help="Why (required; kept with the user and in the custody log).")
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Refuse every request with the user's token from now on (a leaked token, someone who
    left), and end every session of the user (POST /auth/sessions). `custos users token NAME`
    enables the user again with a new token.

    A custody event records the user, the role, the reason and the system account that ran
    the command."""
    from access.accounts.users import disable_user

    services = run(as_json, state(ctx).services)

    def go() -> str:
        with services.session_scope() as session:
            return disable_user(session, name, reason=reason, by=operator()).name

    who = run(as_json, go)
    if as_json:
        emit_json({"status": "disabled", "name": who, "reason": reason.strip()})
    else:
        out.print(
            f"user {who} disabled: their token and sessions are refused from now on", markup=False
        )


@users_app.command("token")
def users_token_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user to give a new token.")],
    new_totp: Annotated[
        bool,
        typer.Option(
            "--new-totp",
            help="Enrol a new TOTP secret as well (also lifts a lock after wrong codes).",
        ),
    ] = False,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Give a user a new API token, printed once (the old one and every session of the user
    stop working at once), and enable the user if disabled; with --new-totp a new
    second-factor secret too.

    A custody event records the user, the role, what was replaced, the reason and the
    system account that ran the command (never the token or the secret)."""
    from access.accounts.users import replace_token
    from access.decisions.rules import access_policy

    services = run(as_json, state(ctx).services)

    def go() -> NewUser:
        policy = access_policy(services.settings)
        with services.session_scope() as session:
            return replace_token(
                session,
                name,
                policy=policy,
                new_second_factor=new_totp,
                by=operator(),
                reason=reason,
            )

    _print_new(as_json, run(as_json, go), "token replaced")


@users_app.command("list")
def users_list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List users: name, role, organisation, whether a second factor is enrolled."""
    from access.accounts.users import list_users

    services = run(as_json, state(ctx).services)
    with services.sessions() as session:
        users = list_users(session)
    if as_json:
        emit_json(
            {
                "status": "ok",
                "users": [
                    {
                        "name": u.name,
                        "role": u.role,
                        "organisation": u.organisation,
                        "created_at": u.created_at,
                        "second_factor": u.second_factor,
                        "active": u.active,
                        "disabled_reason": u.disabled_reason,
                    }
                    for u in users
                ],
            }
        )
        return
    for u in users:
        org = f" of {u.organisation}" if u.organisation else ""
        totp = ", TOTP enrolled" if u.second_factor else ""
        off = "" if u.active else f", DISABLED ({u.disabled_reason or 'no reason given'})"
        out.print(f"{u.name}: {u.role}{org}{totp}{off}", markup=False)


@search_app.command("reindex")
def search_reindex_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Rebuild the public search index from the catalog and the access policy."""
    from access.decisions.rules import access_policy
    from access.search.service import reindex_all

    services = run(as_json, state(ctx).services)

    def go() -> tuple[int, int]:
        policy = access_policy(services.settings)
        with services.session_scope() as session:
            return reindex_all(session, policy)

    packages, entries = run(as_json, go)
    if as_json:
        emit_json({"status": "ok", "packages": packages, "entries": entries})
    else:
        out.print(f"indexed {entries} public entries of {packages} package(s)", markup=False)


def register_users(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(search_app, name="search")


policies_app = typer.Typer(
    help="Access policy over time: sunset transitions and reviews of protected identities.",
    no_args_is_help=True,
)


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputRejected(
            f"{option} {text!r} is not a date",
            [Finding("DATE-SYNTAX", "error", "expected YYYY-MM-DD", option)],
            hint="write the date as YYYY-MM-DD, e.g. 2051-01-01",
        ) from None


@policies_app.command("apply")
def policies_apply_cmd(
    ctx: typer.Context,
    on: Annotated[
        str | None,
        typer.Option(
            "--on",
            metavar="DATE",
            help="Apply as of this day (YYYY-MM-DD, default today, UTC); a later day only "
            "with --dry-run.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what is due; write nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record every sunset due (moves to successor tiers, reviews opened).

    A restricted assignment moves to its successor; a protected-identity one opens a
    review (it never opens by itself). One new version per
    package, a custody event per transition; nothing is due twice. The worker runs this
    daily. Exit status 5 if some package could not be done (listed)."""
    from access.decisions.rules import today
    from access.decisions.sunset import apply_due, check_date, due_packages

    services = run(as_json, state(ctx).services)
    day = run(as_json, lambda: _day(on, "--on")) or today()
    run(as_json, lambda: check_date(day, dry_run=dry_run))
    with services.sessions() as session:
        packages = due_packages(session, day)
    with progress_bar("applying sunsets", len(packages), not as_json, unit="items") as tick:
        report = run(
            as_json,
            lambda: apply_due(services, on=day, dry_run=dry_run, packages=packages, progress=tick),
        )
    if as_json:
        status = "incomplete" if report.failed else "dry-run" if dry_run else "ok"
        emit_json({"status": status, **report.as_dict()})
    else:
        verb = "due" if dry_run else "recorded"
        out.print(
            f"sunsets as of {day.isoformat()} ({report.policy}): {report.moved} tier move(s) "
            f"and {report.reviews_opened} review(s) {verb}"
            + ("" if dry_run else f", in {report.versions} new version(s)"),
            markup=False,
        )
        for t in report.transitions:
            what = "package" if t.scope == "package" else "a file or folder of"
            if t.kind == "move":
                change = f"{t.tier} -> {t.new_tier}"
            else:
                change = "review " + (t.review_id or "to open") + " (stays protected-identity)"
            out.print(
                f"  {what} {t.package_id}: {change}, sunset {t.sunset.isoformat()}",
                markup=False,
            )
        for package_id, reason in report.failed:
            err.print(f"[red]not done:[/] {escape(package_id)}: {escape(reason)}")
    if report.failed:
        raise typer.Exit(5)  # partly done (archive.errors.EXIT_CODES)


@policies_app.command("reviews")
def policies_reviews_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the open reviews of protected identities: what, since when, who approved."""
    from access.decisions.reviews import list_reviews
    from access.decisions.rules import access_policy

    services = run(as_json, state(ctx).services)

    def go() -> list[dict[str, Any]]:
        policy = access_policy(services.settings)
        with services.sessions() as session:
            return list_reviews(session, policy)

    reviews = run(as_json, go)
    if as_json:
        emit_json({"status": "ok", "reviews": reviews})
        return
    if not reviews:
        out.print("no review is open", markup=False)
    for r in reviews:
        by = ", ".join(a["registrar"] for a in r["approvals"]) or "nobody yet"
        out.print(
            f"{r['review_id']}  opened {r['opened_on']} (sunset {r['sunset']})\n"
            f"  {r['package_id']} {r['path'] or '(the package)'}: protected-identity -> "
            f"{r['successor']} once approved; approved by {by}; "
            f"{r['approvals_needed']} more approval(s) needed",
            markup=False,
        )


RegistrarOpt = Annotated[
    str,
    typer.Option(
        "--registrar",
        metavar="NAME",
        help="The registrar taking the step: a user with the registrar role.",
    ),
]
TokenOpt = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="CUSTOS_TOKEN",
        prompt="API token of the registrar",
        hide_input=True,
        show_default=False,
        help="That registrar's API token (env CUSTOS_TOKEN; asked for if not given; avoid "
        "the option itself, which other users of the machine can see).",
    ),
]
TotpOpt = Annotated[
    str,
    typer.Option(
        "--totp",
        envvar="CUSTOS_TOTP",
        prompt="Current TOTP code of the registrar",
        show_default=False,
        help="That registrar's current 6-digit TOTP code (env CUSTOS_TOTP; asked for if "
        "not given). A code is accepted once: a code already used (here or by the API) is "
        "refused like a wrong one and counts towards the lock; wait for the next.",
    ),
]


def _registrar(services: Services, name: str, token: str, totp: str) -> Principal:
    from access.accounts.users import identify
    from access.decisions.rules import access_policy

    policy = access_policy(services.settings)
    with services.sessions() as session:
        return identify(session, policy, name, token=token, totp=totp, auth=services.settings.auth)


def _print_step(step: ReviewStep, as_json: bool) -> None:
    if as_json:
        emit_json({"status": step.outcome, **step.as_dict()})
        return
    if step.outcome == "pending":
        need = step.as_dict()["approvals_needed"]
        text = (
            f"review {step.review_id}: approved by {', '.join(step.approvals)}; "
            f"{need} more approval(s) by a different registrar needed"
        )
    elif step.outcome == "opened":
        until = f" until {step.sunset.isoformat()}, then {step.successor}" if step.sunset else ""
        text = (
            f"review {step.review_id}: approved by {' and '.join(step.approvals)}: "
            f"now {step.tier}{until}"
        )
    else:
        text = (
            f"review {step.review_id}: extended; protected-identity until "
            f"{step.sunset.isoformat() if step.sunset else '?'}"
        )
    out.print(f"{text} (version v{step.version})", markup=False)


@policies_app.command("approve")
def policies_approve_cmd(
    ctx: typer.Context,
    review: Annotated[str, typer.Argument(help="The review's id (or a unique prefix).")],
    registrar: RegistrarOpt,
    token: TokenOpt,
    totp: TotpOpt,
    as_json: JsonOpt = False,
) -> None:
    """Approve a review as registrar NAME (proven by their token and TOTP code).

    The second approval by a different registrar applies the successor tier; approving twice is
    refused (exit 65) and does not count."""
    from access.decisions.reviews import approve_review

    services = run(as_json, state(ctx).services)
    reader = run(as_json, lambda: _registrar(services, registrar, token, totp))
    _print_step(run(as_json, lambda: approve_review(services, reader, review)), as_json)


@policies_app.command("extend")
def policies_extend_cmd(
    ctx: typer.Context,
    review: Annotated[str, typer.Argument(help="The review's id (or a unique prefix).")],
    registrar: RegistrarOpt,
    until: Annotated[
        str,
        typer.Option(
            "--until", metavar="DATE", help="The new sunset (YYYY-MM-DD), later than today."
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why the protection continues.")],
    token: TokenOpt,
    totp: TotpOpt,
    as_json: JsonOpt = False,
) -> None:
    """Extend a review: keep the material protected until a later date, for a reason.

    Taken as registrar NAME (proven by their token and TOTP code): the sunset moves, the
    review closes, and a new one opens at the new sunset."""
    from access.decisions.reviews import extend_review

    services = run(as_json, state(ctx).services)
    new_sunset = run(as_json, lambda: _day(until, "--until"))
    assert new_sunset is not None
    reader = run(as_json, lambda: _registrar(services, registrar, token, totp))
    step = run(
        as_json,
        lambda: extend_review(services, reader, review, until=new_sunset, reason=reason),
    )
    _print_step(step, as_json)


def register_policies(app: typer.Typer) -> None:
    app.add_typer(policies_app, name="policies")
