"""The keys of the tables that grow with every copy and event are 64-bit on PostgreSQL (they
are the 64-bit row id on SQLite): a catalog whose numbering is past 2**31 goes on taking
deposits, and its custody log still verifies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from archive.audit import verify_log
from archive.catalog.tables import Event, EventLink, File
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import deposit
from tests.servers import PostgresServer

GROWING = (
    ("events", "id"),
    ("event_links", "id"),
    ("event_links", "event_id"),
    ("files", "id"),
    ("fixity_coverage", "id"),
    ("stored_files", "id"),
    ("search_entries", "id"),
    ("outbox", "id"),
)
PAST_32_BITS = 3_000_000_000


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A new PostgreSQL catalog (SQLite numbers rows with its row id, 64-bit already)."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.mark.postgres
def test_growing_tables_number_past_32_bits(make_services: MakeServices, postgres_url: str) -> None:
    services = make_services(postgres_url)  # every migration, the 64-bit one last
    with services.session_scope() as session:
        for table, column in GROWING:
            kind = session.execute(
                text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name = :t AND column_name = :c"
                ),
                {"t": table, "c": column},
            ).scalar_one()
            assert kind == "bigint", (table, column)
            if column == "id":
                sequence = session.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}
                ).scalar_one()
                assert sequence, table
                # A sequence made for a 32-bit column would stop at 2**31 - 1.
                session.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": PAST_32_BITS})
    result = deposit(services, SAMPLE, depositor="Sample Mechanism")
    with services.sessions() as session:
        assert min(session.execute(select(File.id)).scalars()) > PAST_32_BITS
        ids = list(session.execute(select(Event.id).where(Event.id > PAST_32_BITS)).scalars())
        assert ids
        assert (
            session.execute(select(EventLink.event_id).where(EventLink.event_id.in_(ids))).first()
            is not None
        )
    assert result.status == "stored"
    assert verify_log(services).ok
