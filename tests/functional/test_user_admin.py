"""`custos users add|disable|token` are custody events, on SQLite and PostgreSQL: one each,
naming the system account that ran the command, the user, the role and the reason; never a
token, its hash or a TOTP secret; the hash-chained log still verifies."""

from __future__ import annotations

import logging
import os
import pwd
from typing import Any

import pytest
from sqlalchemy import select

from archive.catalog.tables import Event, User
from archive.services import Services
from tests.conftest import MakeServices
from tests.functional.test_cli import custos

OPERATOR = f"operator {pwd.getpwuid(os.geteuid()).pw_name} (system account)"


def _events(services: Services) -> list[dict[str, Any]]:
    with services.sessions() as session:
        rows = session.execute(select(Event).order_by(Event.id)).scalars().all()
        return [
            {
                "type": e.type,
                "agent": e.agent,
                "detail": e.detail,
                "package": e.package_id,
                "links": [(k.object_type, k.object_id) for k in e.links],
            }
            for e in rows
        ]


def _secrets_of(body: dict[str, Any]) -> list[str]:
    """What must never be recorded: the token, its id and secret parts, the TOTP secret."""
    token = body["token"]
    _, token_id, token_secret = token.split("_", 2)
    found = [token, token_id, token_secret]
    if body.get("totp_secret"):
        found += [body["totp_secret"], body["totp_uri"]]
    return found


def test_each_user_administration_command_is_one_custody_event(
    make_services: MakeServices, catalog_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    services = make_services(catalog_url)
    data, env = services.settings.data_dir, {"CUSTOS_DATABASE_URL": catalog_url}
    secrets: list[str] = []
    printed: list[str] = []  # everything the commands wrote, but the one-time token output

    def run(*args: str) -> Any:
        before = len(_events(services))
        code, body, err = custos(data, "users", *args, "--json", env=env)
        assert code == 0, err
        printed.append(err)
        if "token" in body:
            secrets.extend(_secrets_of(body))
        after = _events(services)
        assert len(after) == before + 1, after[before:]  # exactly one event per command
        (event,) = after[before:]
        assert event["type"] == "user administration" and event["package"] is None
        assert event["agent"] == OPERATOR and f"by {OPERATOR}" in event["detail"]
        return event

    event = run("add", "regina", "--role", "registrar", "--reason", "joins the registry")
    assert event["detail"].startswith("user regina added: role registrar, second factor")
    assert "reason: joins the registry" in event["detail"]
    assert event["links"] == [("user", "regina")]
    code, _, err = custos(data, "depositors", "add", "Sample Mechanism", env=env)
    assert code == 0, err
    event = run("add", "dora", "--role", "depositor", "--organisation", "Sample Mechanism")
    assert "role depositor of Sample Mechanism, no second factor" in event["detail"]
    assert "reason: none stated" in event["detail"]
    event = run("disable", "regina", "--reason", "token seen in a shared mailbox")
    assert event["detail"].startswith("user regina (role registrar) disabled")
    assert "reason: token seen in a shared mailbox" in event["detail"]
    event = run("token", "regina", "--new-totp", "--reason", "re-enrolled after the leak")
    assert event["detail"].startswith(
        "user regina (role registrar) given a new API token and a new TOTP secret; enabled again"
    )
    assert "reason: re-enrolled after the leak" in event["detail"]
    event = run("token", "dora")
    assert event["detail"].startswith("user dora (role depositor of Sample Mechanism) given a")
    assert "TOTP" not in event["detail"] and "enabled again" not in event["detail"]

    # Refusals record nothing: no reason, an unknown user, a name taken.
    count = len(_events(services))
    for args, status in (
        (("disable", "dora"), 65),
        (("disable", "nobody", "--reason", "x"), 4),
        (("token", "nobody"), 4),
        (("add", "Regina", "--role", "researcher"), 65),
    ):
        code, _, err = custos(data, "users", *args, "--json", env=env)
        assert code == status, (args, err)
    assert len(_events(services)) == count

    # Never a token, its hash or a TOTP secret: not in the log, not in what was printed
    # (beyond the one-time output), not in the application's log.
    with services.sessions() as session:
        secrets += list(session.execute(select(User.token_hash)).scalars())
        secrets += [s for s in session.execute(select(User.totp_secret)).scalars() if s]
    assert len(secrets) >= 15
    written = [f"{e['agent']} {e['detail']} {e['links']}" for e in _events(services)]
    assert "user regina disabled" in caplog.text  # the application's log was captured
    for secret in secrets:
        for text in (*written, caplog.text, *printed):
            assert secret not in text
    # The chain holds.
    code, audit, err = custos(data, "audit", "verify", "--json", env=env)
    assert code == 0 and audit["verified"], err
    assert audit["entries"] == len(_events(services)) == 6  # and one depositor registered
