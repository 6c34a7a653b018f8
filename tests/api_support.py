"""Helpers for the API tests: a holding of many tiers, users of every role, a TestClient."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import update

from access.accounts.users import NewUser, add_user
from access.decisions.rules import Principal, access_policy
from access.decisions.sunset import apply_due
from access.registrar import change_tier
from access.search.service import reindex_all
from archive.catalog.tables import AccessAssignment
from archive.services import Services
from ingest.service import identify_package
from tests.helpers import deposit, make_bag
from tests.totp import fresh_code

TIERS = ("public", "restricted", "protected-identity", "undeclared")
CONSENTS = ("none", "public", "research", "prosecution", "withdrawn")
#: "open": the sunset is still ahead; "passed": the date is behind, no transition recorded;
#: "applied": the sunset came and `custos policies apply` recorded it (restricted moved to
#: public; protected-identity has a review pending, not yet approved).
SUNSETS = ("open", "passed", "applied")


@dataclass(frozen=True)
class Case:
    """One package of the matrix; ``marker`` is a word found only in its title, its
    depositor's name, its description and its file's name."""

    tier: str
    consent: str
    sunset: str
    marker: str
    package_id: str = ""

    @property
    def uuid(self) -> str:
        return self.package_id.removeprefix("urn:uuid:")

    @property
    def file(self) -> str:
        return f"data/{self.marker}-statement.txt"

    @property
    def depositor(self) -> str:
        return f"Mechanism {self.marker}"

    @property
    def title(self) -> str:
        return f"Holding {self.marker} of the mechanism"

    @property
    def stored_tier(self) -> str:
        """The tier in force: undeclared material is restricted; a restricted sunset that was
        applied has moved to public; a protected identity under review keeps its tier."""
        if self.tier == "undeclared":
            return "restricted"
        if self.tier == "restricted" and self.sunset == "applied":
            return "public"
        return self.tier

    def readable_by(self, role: str) -> bool:
        """What the issue says the public may see, written out without the policy code:
        the public tier, with consent to the purpose (anonymous: public; researchers:
        research, which public consent also covers)."""
        if self.stored_tier != "public":
            return False
        if role == "anonymous":
            return self.consent == "public"
        if role == "researcher":
            return self.consent in ("public", "research")
        return False


def cases() -> list[Case]:
    out = []
    for n, (tier, consent, sunset) in enumerate(itertools.product(TIERS, CONSENTS, SUNSETS)):
        if sunset != "open" and tier == "public":
            continue  # public has no sunset
        if sunset == "applied" and tier == "undeclared":
            continue  # declaring a sunset makes it declared: the restricted cases cover it
        out.append(Case(tier, consent, sunset, f"zq{n:02d}{tier[:3]}{consent[:3]}{sunset[:2]}"))
    return out


def deposit_case(services: Services, tmp: Path, case: Case) -> Case:
    info = {
        "Title": case.title,
        "External-Description": f"Records {case.marker} handed over at closure",
    }
    if case.tier != "undeclared":
        info["Access-Tier"] = case.tier
        info["Access-Legal-Basis"] = f"Test basis for {case.marker}"
    if case.consent != "none":
        info["Consent-Scopes"] = case.consent
    bag = make_bag(
        tmp / case.marker,
        {case.file.removeprefix("data/"): f"content of {case.marker}\n".encode()},
        info=info,
    )
    result = deposit(services, bag, depositor=case.depositor)
    return Case(case.tier, case.consent, case.sunset, case.marker, result.package_id)


def pass_sunsets(services: Services, held: list[Case]) -> None:
    """Move the sunset of the 'passed' cases behind today, as time would (no transition)."""
    with services.session_scope() as session:
        for c in held:
            if c.sunset == "passed":
                session.execute(
                    update(AccessAssignment)
                    .where(AccessAssignment.package_id == c.package_id)
                    .values(sunset=date.today() - timedelta(days=1))
                )
        reindex_all(session, access_policy(services.settings))


def apply_sunsets(services: Services, held: list[Case]) -> None:
    """Bring the sunset of the 'applied' cases to today (a registrar's tier change, in
    storage), then record what is due, as `custos policies apply` does."""
    board = Principal("board", "registrar", None, True)
    for c in held:
        if c.sunset == "applied":
            change_tier(
                services,
                board,
                c.package_id,
                path="",
                tier=c.tier,
                legal_basis="Matrix: the sunset comes today",
                sunset=date.today(),
                successor="public",
            )
    report = apply_due(services)
    assert not report.failed
    applied = [c for c in held if c.sunset == "applied"]
    assert sorted(t.package_id for t in report.transitions) == sorted(c.package_id for c in applied)


@dataclass(frozen=True)
class Users:
    researcher: NewUser
    depositor: NewUser
    archivist: NewUser
    registrar: NewUser

    def bearer(self, role: str, *, totp: bool = False) -> dict[str, str]:
        """Credentials for one request of ``role`` (with ``totp``, a code not used before:
        call again for each request)."""
        user: NewUser = getattr(self, role)
        headers = {"Authorization": f"Bearer {user.token}"}
        if totp:
            headers["X-Custos-TOTP"] = fresh_code(user.totp_secret)
        return headers


def make_users(services: Services, organisation: str = "Sample Mechanism") -> Users:
    policy = access_policy(services.settings)
    with services.session_scope() as session:
        return Users(
            researcher=add_user(session, "rita", role="researcher", policy=policy),
            depositor=add_user(
                session,
                "dora",
                role="depositor",
                policy=policy,
                organisation=organisation,
                new_organisation=True,
            ),
            archivist=add_user(session, "arno", role="archivist", policy=policy),
            registrar=add_user(session, "regina", role="registrar", policy=policy),
        )


def identify(services: Services, package_id: str) -> None:
    identify_package(services, package_id)
