"""Sunset transitions and reviews of protected identities, on SQLite and PostgreSQL: through
the service, the registrar API and the command line; storage, the catalog, the public
search and the custody log agree after each step, and a rebuilt catalog keeps them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ocfl import Object  # type: ignore[import-untyped]
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from access.accounts.users import NewUser, add_user
from access.decisions.rules import Principal, access_policy, today
from access.decisions.sunset import apply_due
from access.registrar import change_tier
from api.app import create_app
from archive.audit import verify_log
from archive.catalog.rebuild import rebuild
from archive.catalog.tables import AccessAssignment, AccessReview, Event, Package, User
from archive.cli import get_app
from archive.jobs import Periodic, job_table
from archive.services import Services
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import deposit
from tests.totp import fresh_code

README = "data/README.txt"
BOARD = Principal("board", "registrar", None, True)  # the registrar who sets up each case


@dataclass
class Held:
    services: Services
    client: TestClient
    users: Users
    package_id: str
    extra: dict[str, NewUser]

    @property
    def uuid(self) -> str:
        return self.package_id.removeprefix("urn:uuid:")

    def headers(self, user: NewUser) -> dict[str, str]:
        assert user.totp_secret
        return {
            "Authorization": f"Bearer {user.token}",
            "X-Custos-TOTP": fresh_code(user.totp_secret),
        }

    def public_hits(self, q: str, headers: dict[str, str] | None = None) -> int:
        r = self.client.get("/public/search", params={"q": q}, headers=headers or {})
        assert r.status_code == 200
        return int(r.json()["total"])

    def head(self) -> int:
        with self.services.sessions() as session:
            pkg = session.get(Package, self.package_id)
            assert pkg is not None
            return pkg.head

    def object_root(self) -> Path:
        with self.services.sessions() as session:
            pkg = session.get(Package, self.package_id)
            assert pkg is not None
            return self.services.store.object_root(pkg.object_path)

    def stored_access(self) -> dict[str, Any]:
        root = self.object_root()
        inventory = json.loads((root / "inventory.json").read_bytes())
        state = inventory["versions"][inventory["head"]]["state"]
        content = next(
            inventory["manifest"][d][0]
            for d, paths in state.items()
            if "custos/access.json" in paths
        )
        return json.loads((root / content).read_bytes())  # type: ignore[no-any-return]

    def events(self, type_: str) -> list[tuple[str, str]]:
        with self.services.sessions() as session:
            rows = session.execute(
                select(Event.agent, Event.detail).where(Event.type == type_).order_by(Event.id)
            ).all()
        return [(a, d) for a, d in rows]

    def tier_of(self, path: str) -> str:
        with self.services.sessions() as session:
            return session.execute(
                select(AccessAssignment.tier).where(
                    AccessAssignment.package_id == self.package_id, AccessAssignment.path == path
                )
            ).scalar_one()


@pytest.fixture
def held(make_services: MakeServices, catalog_url: str) -> Iterator[Held]:
    services = make_services(catalog_url)
    result = deposit(services, SAMPLE, depositor="Sample Mechanism")
    users = make_users(services)
    policy = access_policy(services.settings)
    with services.session_scope() as session:
        extra = {
            name: add_user(session, name, role="registrar", policy=policy)
            for name in ("rex", "Regina-to-be")
        }
        # `users add` refuses a name that differs from another only in case; a catalog made
        # before it did may hold one, and reviews must still count the two as one person.
        session.execute(update(User).where(User.name == "Regina-to-be").values(name="Regina"))
        extra["Regina"] = replace(extra.pop("Regina-to-be"), name="Regina")
    with TestClient(create_app(services.settings)) as client:
        yield Held(services, client, users, result.package_id, extra)


def _protect(held: Held, *, sunset: date, successor: str = "public") -> None:
    """Put README (public, consent public and research) under protected identity until
    ``sunset``: as a registrar's tier change would."""
    change_tier(
        held.services,
        BOARD,
        held.package_id,
        path=README,
        tier="protected-identity",
        legal_basis="Witness protection order 12/2026",
        sunset=sunset,
        successor=successor,
    )


