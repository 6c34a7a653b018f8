from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from archive.custody import (
    MerkleRoot,
    _event_json,
    event_bytes,
    new_event,
    parse_premis,
    premis_xml,
    timestamp_text,
)
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


def test_event_identifiers_are_unique_and_ordered_by_time() -> None:
    """Version 7 UUIDs: new events' keys sort after the ones before (the catalog's unique
    index on them grows at one end), and never repeat."""
    ids = [new_event("fixity check", "success").uuid for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}


@pytest.mark.parametrize(
    "package_id, detail, links",
    [
        ("urn:uuid:1", "sha256 matches (1024 bytes read)", [("package", "urn:uuid:1", "")]),
        (None, "", []),
        (
            'pkg "quoted" \\ back',
            'naïve café ✓ <&> "q" \t tab \u2028 line \x01 control',
            [("file", "data/é/b.txt", "replica-b"), ("file", "data/a.txt", ""), ("user", "x", "")],
        ),
    ],
)
def test_the_appenders_encoding_gives_the_canonical_bytes(
    package_id: str | None, detail: str, links: list[tuple[str, str, str]]
) -> None:
    """The log's appender encodes each event by hand; that is exactly event_bytes (the
    definition an outside verifier re-implements)."""
    event = new_event(
        "fixity check",
        "failure",
        detail,
        links=[Link(t, i, r) for t, i, r in links],  # type: ignore[arg-type]
        agent="Custos ✓",
        at=datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=UTC),
    )
    expected = event_bytes(
        uuid=event.uuid,
        type_=event.type,
        occurred_at=event.occurred_at,
        agent=event.agent,
        outcome=event.outcome,
        detail=event.detail,
        package_id=package_id,
        links=links,
    )
    assert _event_json(package_id, event) == expected
    assert json.loads(expected)["format"] == "custos-custody-event/2"


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, as written there (recursive, holding every leaf), with SHA-512."""
    if len(leaves) == 1:
        return hashlib.sha512(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha512(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 100])
def test_the_streamed_merkle_root_is_rfc_6962s_tree_hash(n: int) -> None:
    hashes = [hashlib.sha512(b"%d" % i).hexdigest() for i in range(n)]
    tree = MerkleRoot()
    for h in hashes:
        tree.add(h)
    assert tree.count == n
    assert tree.hexdigest() == _mth([bytes.fromhex(h) for h in hashes]).hex()


def test_the_merkle_root_binds_order_and_every_event() -> None:
    hashes = [hashlib.sha512(b"%d" % i).hexdigest() for i in range(5)]

    def root(hs: list[str]) -> str:
        tree = MerkleRoot()
        for h in hs:
            tree.add(h)
        return tree.hexdigest()

    assert root(hashes) != root([hashes[1], hashes[0], *hashes[2:]])
    assert root(hashes) != root(hashes[:4])
    assert root(hashes) != root([*hashes, hashes[4]])


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 3, 4, 5, 6, 7, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1999, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(9999, 12, 31, 12, 0, 0, 5, tzinfo=UTC),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    ],
)
def test_the_log_writes_every_time_as_its_strftime_form(when: datetime) -> None:
    assert timestamp_text(when) == when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
