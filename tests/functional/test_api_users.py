"""Users, tokens and second factors: `custos users add`, hashed tokens, TOTP, bad credentials."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from archive.catalog.tables import User
from archive.services import Services
from tests.api_support import make_users
from tests.functional.test_cli import custos


def test_users_add_prints_the_token_once_and_keeps_only_a_hash(tmp_path: Path) -> None:
    code, body, err = custos(tmp_path, "users", "add", "rita", "--role", "researcher", "--json")
    assert code == 0, err
    token = body["token"]
    assert token.startswith("custos_") and body["totp_secret"] is None
    code, reg, _ = custos(tmp_path, "users", "add", "regina", "--role", "registrar", "--json")
    assert code == 0 and reg["totp_secret"] and reg["totp_uri"].startswith("otpauth://totp/")
    code, listing, _ = custos(tmp_path, "users", "list", "--json")
    assert [(u["name"], u["second_factor"]) for u in listing["users"]] == [
        ("regina", True),
        ("rita", False),
    ]
    assert token not in str(listing)
    db = b"".join(
        p.read_bytes() for p in tmp_path.glob("catalog.sqlite3*") if p.is_file()
    )  # the database and its write-ahead log
    secret = token.split("_", 2)[2]
    assert token.encode() not in db and secret.encode() not in db
    assert b"$argon2id$" in db
    # Again: refused, naming the reason; nothing printed as a token.
    code, again, err = custos(tmp_path, "users", "add", "rita", "--role", "researcher", "--json")
    assert code == 2 and again["findings"][0]["code"] == "USER-EXISTS" and "token" not in again


@pytest.mark.parametrize(
    ("args", "finding"),
    [
        (["bob", "--role", "king"], "USER-ROLE"),
        (["dora", "--role", "depositor"], "USER-ORGANISATION"),
        (["arno", "--role", "archivist", "--organisation", "X"], "USER-ORGANISATION"),
        (["bad name!", "--role", "researcher"], "USER-NAME"),
    ],
)
def test_bad_user_definitions_are_refused(tmp_path: Path, args: list[str], finding: str) -> None:
    code, body, err = custos(tmp_path, "users", "add", *args, "--json")
    assert code == 2 and body["findings"][0]["code"] == finding, err


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services.settings))


def test_credentials_and_second_factor(services: Services, client: TestClient) -> None:
    users = make_users(services)
    with client:
        ok = client.get("/archivist/status", headers=users.bearer("archivist"))
        assert ok.status_code == 200
        for header in (
            "Bearer custos_0123456789abcdef_" + "x" * 43,  # unknown token
            "Bearer " + users.archivist.token[:-1] + "y",  # right id, wrong secret
            "Bearer nonsense",
            "Basic dXNlcjpwYXNz",
            "ApiKey arno:" + users.researcher.token,  # someone else's key
        ):
            r = client.get("/archivist/status", headers={"Authorization": header})
            assert r.status_code == 401, header
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == "the credentials are not valid"
            assert "Bearer" in r.headers["www-authenticate"]
        # A wrong token on a public endpoint is refused, never read as anonymous.
        r = client.get("/public/search", headers={"Authorization": "Bearer nonsense"})
        assert r.status_code == 401
        # Registrars: no code, a wrong code, a code without credentials.
        r = client.get("/registrar/access-log", headers=users.bearer("registrar"))
        assert r.status_code == 401 and "X-Custos-TOTP" in r.json()["hint"]
        wrong = {**users.bearer("registrar"), "X-Custos-TOTP": "000000"}
        assert users.registrar.totp_secret
        if pyotp.TOTP(users.registrar.totp_secret).verify("000000", valid_window=1):
            wrong["X-Custos-TOTP"] = "999999"
        r = client.get("/registrar/access-log", headers=wrong)
        assert r.status_code == 401 and "not valid" in r.json()["detail"]
        r = client.get("/registrar/access-log", headers={"X-Custos-TOTP": "123456"})
        assert r.status_code == 401
        r = client.get("/registrar/access-log", headers=users.bearer("registrar", totp=True))
        assert r.status_code == 200
        # Roles are kept apart.
        r = client.get("/registrar/access-log", headers=users.bearer("archivist"))
        assert r.status_code == 403
        r = client.put("/deposits?filename=a.zip", headers=users.bearer("researcher"))
        assert r.status_code == 403


def test_tokens_are_stored_as_argon2_hashes(services: Services) -> None:
    users = make_users(services)
    with services.sessions() as session:
        rows = session.execute(select(User.token_hash, User.totp_secret, User.role)).all()
    for token_hash, totp, role in rows:
        assert token_hash.startswith("$argon2id$")
        assert (totp is not None) == (role == "registrar")
    assert all(u.token not in str(rows) for u in (users.researcher, users.registrar))
