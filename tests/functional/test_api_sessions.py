"""Sessions through the real app, on SQLite and PostgreSQL: one TOTP code starts a session
whose token serves many second-factor requests with no new code; an expired, ended or
unknown session token is refused with a bad token's words and counts towards the address's
failures; disabling the user or giving a new token ends every session; starts and ends are
custody events; the token appears in no event, log line or error body; a session never
raises a role."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from access.accounts.totp import WRONG_CODE
from api.app import create_app
from archive.catalog.tables import AuthSession, Event, User
from archive.config import load_settings
from archive.errors import ConfigError
from archive.services import Services
from ingest.service import identify_package
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.functional.test_cli import custos
from tests.helpers import deposit
from tests.totp import fresh_code

LETTER = "data/documents/transfer-letter.txt"
BAD_TOKEN = {"Authorization": "Bearer custos_0123456789abcdef_" + "x" * 43}
START, CURRENT = "/auth/sessions", "/auth/sessions/current"

Held = tuple[Services, TestClient, Users, str]


@pytest.fixture
def held(make_services: MakeServices, catalog_url: str) -> Iterator[Held]:
    services = make_services(catalog_url)
    result = deposit(services, SAMPLE, depositor="Sample Mechanism")
    identify_package(services, result.package_id)
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, users, result.package_id.removeprefix("urn:uuid:")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _start(client: TestClient, users: Users, role: str = "registrar") -> dict[str, Any]:
    r = client.post(START, headers=users.bearer(role, totp=role == "registrar"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def _events(services: Services, type_: str = "user session") -> list[tuple[str, str]]:
    with services.sessions() as session:
        rows = session.execute(select(Event).where(Event.type == type_).order_by(Event.id))
        return [(e.agent, e.detail) for e in rows.scalars()]


def _last_step(services: Services, name: str = "regina") -> int | None:
    with services.sessions() as session:
        return session.execute(select(User.totp_last_step).where(User.name == name)).scalar()


def _refused_like_a_bad_token(client: TestClient, response: Response) -> None:
    bad = client.get("/registrar/reviews", headers=BAD_TOKEN)
    assert response.status_code == bad.status_code == 401
    assert response.json() == bad.json()
    assert response.headers["www-authenticate"] == bad.headers["www-authenticate"]


def test_one_code_starts_a_session_for_many_second_factor_requests(held: Held) -> None:
    services, client, users, uuid = held
    before = datetime.now(UTC)
    started = client.post(START, headers=users.bearer("registrar", totp=True))
    assert started.status_code == 201
    assert started.headers["cache-control"] == "no-store"
    body = started.json()
    token = body["token"]
    assert token.startswith("custos_session_") and len(token) == len("custos_session_") + 43
    assert (body["user"], body["role"], body["second_factor"]) == ("regina", "registrar", True)
    assert body["expires_in"] == 15 * 60  # auth.session_minutes, default 15
    expires = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(minutes=15) <= expires <= datetime.now(UTC) + timedelta(minutes=15)
    step = _last_step(services)

    # Several requests that need the second factor, with no new code.
    url = f"/registrar/packages/{uuid}/files/{LETTER}"
    for _ in range(3):
        r = client.get(url, params={"purpose": "prosecution"}, headers=_bearer(token))
        assert r.status_code == 200 and r.content == (SAMPLE / LETTER).read_bytes()
        assert client.get("/registrar/reviews", headers=_bearer(token)).status_code == 200
    assert _last_step(services) == step  # no code was taken
    reads = _events(services, "access")
    assert len(reads) == 3 and all(agent == "registrar regina" for agent, _ in reads)

    # A code sent with the session token is not read: not checked, not used up. The same
    # code then proves the API token on a request of its own.
    code = fresh_code(users.registrar.totp_secret)
    with_code = {**_bearer(token), "X-Custos-TOTP": code}
    assert client.get("/registrar/reviews", headers=with_code).status_code == 200
    assert _last_step(services) == step
    wrong = {**_bearer(token), "X-Custos-TOTP": "not a code"}
    assert client.get("/registrar/reviews", headers=wrong).status_code == 200
    api = {**users.bearer("registrar"), "X-Custos-TOTP": code}
    assert client.get("/registrar/reviews", headers=api).status_code == 200
    assert _last_step(services) is not None and _last_step(services) != step

    # The catalog keeps the SHA-256 of the token, the user, the times and the address.
    with services.sessions() as session:
        row = session.execute(select(AuthSession)).scalar_one()
        user_id = session.execute(select(User.id).where(User.name == "regina")).scalar()
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert (row.user_id, row.second_factor, row.client_address) == (user_id, True, "testclient")
    assert row.expires_at - row.created_at == timedelta(minutes=15) and row.ended_at is None
    ((agent, detail),) = _events(services)
    assert agent == "registrar regina"
    assert detail == (
        f"session {row.id} of user regina (role registrar) started with a second factor "
        f"(TOTP) from testclient; expires {row.expires_at:%Y-%m-%dT%H:%M:%SZ}"
    )


def test_the_lifetime_comes_from_the_settings(make_services: MakeServices) -> None:
    services = make_services(auth={"session_minutes": 2})
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        assert _start(client, users)["expires_in"] == 120
    for minutes in (0, 481):
        with pytest.raises(ConfigError, match="session_minutes"):
            load_settings(environ={}, overrides={"auth": {"session_minutes": minutes}})


def test_expired_ended_and_unknown_sessions_are_refused_like_a_bad_token(
    held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, client, users, _ = held
    token = _start(client, users)["token"]
    assert client.get("/registrar/reviews", headers=_bearer(token)).status_code == 200

    # Expired: the clock sessions are checked at moves past the expiry (no waiting).
    monkeypatch.setattr(
        "archive.clock.source", lambda: datetime.now(UTC) + timedelta(minutes=15, seconds=1)
    )
    _refused_like_a_bad_token(client, client.get("/registrar/reviews", headers=_bearer(token)))
    # ...whatever code comes with it (and the code is not used up).
    step = _last_step(services)
    code = fresh_code(users.registrar.totp_secret)
    r = client.get("/registrar/reviews", headers={**_bearer(token), "X-Custos-TOTP": code})
    _refused_like_a_bad_token(client, r)
    assert _last_step(services) == step
    # An expired session cannot be ended either; a new one starts at the new time.
    _refused_like_a_bad_token(client, client.delete(CURRENT, headers=_bearer(token)))
    fresh = _start(client, users)["token"]
    assert client.get("/registrar/reviews", headers=_bearer(fresh)).status_code == 200
    monkeypatch.setattr("archive.clock.source", lambda: datetime.now(UTC))

    # Ended by its client.
    other = _start(client, users)["token"]
    r = client.delete(CURRENT, headers=_bearer(other))
    assert r.status_code == 200 and r.json()["status"] == "ended"
    _refused_like_a_bad_token(client, client.get("/registrar/reviews", headers=_bearer(other)))
    _refused_like_a_bad_token(client, client.delete(CURRENT, headers=_bearer(other)))
    ended = [d for _, d in _events(services) if " ended: " in d]
    assert len(ended) == 1 and "ended by its client from testclient" in ended[0]
    with services.sessions() as session:
        row = session.execute(
            select(AuthSession).where(AuthSession.ended_at.is_not(None))
        ).scalar_one()
    assert row.ended_reason == "ended by its client" and row.id in ended[0]

    # Unknown, and malformed.
    for made_up in ("custos_session_" + "A" * 43, "custos_session_short", token + "x"):
        r = client.get("/registrar/reviews", headers=_bearer(made_up))
        _refused_like_a_bad_token(client, r)


def test_refused_session_tokens_count_towards_the_address_failures(
    make_services: MakeServices,
) -> None:
    services = make_services(auth={"failures_per_minute": 3})
    users = make_users(services)
    while time.time() % 60 > 45:  # the allowance is per minute: start well inside one
        time.sleep(1)
    with TestClient(create_app(services.settings)) as client:
        token = _start(client, users)["token"]
        assert client.delete(CURRENT, headers=_bearer(token)).status_code == 200
        for refused in (token, "custos_session_" + "B" * 43, "custos_session_"):
            assert client.get("/registrar/reviews", headers=_bearer(refused)).status_code == 401
        r = client.get("/public/search?q=x", headers=users.bearer("researcher"))
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60


def test_disabling_the_user_or_a_new_token_ends_every_session(held: Held) -> None:
    services, client, users, _ = held
    data = services.settings.data_dir
    env = {"CUSTOS_DATABASE_URL": services.settings.database_url or ""}
    tokens = [_start(client, users)["token"] for _ in range(2)]
    for token in tokens:
        assert client.get("/registrar/reviews", headers=_bearer(token)).status_code == 200

    code, _, err = custos(data, "users", "disable", "regina", "--reason", "laptop lost", env=env)
    assert code == 0, err
    for token in tokens:
        _refused_like_a_bad_token(client, client.get("/registrar/reviews", headers=_bearer(token)))
    ended = [(a, d) for a, d in _events(services) if " ended: " in d]
    assert len(ended) == 2
    for agent, detail in ended:
        assert agent.startswith("operator ") and "(system account)" in agent
        assert "of user regina (role registrar) ended: the user was disabled; by operator" in (
            detail
        )

    # A new token enables the user again; the sessions stay ended.
    code, new, err = custos(data, "users", "token", "regina", "--json", env=env)
    assert code == 0, err
    for token in tokens:
        assert client.get("/registrar/reviews", headers=_bearer(token)).status_code == 401
    assert len([d for _, d in _events(services) if " ended: " in d]) == 2  # none was live
    new_api = {"Authorization": f"Bearer {new['token']}"}
    r = client.post(
        START, headers={**new_api, "X-Custos-TOTP": fresh_code(users.registrar.totp_secret)}
    )
    assert r.status_code == 201
    live = r.json()["token"]
    assert client.get("/registrar/reviews", headers=_bearer(live)).status_code == 200

    # A new token and TOTP secret end it too.
    code, _, err = custos(data, "users", "token", "regina", "--new-totp", "--json", env=env)
    assert code == 0, err
    _refused_like_a_bad_token(client, client.get("/registrar/reviews", headers=_bearer(live)))
    last = [d for _, d in _events(services) if " ended: " in d][-1]
    assert "ended: the user was given a new API token and a new TOTP secret; by operator" in last
    with services.sessions() as session:
        reasons = session.execute(select(AuthSession.ended_reason)).scalars().all()
    assert sorted(reasons, key=str) == sorted(
        ["the user was disabled"] * 2 + ["the user was given a new API token and a new TOTP secret"]
    )
    code, body, err = custos(data, "audit", "verify", "--json", env=env)
    assert code == 0, (body, err)


def test_a_session_token_appears_in_no_event_log_or_error_body(
    held: Held, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    services, client, users, uuid = held
    token = _start(client, users)["token"]
    secret = token.removeprefix("custos_session_")
    digest = hashlib.sha256(token.encode()).hexdigest()
    answers = [
        client.get(f"/registrar/packages/{uuid}/files/{LETTER}", headers=_bearer(token)),  # 422
        client.get("/registrar/packages/no-such-package", headers=_bearer(token)),  # 404
        client.get("/archivist/status", headers=_bearer(token)),  # 403
        client.get("/public/search?q=x", headers=_bearer(token)),  # 403
        client.post(START, headers=_bearer(token)),  # 422: a session cannot start another
        client.get("/registrar/reviews", headers=_bearer(token + "x")),  # 401
        client.delete(CURRENT, headers=_bearer(token)),  # 200
        client.get("/registrar/reviews", headers=_bearer(token)),  # 401
        client.delete(CURRENT, headers=_bearer(token)),  # 401
    ]
    assert [a.status_code for a in answers] == [422, 404, 403, 403, 422, 401, 200, 401, 401]
    with services.sessions() as session:
        recorded = [
            " ".join([e.agent, e.detail, *(f"{k.object_type} {k.object_id}" for k in e.links)])
            for e in session.execute(select(Event)).scalars()
        ]
    assert len([r for r in recorded if r.startswith("registrar regina") and "session" in r]) == 2
    seen = "\n".join([*recorded, caplog.text, *(a.text for a in answers), *map(str, answers)])
    assert "session" in caplog.text  # the log says what happened...
    for hidden in (token, secret, digest):
        assert hidden not in seen  # ...never with the token or its hash
    for answer in answers:
        assert all(secret not in value for value in answer.headers.values())


def test_starting_a_session_needs_the_api_token_and_a_fresh_code(held: Held) -> None:
    services, client, users, _ = held
    secret = users.registrar.totp_secret
    # No code: the role needs one.
    r = client.post(START, headers=users.bearer("registrar"))
    assert r.status_code == 401 and "X-Custos-TOTP" in r.json()["hint"]
    assert "second factor" in r.json()["detail"]
    # A code used before (on another request) is refused like a wrong one.
    code = fresh_code(secret)
    api = {**users.bearer("registrar"), "X-Custos-TOTP": code}
    assert client.get("/registrar/reviews", headers=api).status_code == 200
    r = client.post(START, headers=api)
    assert r.status_code == 401 and r.json()["detail"] == WRONG_CODE
    # The code that started a session cannot start another.
    code = fresh_code(secret)
    api = {**users.bearer("registrar"), "X-Custos-TOTP": code}
    token = client.post(START, headers=api).json()["token"]
    r = client.post(START, headers=api)
    assert r.status_code == 401 and r.json()["detail"] == WRONG_CODE
    # A session cannot start another (it would last for ever on one code).
    r = client.post(START, headers={**_bearer(token), "X-Custos-TOTP": fresh_code(secret)})
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "SESSION-FROM-SESSION"
    # No credentials, wrong credentials, a code without credentials.
    assert client.post(START).status_code == 401
    _refused_like_a_bad_token(client, client.post(START, headers=BAD_TOKEN))
    assert client.post(START, headers={"X-Custos-TOTP": fresh_code(secret)}).status_code == 401
    # Ending needs a session token.
    r = client.delete(CURRENT, headers=users.bearer("researcher"))
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "SESSION-NONE"
    assert client.delete(CURRENT).status_code == 401
    # One session, one start event: every refusal left nothing behind.
    with services.sessions() as session:
        assert session.execute(select(func.count()).select_from(AuthSession)).scalar() == 1
    assert len(_events(services)) == 1


def test_a_session_never_raises_a_role(held: Held) -> None:
    services, client, users, uuid = held
    rita = _start(client, users, "researcher")
    assert (rita["role"], rita["second_factor"]) == ("researcher", False)
    as_rita = _bearer(rita["token"])
    assert client.get("/public/search?q=x", headers=as_rita).status_code == 200
    for method, url in (
        ("GET", "/registrar/reviews"),
        ("GET", f"/registrar/packages/{uuid}/files/{LETTER}?purpose=prosecution"),
        ("GET", "/archivist/status"),
        ("PUT", "/deposits?filename=a.zip"),
    ):
        assert client.request(method, url, headers=as_rita).status_code == 403, url
    arno = _start(client, users, "archivist")
    assert (arno["role"], arno["second_factor"]) == ("archivist", False)
    as_arno = _bearer(arno["token"])
    assert client.get("/archivist/status", headers=as_arno).status_code == 200
    assert client.get("/registrar/reviews", headers=as_arno).status_code == 403
    dora = _start(client, users, "depositor")
    assert client.get("/deposits/no-such-upload", headers=_bearer(dora["token"])).status_code == 404
    assert client.get("/registrar/reviews", headers=_bearer(dora["token"])).status_code == 403
    # A registrar's session stays a registrar's: staff may not use the public endpoints.
    regina = _bearer(_start(client, users)["token"])
    assert client.get("/archivist/status", headers=regina).status_code == 403
    assert client.get("/public/search?q=x", headers=regina).status_code == 403
    with services.sessions() as session:
        factors = dict(
            session.execute(
                select(User.name, AuthSession.second_factor).join(
                    User, User.id == AuthSession.user_id
                )
            ).all()
        )
    assert factors == {"rita": False, "arno": False, "dora": False, "regina": True}


def test_the_sessions_of_a_user_are_bounded(make_services: MakeServices) -> None:
    services = make_services(auth={"sessions_per_user": 2})
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        first, _ = (_start(client, users, "researcher")["token"] for _ in range(2))
        r = client.post(START, headers=users.bearer("researcher"))
        assert r.status_code == 429 and "sessions_per_user" in r.json()["detail"]
        assert 14 * 60 < int(r.headers["retry-after"]) <= 15 * 60 + 1
        assert client.delete(CURRENT, headers=_bearer(first)).status_code == 200
        assert client.post(START, headers=users.bearer("researcher")).status_code == 201
        # Another user is not affected.
        assert client.post(START, headers=users.bearer("archivist")).status_code == 201
    assert len([d for _, d in _events(services) if " started " in d]) == 4


def test_the_catalog_keeps_no_session_token(tmp_path: Path) -> None:
    """On SQLite the whole database can be read: the token is not in it, its hash is."""
    code, reg, _ = custos(tmp_path, "users", "add", "regina", "--role", "registrar", "--json")
    assert code == 0
    settings = load_settings(data_dir=tmp_path, environ={})
    with TestClient(create_app(settings)) as client:
        r = client.post(
            START,
            headers={
                "Authorization": f"Bearer {reg['token']}",
                "X-Custos-TOTP": fresh_code(reg["totp_secret"]),
            },
        )
        token = r.json()["token"]
        assert client.delete(CURRENT, headers=_bearer(token)).status_code == 200
    db = b"".join(p.read_bytes() for p in tmp_path.glob("catalog.sqlite3*") if p.is_file())
    assert token.encode() not in db and token.removeprefix("custos_session_").encode() not in db
    assert hashlib.sha256(token.encode()).hexdigest().encode() in db