def _restrict(held: Held, *, sunset: date) -> None:
    """Close README (public, consent public and research) until ``sunset``, then public."""
    change_tier(
        held.services,
        BOARD,
        held.package_id,
        path=README,
        tier="restricted",
        legal_basis="Closed until the trial ends",
        sunset=sunset,
        successor="public",
    )


def test_restricted_opens_on_its_date_not_the_day_before(held: Held) -> None:
    day = today()
    _restrict(held, sunset=day)
    researcher = held.users.bearer("researcher")
    file_url = f"/public/packages/{held.uuid}/files/{README}"
    assert held.public_hits("README") == held.public_hits("README", researcher) == 0
    before = held.head()

    # The day before its sunset nothing is due, and nothing is written.
    report = apply_due(held.services, on=day - timedelta(days=1))
    assert report.transitions == [] and report.versions == 0 and held.head() == before
    assert held.public_hits("README") == 0
    assert held.client.get(file_url).status_code == 404
    page = held.client.get(f"/packages/{held.uuid}", headers=researcher)
    assert page.status_code == 200 and "README.txt" not in page.text

    # A dry run on the day says what is due and writes nothing.
    dry = apply_due(held.services, on=day, dry_run=True)
    assert [(t.kind, t.tier, t.new_tier) for t in dry.transitions] == [
        ("move", "restricted", "public")
    ]
    assert held.head() == before and held.public_hits("README") == 0

    # On its day it moves: a new version, one event, and the public finds it at once.
    report = apply_due(held.services, on=day)
    assert report.moved == 1 and report.versions == 1 and not report.failed
    assert held.head() == before + 1
    assert Object().validate(str(held.object_root()))
    readme = next(a for a in held.stored_access()["assignments"] if a["path"] == README)
    assert readme["tier"] == "public" and readme["sunset"] is None
    assert held.tier_of(README) == "public"
    (agent, detail) = held.events("tier change")[-1]
    assert agent == "Custos sunset policy"
    assert f"restricted -> public at its sunset {day.isoformat()}" in detail
    assert access_policy(held.services.settings).label in detail
    assert "set by registrar board" in detail  # the sunset's basis
    assert "README" not in detail
    assert held.public_hits("README") == held.public_hits("README", researcher) == 1
    r = held.client.get(file_url)
    assert r.status_code == 200 and r.content == (SAMPLE / README).read_bytes()
    page = held.client.get(f"/packages/{held.uuid}", headers=researcher)
    assert "README.txt" in page.text

    # Nothing is due twice.
    again = apply_due(held.services, on=day)
    assert again.transitions == [] and held.head() == before + 1
    assert verify_log(held.services).ok


def test_a_future_day_is_refused_unless_nothing_is_written(held: Held) -> None:
    from archive.errors import InputRejected

    tomorrow = today() + timedelta(days=1)
    _protect(held, sunset=tomorrow)
    before = held.head()
    with pytest.raises(InputRejected) as refused:
        apply_due(held.services, on=tomorrow)
    assert refused.value.findings[0].code == "SUNSET-FUTURE-DATE"
    preview = apply_due(held.services, on=tomorrow, dry_run=True)
    assert [t.kind for t in preview.transitions] == ["review"]
    assert apply_due(held.services).transitions == []  # today: not due yet
    assert held.head() == before
    with held.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AccessReview)) == 0


def _open_review(held: Held) -> str:
    _protect(held, sunset=today())
    report = apply_due(held.services)
    (opened,) = report.transitions
    assert opened.kind == "review" and opened.new_tier is None and opened.review_id
    return opened.review_id


