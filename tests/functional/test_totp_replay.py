"""A TOTP code is accepted once, whichever way it comes (the API or the command line), on
SQLite and PostgreSQL; a code used before is refused like a wrong one and counts towards the
lock. Codes are made for chosen times with pyotp's ``at``, at the time the server checks
them (``tests.totp.CLOCK``), never by waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from access.accounts.totp import WRONG_CODE
from api.app import create_app
from archive.catalog.tables import User
from archive.config import load_settings
from archive.services import Services
from tests.conftest import MakeServices
from tests.functional.test_cli import custos
from tests.totp import CLOCK

LOG = "/registrar/access-log"


def _headers(token: str, code: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Custos-TOTP": code}


def _registrar(services: Services) -> dict[str, Any]:
    """A registrar made with `custos users add`, as an administrator would."""
    env = {"CUSTOS_DATABASE_URL": services.settings.database_url or ""}
    code, body, err = custos(
        services.settings.data_dir, "users", "add", "regina", "--role", "registrar", "--json",
        env=env,
    )  # fmt: skip
    assert code == 0, err
    return dict(body)


def _last_step(services: Services) -> int | None:
    with services.sessions() as session:
        return session.execute(select(User.totp_last_step).where(User.name == "regina")).scalar()


def _wrong(secret: str, at: float) -> str:
    totp = pyotp.TOTP(secret)
    return next(c for c in ("000000", "999999") if not totp.verify(c, for_time=at, valid_window=1))


def test_a_code_is_accepted_once_through_the_api(
    make_services: MakeServices, catalog_url: str
) -> None:
    services = make_services(catalog_url)
    reg = _registrar(services)
    totp, token = pyotp.TOTP(reg["totp_secret"]), reg["token"]
    now = CLOCK()
    code = totp.at(now)
    with TestClient(create_app(services.settings)) as client:
        assert client.get(LOG, headers=_headers(token, code)).status_code == 200
        assert _last_step(services) == totp.timecode(now)
        # The same code again: refused with the words a wrong code gets, and a hint to wait.
        again = client.get(LOG, headers=_headers(token, code))
        wrong = client.get(LOG, headers=_headers(token, _wrong(reg["totp_secret"], now)))
        assert again.status_code == wrong.status_code == 401
        assert again.json()["detail"] == wrong.json()["detail"] == WRONG_CODE
        assert again.json()["hint"] == wrong.json()["hint"]
        assert "wait for the next" in again.json()["hint"]
        # The code of the step before is still inside the clock-drift window, but older than
        # the one used: refused too.
        before = client.get(LOG, headers=_headers(token, totp.at(now - 30)))
        assert before.status_code == 401
        # The next time step's code is accepted (once).
        nxt = totp.at(now + 30)
        assert client.get(LOG, headers=_headers(token, nxt)).status_code == 200
        assert _last_step(services) == totp.timecode(now) + 1
        assert client.get(LOG, headers=_headers(token, nxt)).status_code == 401
    # Another serving process on the same catalog refuses it too: the step is in the catalog.
    with TestClient(create_app(services.settings)) as other:
        assert other.get(LOG, headers=_headers(token, nxt)).status_code == 401
        CLOCK.offset += 60  # a minute later, as the server sees it (no waiting)
        later = totp.at(CLOCK())
        assert other.get(LOG, headers=_headers(token, later)).status_code == 200


def test_replayed_codes_count_towards_the_lock(
    make_services: MakeServices, catalog_url: str
) -> None:
    services = make_services(catalog_url, auth={"totp_attempts": 3, "totp_lockout_minutes": 10})
    reg = _registrar(services)
    totp, token = pyotp.TOTP(reg["totp_secret"]), reg["token"]
    now = CLOCK()
    code = totp.at(now)
    with TestClient(create_app(services.settings)) as client:
        assert client.get(LOG, headers=_headers(token, code)).status_code == 200
        for _ in range(3):  # someone who saw the code sends it again
            assert client.get(LOG, headers=_headers(token, code)).status_code == 401
        # Locked: even the next (right, unused) code is not checked now.
        r = client.get(LOG, headers=_headers(token, totp.at(now + 30)))
        assert r.status_code == 429 and "locked" in r.json()["detail"]
        assert 500 < int(r.headers["retry-after"]) <= 601
    with services.sessions() as session:
        user = session.execute(select(User).where(User.name == "regina")).scalar_one()
        assert user.totp_locked_until is not None
        assert user.totp_last_step == totp.timecode(now)  # the refused code took no step


def test_a_code_is_accepted_once_on_the_command_line_and_through_the_api(
    make_services: MakeServices, catalog_url: str
) -> None:
    """`custos policies approve|extend` prove the registrar with the same check: a code used
    by the API is refused on the command line, and the other way round."""
    services = make_services(catalog_url)
    reg = _registrar(services)
    totp, token = pyotp.TOTP(reg["totp_secret"]), reg["token"]
    data, env = services.settings.data_dir, {"CUSTOS_DATABASE_URL": catalog_url}

    def approve(code: str) -> tuple[int, Any]:
        status, body, _ = custos(
            data, "policies", "approve", "feedbeef", "--registrar", "regina", "--json",
            env={**env, "CUSTOS_TOKEN": token, "CUSTOS_TOTP": code},
        )  # fmt: skip
        return status, body

    now = CLOCK()
    first = totp.at(now)
    # Proven (the review then does not exist: exit 4, after the registrar was proven).
    status, body = approve(first)
    assert status == 4 and "no review" in body["message"]
    status, body = approve(first)  # the same code again
    assert status == 77 and body["error"] == "SecondFactorRequired"
    assert body["message"] == WRONG_CODE and "wait for the next" in body["hint"]
    with TestClient(create_app(services.settings)) as client:
        assert client.get(LOG, headers=_headers(token, first)).status_code == 401
        second = totp.at(now + 30)
        assert client.get(LOG, headers=_headers(token, second)).status_code == 200
    status, body = approve(second)
    assert status == 77 and body["error"] == "SecondFactorRequired"
    assert _last_step(services) == totp.timecode(now) + 1
    with services.sessions() as session:
        failures = session.execute(select(User.totp_failures).where(User.name == "regina"))
        assert failures.scalar() == 1  # the last refusal; the right code before reset the count


def test_a_new_secret_starts_afresh(tmp_path: Path) -> None:
    """`custos users token NAME --new-totp`: the new secret's current code is accepted even
    though a code of the same time step was used with the old one."""
    _, reg, _ = custos(tmp_path, "users", "add", "regina", "--role", "registrar", "--json")
    settings = load_settings(data_dir=tmp_path)
    now = CLOCK()
    with TestClient(create_app(settings)) as client:
        old = _headers(reg["token"], pyotp.TOTP(reg["totp_secret"]).at(now))
        assert client.get(LOG, headers=old).status_code == 200
        code, new, _ = custos(tmp_path, "users", "token", "regina", "--new-totp", "--json")
        assert code == 0
        fresh = _headers(new["token"], pyotp.TOTP(new["totp_secret"]).at(now))
        assert client.get(LOG, headers=fresh).status_code == 200
        assert client.get(LOG, headers=fresh).status_code == 401
