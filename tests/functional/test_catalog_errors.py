"""A catalog error names what went wrong without the statement or its values: a value may be
a protected file's path or a person's name."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from archive.catalog.tables import Event
from archive.clock import now
from archive.errors import CatalogError
from tests.conftest import MakeServices

NAME = "testimony of Amina Haddad.mp4"


def test_a_failed_catalog_write_tells_no_value_it_held(
    make_services: MakeServices, catalog_url: str
) -> None:
    services = make_services(catalog_url)
    row = {
        "hash": "0" * 128,
        "uuid": "same-uuid",
        "type": "ingestion",
        "occurred_at": now(),
        "agent": "Custos",
        "outcome": "success",
        "detail": NAME,
        "package_id": NAME,
    }
    with services.session_scope() as session:
        session.execute(insert(Event), [row])
    with pytest.raises(CatalogError) as caught, services.session_scope() as session:
        session.execute(insert(Event), [row])  # the same uuid: refused
    message = caught.value.message
    assert message.startswith("catalog write failed: ")
    assert "unique" in message.lower()  # what was wrong, in the driver's words
    assert "Amina" not in message and "same-uuid" not in message and "INSERT" not in message
