"""The registry of depositors: close matches, registration (once, one spelling), counts."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from archive import depositors
from archive.catalog.tables import Depositor, Event
from archive.depositors import close_matches, list_depositors, register, shell_word
from archive.errors import InputRejected
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import deposit

KNOWN = ["Sample Closing Mechanism", "Mechanism for Syria", "Commission of Inquiry"]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Sample Closing Mechanism", []),  # never the name itself
        ("sample closing mechanism", ["Sample Closing Mechanism"]),  # case does not count
        ("SAMPLE  CLOSING MECHANISM", ["Sample Closing Mechanism"]),  # nor runs of spaces
        ("Sampel Closing Mechanism", ["Sample Closing Mechanism"]),  # a typo
        ("sample closing mechanisms", ["Sample Closing Mechanism"]),
        ("Mechanism for Syra", ["Mechanism for Syria"]),
        ("Archives nationales", []),  # nothing close
    ],
)
def test_close_matches(typed: str, expected: list[str]) -> None:
    assert close_matches(typed, KNOWN)[:1] == expected


def test_close_matches_are_the_best_few_best_first() -> None:
    known = [f"Mechanism {c}" for c in "ABCDEFG"]
    found = close_matches("mechanism b", known)
    assert found[0] == "Mechanism B" and len(found) == depositors.MATCHES


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("Sample Mechanism", '"Sample Mechanism"'),
        ('The "Other" $HOME `x` \\', '"The \\"Other\\" \\$HOME \\`x\\` \\\\"'),
    ],
)
def test_shell_word(name: str, word: str) -> None:
    assert shell_word(name) == word


def test_register_once_under_one_spelling(make_services: MakeServices, catalog_url: str) -> None:
    services = make_services(catalog_url)

    def events() -> int:
        with services.sessions() as session:
            return (
                session.scalar(select(func.count()).where(Event.type == "depositor administration"))
                or 0
            )

    with services.session_scope() as session:
        first = register(session, "  Sample Mechanism ", by="operator x", reason="agreement 7")
    assert first.name == "Sample Mechanism" and first.created and first.similar == ()
    with services.session_scope() as session:
        again = register(session, "Sample Mechanism")
    assert not again.created and again.registered_at == first.registered_at
    with pytest.raises(InputRejected) as refused, services.session_scope() as session:
        register(session, "sample  mechanism", where="--depositor")
    (finding,) = refused.value.findings
    assert (finding.code, finding.path) == ("DEPOSITOR-REGISTERED-AS", "--depositor")
    assert "'Sample Mechanism'" in finding.message
    assert refused.value.hint == 'give the name as registered: "Sample Mechanism"'
    with services.session_scope() as session:
        other = register(session, "Sample Mechanisms")
    assert other.created and other.similar == ("Sample Mechanism",)
    assert events() == 2  # one per registration, none for the repeat or the refusal
    with services.sessions() as session:
        event = (
            session.execute(
                select(Event).where(Event.type == "depositor administration").order_by(Event.id)
            )
            .scalars()
            .first()
        )
    assert event is not None and event.agent == "operator x"
    assert (
        event.detail == "depositor Sample Mechanism registered; by operator x; reason: agreement 7"
    )


def test_a_name_registered_meanwhile_by_another_process_is_not_registered_twice(
    make_services: MakeServices, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes registering one name at once: the one that reads the names before the
    other commits inserts nothing (ON CONFLICT) and records no event."""
    services = make_services(catalog_url)
    with services.session_scope() as session:
        assert register(session, "Race Mechanism").created
    monkeypatch.setattr(depositors, "registered_names", lambda session: [])  # read too early
    with services.session_scope() as session:
        late = register(session, "Race Mechanism")
    assert not late.created
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Depositor)) == 1
        assert (
            session.scalar(select(func.count()).where(Event.type == "depositor administration"))
            == 1
        )


def test_list_counts_deposits_and_packages(make_services: MakeServices, catalog_url: str) -> None:
    services = make_services(catalog_url)
    deposit(services, SAMPLE, depositor="Sample Mechanism")
    with services.session_scope() as session:
        register(session, "Quiet Mechanism")
    with services.sessions() as session:
        rows = [(d.name, d.deposits, d.packages) for d in list_depositors(session)]
    assert rows == [("Quiet Mechanism", 0, 0), ("Sample Mechanism", 1, 1)]