def test_protected_identity_opens_only_after_two_different_registrars_by_the_api(
    held: Held,
) -> None:
    regina, rex, other_regina = held.users.registrar, held.extra["rex"], held.extra["Regina"]
    researcher = held.users.bearer("researcher")
    review_id = _open_review(held)
    # The sunset opened a review, not the material.
    assert held.tier_of(README) == "protected-identity"
    assert held.public_hits("README") == held.public_hits("README", researcher) == 0
    (agent, detail) = held.events("review")[-1]
    assert agent == "Custos sunset policy" and f"review {review_id}" in detail
    assert "README" not in detail
    # Nothing is due twice: the pending review is not opened again.
    assert apply_due(held.services).transitions == []

    listed = held.client.get("/registrar/reviews", headers=held.headers(regina))
    assert listed.status_code == 200
    (view,) = listed.json()["reviews"]
    assert view["review_id"] == review_id and view["path"] == README
    assert view["approvals"] == [] and view["approvals_needed"] == 2
    # Listing protected metadata is logged.
    assert any("open reviews" in d for _, d in held.events("access"))

    # A researcher learns nothing of it: the route is refused before anything is looked up.
    for method, url in (
        ("get", "/registrar/reviews"),
        ("post", f"/registrar/reviews/{review_id}/approve"),
    ):
        r = held.client.request(method, url, headers=researcher)
        assert r.status_code in (401, 403) and review_id not in r.text
    r = held.client.get(f"/public/packages/{held.uuid}", headers=researcher)
    assert r.status_code == 200 and "README" not in r.text and review_id not in r.text

    url = f"/registrar/reviews/{review_id}/approve"
    first = held.client.post(url, headers=held.headers(regina))
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "pending" and first.json()["approvals"] == ["regina"]
    head = held.head()
    # The same registrar again, and a user whose name is the same person: refused, not counted.
    for who in (regina, other_regina):
        r = held.client.post(url, headers=held.headers(who))
        assert r.status_code == 422, r.text
        assert r.json()["findings"][0]["code"] == "REVIEW-DUPLICATE-APPROVAL"
    assert held.head() == head
    (view,) = held.client.get("/registrar/reviews", headers=held.headers(rex)).json()["reviews"]
    assert [a["registrar"] for a in view["approvals"]] == ["regina"]
    assert held.public_hits("README") == 0 and held.tier_of(README) == "protected-identity"

    second = held.client.post(url, headers=held.headers(rex))
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["outcome"] == "opened" and body["approvals"] == ["regina", "rex"]
    assert body["tier"] == "public"
    assert held.tier_of(README) == "public"
    assert held.public_hits("README") == held.public_hits("README", researcher) == 1
    assert held.client.get("/registrar/reviews", headers=held.headers(rex)).json()["reviews"] == []
    # Each step is a custody event naming who; the opening is also a tier change.
    steps = [(a, d) for a, d in held.events("review") if review_id in d]
    assert [a for a, _ in steps] == ["Custos sunset policy", "registrar regina", "registrar rex"]
    change = held.events("tier change")[-1][1]
    assert "protected-identity -> public" in change and "regina and rex" in change
    # A decided review takes no more steps.
    r = held.client.post(url, headers=held.headers(other_regina))
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "REVIEW-CLOSED"
    assert Object().validate(str(held.object_root()))
    assert verify_log(held.services).ok

    # The catalog rebuilt from storage alone keeps the review and the tier.
    rebuild(held.services)
    assert held.tier_of(README) == "public"
    with held.services.sessions() as session:
        row = session.get(AccessReview, review_id)
        assert row is not None and row.outcome == "opened"
        assert [a["registrar"] for a in json.loads(row.approvals)] == ["regina", "rex"]
    assert held.public_hits("README") == 1
    assert verify_log(held.services).ok


