"""Users, tokens and second factors: `custos users add`, hashed tokens, TOTP, bad credentials."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from access.accounts.users import FailureWindow
from api.app import create_app
from archive.catalog.tables import User
from archive.config import Settings, load_settings
from archive.errors import TooManyAttempts
from archive.services import Services
from tests.api_support import make_users
from tests.functional.test_cli import custos
from tests.totp import CLOCK, fresh_code


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
    # Again, or in other case: refused, naming the reason; nothing printed as a token.
    for name in ("rita", "Rita"):
        code, again, err = custos(tmp_path, "users", "add", name, "--role", "researcher", "--json")
        assert code == 65 and again["findings"][0]["code"] == "USER-EXISTS" and "token" not in again


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
    assert code == 65 and body["findings"][0]["code"] == finding, err


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
        if pyotp.TOTP(users.registrar.totp_secret).verify(
            "000000", for_time=CLOCK(), valid_window=1
        ):
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


def _wrong_code(secret: str) -> str:
    """A six-digit code the authenticator does not show now (nor half a minute either way)."""
    totp = pyotp.TOTP(secret)
    return next(
        c
        for c in ("000000", "999999", "123456")
        if not totp.verify(c, for_time=CLOCK(), valid_window=1)
    )


def test_a_disabled_user_is_refused_and_a_new_token_replaces_the_old(tmp_path: Path) -> None:
    _, rita, _ = custos(tmp_path, "users", "add", "rita", "--role", "researcher", "--json")
    services_client = TestClient(create_app(_settings(tmp_path)))
    with services_client as client:
        who = {"Authorization": f"Bearer {rita['token']}"}
        assert client.get("/public/search?q=x", headers=who).status_code == 200
        code, body, _ = custos(tmp_path, "users", "disable", "rita", "--reason", "lost laptop")
        assert code == 0
        r = client.get("/public/search?q=x", headers=who)
        assert r.status_code == 401 and r.json()["detail"] == "the credentials are not valid"
        _, listing, _ = custos(tmp_path, "users", "list", "--json")
        assert [(u["name"], u["active"], u["disabled_reason"]) for u in listing["users"]] == [
            ("rita", False, "lost laptop")
        ]
        code, new, _ = custos(tmp_path, "users", "token", "rita", "--json")
        assert code == 0 and new["status"] == "replaced" and new["token"] != rita["token"]
        assert client.get("/public/search?q=x", headers=who).status_code == 401  # old: never
        fresh = {"Authorization": f"Bearer {new['token']}"}
        assert client.get("/public/search?q=x", headers=fresh).status_code == 200
    # Bad requests: an unknown user, no reason. Nothing changes.
    code, body, _ = custos(tmp_path, "users", "disable", "nobody", "--reason", "x", "--json")
    assert code == 4 and "nobody" in body["message"]
    code, body, _ = custos(tmp_path, "users", "disable", "rita", "--json")
    assert code == 65 and body["findings"][0]["code"] == "USER-REASON"
    code, body, _ = custos(tmp_path, "users", "token", "nobody", "--json")
    assert code == 4
    _, listing, _ = custos(tmp_path, "users", "list", "--json")
    assert listing["users"][0]["active"] is True


def _settings(tmp_path: Path, **auth: int) -> Settings:
    return load_settings(data_dir=tmp_path, overrides={"auth": auth} if auth else None)


def test_wrong_totp_codes_lock_the_second_factor_everywhere(tmp_path: Path) -> None:
    code, reg, _ = custos(tmp_path, "users", "add", "regina", "--role", "registrar", "--json")
    assert code == 0
    secret, token = reg["totp_secret"], reg["token"]
    settings = _settings(tmp_path, totp_attempts=3, totp_lockout_minutes=10)
    wrong = {"Authorization": f"Bearer {token}", "X-Custos-TOTP": _wrong_code(secret)}
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            r = client.get("/registrar/access-log", headers=wrong)
            assert r.status_code == 401 and "not valid" in r.json()["detail"]
        right = {"Authorization": f"Bearer {token}", "X-Custos-TOTP": fresh_code(secret)}
        r = client.get("/registrar/access-log", headers=right)
        assert r.status_code == 429 and "locked" in r.json()["detail"]
        assert 500 < int(r.headers["retry-after"]) <= 601
    # Another serving process (a new app on the same catalog) honours the lock too.
    with TestClient(create_app(settings)) as other:
        assert other.get("/registrar/access-log", headers=right).status_code == 429
        # Without a code the registrar is still who they are, but gets nothing needing one.
        r = other.get("/registrar/access-log", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and "X-Custos-TOTP" in r.json()["hint"]
    # An administrator re-enrols the user: the new secret's code works at once.
    code, new, _ = custos(tmp_path, "users", "token", "regina", "--new-totp", "--json")
    assert code == 0 and new["totp_secret"] and new["totp_secret"] != secret
    with TestClient(create_app(settings)) as client:
        ok = {
            "Authorization": f"Bearer {new['token']}",
            "X-Custos-TOTP": fresh_code(new["totp_secret"]),
        }
        assert client.get("/registrar/access-log", headers=ok).status_code == 200


def test_a_right_code_resets_the_count_of_wrong_ones(tmp_path: Path) -> None:
    _, reg, _ = custos(tmp_path, "users", "add", "regina", "--role", "registrar", "--json")
    secret, token = reg["totp_secret"], reg["token"]
    wrong = {"Authorization": f"Bearer {token}", "X-Custos-TOTP": _wrong_code(secret)}
    with TestClient(create_app(_settings(tmp_path, totp_attempts=3))) as client:
        for _ in range(5):  # two wrong, one right, never three wrong in a row
            for _ in range(2):
                assert client.get("/registrar/access-log", headers=wrong).status_code == 401
            right = {"Authorization": f"Bearer {token}", "X-Custos-TOTP": fresh_code(secret)}
            assert client.get("/registrar/access-log", headers=right).status_code == 200


def test_an_address_sending_wrong_credentials_is_refused_unchecked(tmp_path: Path) -> None:
    _, rita, _ = custos(tmp_path, "users", "add", "rita", "--role", "researcher", "--json")
    while time.time() % 60 > 45:  # the allowance is per minute: start well inside one
        time.sleep(1)
    with TestClient(create_app(_settings(tmp_path, failures_per_minute=3))) as client:
        bad = {"Authorization": "Bearer custos_0123456789abcdef_" + "x" * 43}
        for _ in range(3):
            assert client.get("/public/search?q=x", headers=bad).status_code == 401
        good = {"Authorization": f"Bearer {rita['token']}"}
        r = client.get("/public/search?q=x", headers=good)
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
        assert r.headers["content-type"] == "application/problem+json"
        # Reading the public record needs no credentials, and is not held up.
        assert client.get("/public/search?q=x").status_code == 200


def test_failure_window_counts_per_address_and_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [6000.0]
    monkeypatch.setattr("archive.clock.source", lambda: datetime.fromtimestamp(clock[0], UTC))
    window = FailureWindow(per_minute=2)
    window.failed("10.0.0.1")
    window.check("10.0.0.1")  # one failure: still allowed
    window.failed("10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        window.check("10.0.0.1")
    assert refused.value.retry_after == 60
    window.check("10.0.0.2")  # another address is not affected
    clock[0] += 60  # the next minute starts afresh
    window.check("10.0.0.1")
