from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archive.custody import new_event, parse_premis, premis_xml
from archive.model import EventRecord, Link


def test_premis_round_trip() -> None:
    events = [
        new_event(
            "ingestion",
            "success",
            'stored <&> "quoted"',
            links=[Link("package", "urn:x"), Link("file", "bag/data/a b.txt", "source")],
        ),
        new_event(
            "validation", "warning", "", at=datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
        ),
    ]
    xml = premis_xml(events)
    assert b'xmlns:premis="http://www.loc.gov/premis/v3"' in xml
    assert parse_premis(xml) == events


def test_event_values_are_checked() -> None:
    with pytest.raises(ValueError, match="event type"):
        new_event("teleportation", "success")
    with pytest.raises(ValueError, match="time zone"):
        EventRecord("u", "ingestion", datetime(2026, 1, 1), "a", "success")