def test_a_pending_review_survives_a_rebuild(held: Held) -> None:
    review_id = _open_review(held)
    url = f"/registrar/reviews/{review_id}/approve"
    assert held.client.post(url, headers=held.headers(held.users.registrar)).status_code == 200
    rebuild(held.services)
    (view,) = held.client.get("/registrar/reviews", headers=held.headers(held.extra["rex"])).json()[
        "reviews"
    ]
    assert view["review_id"] == review_id and view["approvals_needed"] == 1
    # Still counted after the rebuild: the same registrar is refused, another one opens it.
    r = held.client.post(url, headers=held.headers(held.extra["Regina"]))
    assert r.json()["findings"][0]["code"] == "REVIEW-DUPLICATE-APPROVAL"
    assert apply_due(held.services).transitions == []
    r = held.client.post(url, headers=held.headers(held.extra["rex"]))
    assert r.json()["outcome"] == "opened"


def test_extension_moves_the_sunset_and_closes_the_review(held: Held) -> None:
    review_id = _open_review(held)
    url = f"/registrar/reviews/{review_id}/extend"
    regina = held.users.registrar
    head = held.head()
    bad: list[tuple[dict[str, Any], str]] = [
        ({"until": today().isoformat(), "reason": "Witness still at risk"}, "REVIEW-BAD-EXTENSION"),
        ({"until": "2051-01-01", "reason": "   "}, "REVIEW-BAD-EXTENSION"),
    ]
    for body, code in bad:
        r = held.client.post(url, json=body, headers=held.headers(regina))
        assert r.status_code == 422 and r.json()["findings"][0]["code"] == code, r.text
    r = held.client.post(
        url, json={"until": "not a date", "reason": "x"}, headers=held.headers(regina)
    )
    assert r.status_code == 422
    assert held.head() == head
    r = held.client.post(
        url,
        json={"until": "2051-01-01", "reason": "Witness still at risk"},
        headers=held.headers(regina),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "extended" and body["sunset"] == "2051-01-01"
    assert body["tier"] == "protected-identity"
    readme = next(a for a in held.stored_access()["assignments"] if a["path"] == README)
    assert readme["sunset"] == "2051-01-01" and "Witness still at risk" in readme["sunset_basis"]
    (record,) = held.stored_access()["reviews"]
    assert record["outcome"] == "extended" and record["extension"]["registrar"] == "regina"
    assert (
        held.client.get("/registrar/reviews", headers=held.headers(regina)).json()["reviews"] == []
    )
    assert held.public_hits("README") == 0
    (agent, detail) = held.events("review")[-1]
    assert agent == "registrar regina" and "until 2051-01-01" in detail
    # Closed: no approval counts any more, and nothing is due until the new sunset.
    r = held.client.post(
        f"/registrar/reviews/{review_id}/approve", headers=held.headers(held.extra["rex"])
    )
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "REVIEW-CLOSED"
    assert apply_due(held.services).transitions == []
    assert apply_due(held.services, on=date(2051, 1, 1), dry_run=True).reviews_opened == 1


def test_unknown_reviews_and_other_roles_are_refused(held: Held) -> None:
    review_id = _open_review(held)
    head = held.head()
    r = held.client.post(
        "/registrar/reviews/0000000000/approve", headers=held.headers(held.users.registrar)
    )
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    for role in ("archivist", "depositor", "researcher"):
        r = held.client.post(
            f"/registrar/reviews/{review_id}/approve", headers=held.users.bearer(role)
        )
        assert r.status_code in (401, 403)
    r = held.client.post(  # a registrar without the second factor
        f"/registrar/reviews/{review_id}/approve",
        headers={"Authorization": f"Bearer {held.users.registrar.token}"},
    )
    assert r.status_code == 401
    assert held.head() == head


# --- the command line -----------------------------------------------------------------------

runner = CliRunner()


def _cli(held: Held, *args: str, user: NewUser | None = None) -> tuple[int, Any, str]:
    env = {"CUSTOS_FSYNC": "false"}
    url = held.services.settings.database_url
    if url:
        env["CUSTOS_DATABASE_URL"] = url
    if user is not None:
        assert user.totp_secret
        env["CUSTOS_TOKEN"] = user.token
        env["CUSTOS_TOTP"] = fresh_code(user.totp_secret)
    result = runner.invoke(
        get_app(), ["--data-dir", str(held.services.settings.data_dir), *args, "--json"], env=env
    )
    body = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, body, result.stderr


def test_the_command_line_applies_lists_approves_and_refuses(held: Held) -> None:
    regina, rex, other_regina = held.users.registrar, held.extra["rex"], held.extra["Regina"]
    _protect(held, sunset=today())
    code, body, err = _cli(held, "policies", "apply", "--on", "2999-01-01")
    assert code == 65 and body["findings"][0]["code"] == "SUNSET-FUTURE-DATE"
    code, body, _ = _cli(held, "policies", "apply", "--on", "22/11/2026")
    assert code == 65 and body["findings"][0]["code"] == "DATE-SYNTAX"
    code, body, _ = _cli(held, "policies", "apply", "--dry-run")
    assert code == 0 and body["status"] == "dry-run" and body["reviews_opened"] == 1
    assert body["versions"] == 0
    code, body, _ = _cli(held, "policies", "apply")
    assert code == 0 and body["reviews_opened"] == 1 and body["versions"] == 1
    review_id = body["transitions"][0]["review_id"]
    assert "path" not in body["transitions"][0]
    code, body, _ = _cli(held, "policies", "apply")
    assert code == 0 and body["transitions"] == []
    code, body, _ = _cli(held, "policies", "reviews")
    assert code == 0 and [r["review_id"] for r in body["reviews"]] == [review_id]

    head = held.head()
    approve = ("policies", "approve", review_id[:8], "--registrar")
    # Refusals change nothing: unknown review, another's token, a user who is no registrar,
    # a name written differently (it names no user), an approval given twice.
    code, body, _ = _cli(
        held, "policies", "approve", "feedbeef", "--registrar", "regina", user=regina
    )
    assert code == 4 and "no review" in body["message"], body
    code, body, _ = _cli(held, *approve, "rex", user=regina)
    assert code == 77 and body["error"] == "AuthenticationFailed"
    # An archivist proven by its own token (its role has no second factor) has no say.
    archivist = held.users.archivist
    data = str(held.services.settings.data_dir)
    r = runner.invoke(
        get_app(),
        ["--data-dir", data, *approve, "arno", "--totp", "", "--json"],
        env={
            "CUSTOS_FSYNC": "false",
            "CUSTOS_DATABASE_URL": held.services.settings.database_url or "",
            "CUSTOS_TOKEN": archivist.token,
        },
    )
    assert r.exit_code == 77 and json.loads(r.stdout)["error"] == "Forbidden", r.stdout
    code, body, _ = _cli(held, *approve, " REGINA ", user=regina)
    assert code == 77
    code, body, _ = _cli(held, *approve, "regina", user=regina)
    assert code == 0 and body["status"] == "pending" and body["approvals_needed"] == 1
    code, body, err = _cli(held, *approve, "regina", user=regina)
    assert code == 65 and body["findings"][0]["code"] == "REVIEW-DUPLICATE-APPROVAL"
    assert "different registrar" in err
    code, body, _ = _cli(held, *approve, "Regina", user=other_regina)
    assert code == 65 and body["findings"][0]["code"] == "REVIEW-DUPLICATE-APPROVAL"
    assert held.head() == head + 1  # only the one approval was written
    extend = ("policies", "extend", review_id, "--registrar", "rex")
    code, body, _ = _cli(held, *extend, "--until", "2051-01-01", "--reason", " ", user=rex)
    assert code == 65 and body["findings"][0]["code"] == "REVIEW-BAD-EXTENSION"
    code, body, _ = _cli(held, *extend, "--until", "2020-01-01", "--reason", "r", user=rex)
    assert code == 65 and body["findings"][0]["code"] == "REVIEW-BAD-EXTENSION"
    assert held.head() == head + 1

    code, body, _ = _cli(held, *approve, "rex", user=rex)
    assert code == 0 and body["status"] == "opened" and body["approvals"] == ["regina", "rex"]
    assert held.tier_of(README) == "public" and held.public_hits("README") == 1
    code, body, _ = _cli(held, "policies", "reviews")
    assert body["reviews"] == []
    code, body, _ = _cli(held, "catalog", "rebuild")
    assert code == 0
    assert held.tier_of(README) == "public"
    code, body, _ = _cli(held, "audit", "verify")
    assert code == 0 and body["verified"]


def test_the_worker_applies_sunsets_daily_and_at_start(held: Held) -> None:
    table = job_table(held.services.settings)
    assert [p for p in table.schedule if p.job == "policies-apply"] == [
        Periodic("policies-apply", hour=0, at_start=True)
    ]
    _restrict(held, sunset=today())
    assert held.public_hits("README") == 0
    table.handlers["policies-apply"](held.services)
    assert held.tier_of(README) == "public" and held.public_hits("README") == 1
    head = held.head()
    table.handlers["policies-apply"](held.services)  # again: nothing is due twice
    assert held.head() == head


def test_a_tier_change_of_the_path_under_review_closes_the_review(held: Held) -> None:
    review_id = _open_review(held)
    change_tier(
        held.services,
        BOARD,
        held.package_id,
        path=README,
        tier="protected-identity",
        legal_basis="Court order 7/2026",
        sunset=today() + timedelta(days=3650),
        successor="restricted",
    )
    (record,) = held.stored_access()["reviews"]
    assert record["id"] == review_id and record["outcome"] == "superseded"
    assert f"review {review_id}" in held.events("tier change")[-1][1]
    regina = held.users.registrar
    assert (
        held.client.get("/registrar/reviews", headers=held.headers(regina)).json()["reviews"] == []
    )
    r = held.client.post(f"/registrar/reviews/{review_id}/approve", headers=held.headers(regina))
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "REVIEW-CLOSED"
    assert held.tier_of(README) == "protected-identity"


def test_one_registrar_cannot_lower_protected_identity_by_a_tier_change(held: Held) -> None:
    _protect(held, sunset=today() + timedelta(days=3650))
    regina, rex = held.users.registrar, held.extra["rex"]
    url = f"/registrar/packages/{held.uuid}/tier"
    head = held.head()
    for path, tier in ((README, "public"), (README, "restricted")):
        body = {"path": path, "tier": tier, "legal_basis": "Order 9/2026"}
        r = held.client.post(url, json=body, headers=held.headers(regina))
        assert r.status_code == 422, (path, tier, r.text)
        assert r.json()["findings"][0]["code"] == "TIER-PROTECTED-NEEDS-REVIEW"
    assert held.head() == head and held.tier_of(README) == "protected-identity"
    assert held.public_hits("README") == 0
    # The way to open it early: bring the sunset forward, keeping the tier; the review that
    # then opens needs two different registrars.
    body = {
        "path": README,
        "tier": "protected-identity",
        "legal_basis": "Order 9/2026: the witness consents to publication",
        "sunset": today().isoformat(),
        "successor": "public",
    }
    r = held.client.post(url, json=body, headers=held.headers(regina))
    assert r.status_code == 200, r.text
    (opened,) = [t for t in apply_due(held.services).transitions if t.kind == "review"]
    assert opened.review_id and held.tier_of(README) == "protected-identity"
    approve = f"/registrar/reviews/{opened.review_id}/approve"
    assert held.client.post(approve, headers=held.headers(regina)).json()["outcome"] == "pending"
    assert held.public_hits("README") == 0
    assert held.client.post(approve, headers=held.headers(rex)).json()["outcome"] == "opened"
    assert held.tier_of(README) == "public" and held.public_hits("README") == 1
