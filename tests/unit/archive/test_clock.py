"""One clock: a deposit's received time, its version's creation, its custody events and the
outbox work it queues all read archive.clock, so moving the clock moves them all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from archive import clock
from archive.catalog.tables import Deposit, Event, OutboxEntry, Version
from archive.services import Services
from tests.conftest import SAMPLE
from tests.helpers import deposit

AT = datetime(2031, 5, 17, 9, 30, 15, tzinfo=UTC)


def test_the_archive_reads_one_clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("archive.clock.source", lambda: AT)
    assert clock.today().isoformat() == "2031-05-17"
    assert clock.epoch() == AT.timestamp()
    assert clock.local_now() == AT and clock.local_now().utcoffset() is not None
    package_id = deposit(services, SAMPLE, depositor="Clock Mechanism").package_id
    with services.sessions() as session:
        assert session.execute(select(Deposit.received_at)).scalar_one() == AT
        assert session.execute(select(Version.created_at)).scalar_one() == AT
        times = set(session.execute(select(Event.occurred_at)).scalars())
        queued = set(
            session.execute(
                select(OutboxEntry.created_at).where(OutboxEntry.key.in_([package_id, ""]))
            ).scalars()
        )
    assert times == {AT} and queued == {AT}
