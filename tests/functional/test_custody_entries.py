"""The custody log's entries (format 2): an append writes its events without the log head,
and takes its place in the chain as its transaction commits, so one long transaction does not
hold every other writer of the log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from archive.audit import _bounds, verify_log
from archive.catalog.tables import CustodyEntry, CustodyHead, Event
from archive.custody import new_event, record_events
from archive.model import Link
from archive.services import Services
from tests.conftest import MakeServices


@pytest.fixture
def services(make_services: MakeServices, catalog_url: str) -> Iterator[Services]:
    yield make_services(catalog_url)


def _events(n: int, what: str) -> list:  # type: ignore[type-arg]
    return [
        new_event("fixity check", "success", f"{what} {i}", links=[Link("file", f"data/{i}")])
        for i in range(n)
    ]


def test_a_long_transaction_does_not_hold_other_writers(
    make_services: MakeServices, postgres: object
) -> None:
    """A transaction that has recorded 20,000 events and not yet committed: another process's
    append commits meanwhile (it would wait for the first to end, with the head taken when
    the events were recorded). Entries are placed in the order their transactions commit,
    and the log verifies."""
    from tests.servers import PostgresServer

    assert isinstance(postgres, PostgresServer)
    services = make_services(postgres.url(postgres.create_database()))
    with services.sessions() as big:
        record_events(big, _events(20_000, "big"), package_id="p-big")
        with services.sessions() as small:
            # Fail rather than wait if anything of the first transaction's is in the way.
            small.execute(text("SET LOCAL lock_timeout = '10s'"))
            record_events(small, _events(1, "small"), package_id="p-small")
            small.commit()
        big.commit()
    with services.sessions() as session:
        order = session.execute(
            select(CustodyEntry.seq, CustodyEntry.events).order_by(CustodyEntry.seq)
        ).all()
        head = session.get(CustodyHead, 1)
    assert [tuple(r) for r in order][-2:] == [(order[-2][0], 1), (order[-1][0], 20_000)]
    assert head is not None and head.seq == order[-1][0]
    report = verify_log(services)
    assert report.ok, report.problems
    assert report.events >= 20_001


def test_an_append_rolled_back_leaves_no_trace(services: Services) -> None:
    with services.sessions() as session:
        before = session.get(CustodyHead, 1)
        assert before is not None
        seq = before.seq
    with services.sessions() as session:
        record_events(session, _events(3, "undone"))
        session.rollback()
        # The same session's next transaction places only its own entry.
        record_events(session, _events(2, "kept"))
        session.commit()
    with services.sessions() as session:
        head = session.get(CustodyHead, 1)
        assert head is not None and head.seq == seq + 1
        details = set(session.execute(select(Event.detail)).scalars())
    assert {"kept 0", "kept 1"} <= details and not any(d.startswith("undone") for d in details)
    assert verify_log(services).ok


def test_an_append_in_a_savepoint_rolled_back_is_not_placed(services: Services) -> None:
    with services.sessions() as session:
        record_events(session, _events(1, "first"))
        nested = session.begin_nested()
        record_events(session, _events(2, "in the savepoint"))
        nested.rollback()
        record_events(session, _events(1, "last"))
        session.commit()
    with services.sessions() as session:
        entries = session.execute(
            select(CustodyEntry.seq, CustodyEntry.events).order_by(CustodyEntry.seq)
        ).all()
    assert [r.events for r in entries][-2:] == [1, 1]
    assert [r.seq for r in entries] == list(range(1, len(entries) + 1))
    report = verify_log(services)
    assert report.ok, report.problems


def test_an_entry_is_placed_when_its_transaction_commits(services: Services) -> None:
    with services.sessions() as session:
        record_events(session, _events(2, "pending"))
        unplaced = session.execute(
            select(CustodyEntry.seq).order_by(CustodyEntry.id.desc()).limit(1)
        ).scalar_one()
        assert unplaced is None  # written, not yet in the chain
        session.commit()
    with services.sessions() as session:
        placed = session.execute(
            select(CustodyEntry.seq).order_by(CustodyEntry.id.desc()).limit(1)
        ).scalar_one()
        head = session.get(CustodyHead, 1)
    assert head is not None and placed == head.seq


def _tampered(services: Services, change: str) -> None:
    """Tamper with the first entry of the second run the audit will check."""
    with services.session_scope() as session:
        head = session.get(CustodyHead, 1)
        assert head is not None
        runs = _bounds(session, head.chain, 3)
        assert len(runs) == 3, runs
        middle = session.execute(
            select(CustodyEntry.id).where(CustodyEntry.seq == runs[1][0])
        ).one()
        if change == "event":
            session.execute(
                text("UPDATE events SET detail = 'changed' WHERE entry_id = :e AND pos = 1"),
                {"e": middle.id},
            )
        elif change == "entry":
            session.execute(
                text(
                    "DELETE FROM event_links WHERE event_id IN "
                    "(SELECT id FROM events WHERE entry_id = :e)"
                ),
                {"e": middle.id},
            )
            session.execute(text("DELETE FROM events WHERE entry_id = :e"), {"e": middle.id})
            session.execute(text("DELETE FROM custody_entries WHERE id = :e"), {"e": middle.id})
        elif change == "link":
            session.execute(
                text("UPDATE custody_entries SET prev_hash = :h WHERE id = :e"),
                {"h": "0" * 128, "e": middle.id},
            )


@pytest.mark.parametrize("change", ["none", "event", "entry", "link"])
def test_a_long_log_is_checked_in_parallel_runs_with_the_same_findings(
    services: Services, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log cut into runs, each checked in a process of its own: the same counts and the
    same findings as one process, whichever run the tampering falls in or beside."""
    for n in range(24):
        with services.session_scope() as session:
            record_events(session, _events(1 + n % 5, f"batch {n}"))
    monkeypatch.setattr("archive.audit.PARALLEL_MIN_EVENTS", 10)
    _tampered(services, change)
    one = verify_log(services)
    calls: list[int] = []
    several = verify_log(services, workers=3, progress=calls.append)
    assert (several.entries, several.events) == (one.entries, one.events)
    assert sum(calls) == several.events
    assert sorted((p.code, p.text) for p in several.problems) == sorted(
        (p.code, p.text) for p in one.problems
    )
    assert several.ok == (change == "none")
    if change == "link":
        assert {p.code for p in several.problems} == {"log-link", "log-altered"}
