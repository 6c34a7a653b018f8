"""``custos export``, ``custos users`` and ``custos search``: thin over the access services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from access.export import export
from access.rules import access_policy
from access.search import reindex_all
from access.users import NewUser, add_user, disable_user, list_users, replace_token
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


users_app = typer.Typer(
    help="Users of the API: roles, tokens, second factors.", no_args_is_help=True
)
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
        typer.Option(help="For a depositor: the organisation it deposits for (as in ingest)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user and print its API token once (and, for roles that need a second
    factor, the TOTP secret and its otpauth:// URI, once). Only hashes are kept."""
    services = run(as_json, state(ctx).services)

    def go() -> NewUser:
        policy = access_policy(services.settings)
        with services.session_scope() as session:
            return add_user(session, name, role=role, policy=policy, organisation=organisation)

    _print_new(as_json, run(as_json, go), "created")


def _print_new(as_json: bool, user: NewUser, status: str) -> None:
    if as_json:
        emit_json(
            {
                "status": status.split()[-1],
                "name": user.name,
                "role": user.role,
                "organisation": user.organisation,
                "token": user.token,
                "totp_secret": user.totp_secret,
                "totp_uri": user.totp_uri,
            }
        )
        return
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
    reason: Annotated[str, typer.Option(help="Why (kept with the user).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Refuse every request with the user's token from now on (a leaked token, someone who
    left). `custos users token NAME` enables the user again with a new token."""
    services = run(as_json, state(ctx).services)

    def go() -> str:
        with services.session_scope() as session:
            return disable_user(session, name, reason=reason).name

    who = run(as_json, go)
    if as_json:
        emit_json({"status": "disabled", "name": who, "reason": reason.strip()})
    else:
        out.print(f"user {who} disabled: their token is refused from now on", markup=False)


@users_app.command("token")
def users_token_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user to give a new token.")],
    new_totp: Annotated[
        bool, typer.Option("--new-totp", help="Enrol a new TOTP secret as well.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give a user a new API token, printed once (the old one stops working at once), and
    enable the user if disabled; with --new-totp a new second-factor secret too."""
    services = run(as_json, state(ctx).services)

    def go() -> NewUser:
        policy = access_policy(services.settings)
        with services.session_scope() as session:
            return replace_token(session, name, policy=policy, new_second_factor=new_totp)

    _print_new(as_json, run(as_json, go), "token replaced")


@users_app.command("list")
def users_list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List users: name, role, organisation, whether a second factor is enrolled."""
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
