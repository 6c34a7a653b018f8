"""Opening a tier's key through the API, on SQLite and PostgreSQL: one registrar's share does
not open it; two different registrars' shares do, for one stated purpose, until
`keys.unlock_minutes` have passed or a registrar locks it; a registrar's second share, a
share presented twice, a share of an old set and a caller who is not a registrar with a
second factor are refused and count for nothing. Every step is a custody event that names
the registrars and never quotes a share."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyrage
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from access.accounts.users import NewUser, add_user
from access.decisions.rules import access_policy
from access.keys.service import NewShares, init_key, reshare
from api.app import create_app
from archive.catalog.tables import Event
from archive.services import Services
from tests.api_support import Users, make_users
from tests.conftest import MakeServices
from tests.totp import fresh_code

PROBLEM = "application/problem+json"


class Held:
    def __init__(self, services: Services, client: TestClient, users: Users, rex: NewUser):
        self.services, self.client, self.users, self.rex = services, client, users, rex
        self.made: NewShares | None = None

    @property
    def shares(self) -> tuple[str, ...]:
        assert self.made is not None
        return self.made.shares.mnemonics

    def as_(self, who: str) -> dict[str, str]:
        user = self.rex if who == "rex" else getattr(self.users, who)
        return {
            "Authorization": f"Bearer {user.token}",
            "X-Custos-TOTP": fresh_code(user.totp_secret),
        }

    def unlock(self, who: str, share: str, purpose: str = "prosecution") -> Any:
        body = {"tier": "protected-identity", "purpose": purpose, "share": share}
        return self.client.post("/registrar/keys/unlock", json=body, headers=self.as_(who))

    def status(self) -> dict[str, Any]:
        r = self.client.get("/registrar/keys", headers=self.as_("registrar"))
        assert r.status_code == 200, r.text
        (row,) = r.json()["keys"]
        return dict(row)

    def opened(self) -> Any:
        opened = self.client.app.state.services.keyring.opened("protected-identity")  # type: ignore[attr-defined]
        return opened

    def events(self) -> list[Event]:
        with self.services.sessions() as session:
            rows = list(
                session.execute(
                    select(Event).where(Event.type == "key custody").order_by(Event.id)
                ).scalars()
            )
            session.expunge_all()
            return rows


@pytest.fixture
def held(make_services: MakeServices, catalog_url: str) -> Iterator[Held]:
    services = make_services(catalog_url)
    users = make_users(services)
    with services.session_scope() as session:
        rex = add_user(session, "rex", role="registrar", policy=access_policy(services.settings))
    with services.session_scope() as session:
        made = init_key(
            session,
            tier="protected-identity",
            shares=3,
            threshold=2,
            by="test custodian",
            hand_out=lambda _: None,
        )
    with TestClient(create_app(services.settings)) as client:
        h = Held(services, client, users, rex)
        h.made = made
        yield h


def _problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert code in r.text


def test_one_share_does_not_open_the_key_two_registrars_shares_do(held: Held) -> None:
    r = held.unlock("registrar", held.shares[0])
    assert r.status_code == 200, r.text
    assert r.json() | {"open_until": None} == {
        "tier": "protected-identity",
        "purpose": "prosecution",
        "presented": 1,
        "threshold": 2,
        "registrars": ["regina"],
        "unlocked": False,
        "open_until": None,
    }
    assert held.opened() is None
    assert held.status()["shares_waiting"] == 1 and held.status()["open_until"] is None

    r = held.unlock("rex", held.shares[2])
    assert r.status_code == 200, r.text
    assert r.json()["unlocked"] is True and r.json()["registrars"] == ["regina", "rex"]
    opened = held.opened()
    assert opened is not None and opened.by == ("regina", "rex")
    assert opened.purpose == "prosecution"
    # What is held is the tier's key: it opens what was encrypted to the recipient.
    assert held.made is not None
    sealed = pyrage.encrypt(b"statement", [pyrage.x25519.Recipient.from_str(held.made.recipient)])
    assert pyrage.decrypt(sealed, [opened.identity]) == b"statement"

    status = held.status()
    assert status["open_until"] is not None and status["opened_by"] == ["regina", "rex"]
    assert status["last_opened_by"] == "regina, rex for prosecution"

    events = held.events()
    assert [e.detail.split(":")[0] for e in events[:2]] == [
        "share presented by registrar regina to open the protected-identity tier's key for "
        "prosecution",
        "share presented by registrar rex to open the protected-identity tier's key for "
        "prosecution",
    ]
    assert "opened for prosecution by regina, rex until" in events[2].detail
    for e in events:
        for share in held.shares:
            assert share not in e.detail
            assert " ".join(share.split()[:2]) not in e.detail


def test_a_registrars_second_share_and_a_share_given_twice_count_for_nothing(
    held: Held,
) -> None:
    assert held.unlock("registrar", held.shares[0]).status_code == 200
    _problem(held.unlock("registrar", held.shares[1]), 422, "KEY-SHARE-SAME-REGISTRAR")
    _problem(held.unlock("rex", held.shares[0]), 422, "KEY-SHARE-DUPLICATE")
    assert held.opened() is None and held.status()["shares_waiting"] == 1
    assert len(held.events()) == 1


def test_shares_for_another_purpose_or_an_undeclared_one_are_refused(held: Held) -> None:
    _problem(held.unlock("registrar", held.shares[0], "curiosity"), 422, "KEY-PURPOSE")
    assert held.unlock("registrar", held.shares[0], "prosecution").status_code == 200
    _problem(held.unlock("rex", held.shares[1], "research"), 422, "KEY-PURPOSE-OTHER")
    assert held.opened() is None


def test_a_share_of_the_old_set_counts_for_nothing_after_reshare(held: Held) -> None:
    with held.services.session_scope() as session:
        reshare(
            session,
            tier="protected-identity",
            presented=[("a", held.shares[0]), ("b", held.shares[1])],
            shares=3,
            threshold=2,
            by="test custodian",
            hand_out=lambda _: None,
        )
    _problem(held.unlock("registrar", held.shares[0]), 422, "KEY-SHARE-SET")
    _problem(held.unlock("registrar", "not a share"), 422, "KEY-SHARE-INVALID")
    assert held.events() == []


def test_the_key_locks_when_its_time_is_up_and_when_a_registrar_locks_it(
    held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert held.unlock("registrar", held.shares[0]).status_code == 200
    assert held.unlock("rex", held.shares[1]).json()["unlocked"]
    minutes = held.services.settings.keys.unlock_minutes
    later = datetime.now(UTC) + timedelta(minutes=minutes, seconds=5)
    monkeypatch.setattr("archive.clock.source", lambda: later)
    assert held.opened() is None
    assert held.status()["open_until"] is None
    assert "its time was up" in held.events()[-1].detail

    # Open again, then lock by hand: gone at once, and the lock is an event naming who.
    monkeypatch.setattr("archive.clock.source", lambda: datetime.now(UTC))
    assert held.unlock("rex", held.shares[2]).status_code == 200
    assert held.unlock("registrar", held.shares[1]).json()["unlocked"]
    r = held.client.post(
        "/registrar/keys/lock", json={"tier": "protected-identity"}, headers=held.as_("rex")
    )
    assert r.status_code == 200 and r.json() == {"tier": "protected-identity", "locked": True}
    assert held.opened() is None
    assert "locked by registrar rex" in held.events()[-1].detail


def test_only_a_registrar_with_a_second_factor_may_present_a_share(held: Held) -> None:
    body = {"tier": "protected-identity", "purpose": "prosecution", "share": held.shares[0]}
    for headers in (
        held.users.bearer("archivist"),
        held.users.bearer("researcher"),
        {"Authorization": f"Bearer {held.users.registrar.token}"},  # no TOTP code
        {},
    ):
        r = held.client.post("/registrar/keys/unlock", json=body, headers=headers)
        assert r.status_code in (401, 403), (headers.keys(), r.text)
    assert held.events() == [] and held.opened() is None


def test_a_tier_without_a_key_is_named_with_the_command_that_makes_one(held: Held) -> None:
    r = held.client.post(
        "/registrar/keys/unlock",
        json={"tier": "restricted", "purpose": "prosecution", "share": held.shares[0]},
        headers=held.as_("registrar"),
    )
    _problem(r, 404, "custos keys init --tier restricted")
