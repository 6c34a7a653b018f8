"""Custody events: a hash-chained log in the catalog, and PREMIS 3 XML inside each object.

Every event is appended to the custody log: entry ``n`` of a chain carries the hash of entry
``n-1`` and its own hash, SHA-512 over a canonical JSON form of every field and link
(:func:`entry_bytes`). Appenders take the log head (the one ``custody_head`` row) in turn, inside
the caller's transaction, so entries are numbered without gaps across processes. Heads are
written to storage as checkpoints and sealed like manifests (``archive.proofs.seal``);
``archive.audit`` checks the whole chain against them.

Events are written in batches (one INSERT per table per batch). Details never hold protected
content or identities: codes, counts, digests and paths only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

import uuid_utils
from sqlalchemy import Connection, Dialect, select, update
from sqlalchemy.orm import Session

from archive.catalog.tables import Base, CustodyHead, Event
from archive.clock import now
from archive.errors import CatalogError
from archive.model import EventRecord, Link, Outcome

if TYPE_CHECKING:
    import psycopg

#: Identifies the canonical form hashed into each entry; a new form gets a new name.
LOG_FORMAT = "custos-custody-log/1"
#: ``prev`` of the first entry of a chain.
GENESIS = "0" * 128
EVENTS = Base.metadata.tables["events"]
EVENT_LINKS = Base.metadata.tables["event_links"]

PREMIS_NS = "http://www.loc.gov/premis/v3"
AGENT = "Custos"


def new_event(
    type_: str,
    outcome: Outcome,
    detail: str = "",
    *,
    links: Sequence[Link] = (),
    agent: str = AGENT,
    at: datetime | None = None,
) -> EventRecord:
    return EventRecord(
        # UUID version 7 (RFC 9562): unique like a random one, and ordered by time, so each
        # new event's key lands at the end of the catalog's unique index on it. Random (v4)
        # keys each touched a different page of that index: a fixity batch of 500 events
        # wrote about 500 index pages at commit, and read as many from disk when cold.
        uuid=str(uuid_utils.uuid7()),
        type=type_,
        occurred_at=at or now(),
        agent=agent,
        outcome=outcome,
        detail=detail,
        links=tuple(links),
    )


def timestamp_text(when: datetime) -> str:
    """The one textual form of an event time in the log: UTC, microseconds, ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_bytes(
    *,
    chain: str,
    seq: int,
    prev: str,
    uuid: str,
    type_: str,
    occurred_at: datetime,
    agent: str,
    outcome: str,
    detail: str,
    package_id: str | None,
    links: Iterable[tuple[str, str, str]],
) -> bytes:
    """The canonical form of one log entry: JSON, sorted keys, no spaces, UTF-8.

    Written out here (rather than left to a serialiser's defaults) because anyone re-checking
    the log years from now must produce the same bytes from the same fields."""
    doc = {
        "format": LOG_FORMAT,
        "chain": chain,
        "seq": seq,
        "prev": prev,
        "uuid": uuid,
        "type": type_,
        "at": timestamp_text(occurred_at),
        "agent": agent,
        "outcome": outcome,
        "detail": detail,
        "package": package_id,
        "links": sorted([t, i, r] for t, i, r in links),
    }
    return _json(doc).encode()


def entry_hash(**fields: object) -> str:
    """SHA-512 (hex) of :func:`entry_bytes` over ``fields``."""
    return hashlib.sha512(entry_bytes(**fields)).hexdigest()  # type: ignore[arg-type]


def lock_head(session: Session) -> tuple[str, int, str]:
    """Take the log head for this transaction; return (chain, last seq, last hash).

    A no-op UPDATE first: on PostgreSQL it locks the row until commit, on SQLite it takes the
    database's write lock, so concurrent appenders queue here. Raises :class:`CatalogError`
    when the head row is gone (the catalog was altered by hand)."""
    row = (
        session.connection()
        .execute(
            update(CustodyHead)
            .where(CustodyHead.id == 1)
            .values(seq=CustodyHead.seq)
            .returning(CustodyHead.chain, CustodyHead.seq, CustodyHead.hash)
        )
        .first()
    )
    if row is None:
        raise CatalogError(
            "the custody log has no head row: the catalog was altered outside Custos",
            hint="run `custos audit verify` and restore the catalog from a backup or rebuild it",
        )
    return str(row[0]), int(row[1]), str(row[2])


def record_events(
    session: Session, events: Sequence[EventRecord], *, package_id: str | None = None
) -> None:
    """Append events to the custody log in one batch per table. The caller commits.

    Raises :class:`CatalogError` if the log head is missing."""
    record_batches(session, [(package_id, events)])


def record_batches(
    session: Session, batches: Sequence[tuple[str | None, Sequence[EventRecord]]]
) -> None:
    """Append several packages' events (``(package id, events)`` each, in that order) under
    one lock of the log head, in one batch per table. The caller commits.

    Raises :class:`CatalogError` if the log head is missing."""
    flat = [(package_id, e) for package_id, events in batches for e in events]
    if not flat:
        return
    # Each entry is encoded before the head is taken (other appenders wait for it until this
    # transaction commits); only its place in the chain is filled in under the lock.
    parts = [_EntryParts.of(package_id, e) for package_id, e in flat]
    conn = session.connection()
    sql = _InsertSQL.of(conn.dialect)
    chain, seq, prev = lock_head(session)
    chain_json = _json(chain).encode()
    times: dict[datetime, Any] = {}
    rows = []
    for (package_id, e), part in zip(flat, parts, strict=True):
        seq += 1
        digest = hashlib.sha512(part.join(chain_json, seq, prev)).hexdigest()
        at = times.get(e.occurred_at)
        if at is None:
            at = times[e.occurred_at] = sql.bind_time(e.occurred_at)
        rows.append(
            (chain, seq, prev, digest, e.uuid, e.type, at, e.agent, e.outcome, e.detail, package_id)
        )
        prev = digest
    # Straight to the driver (SQLAlchemy's executemany, even Core, spent more per row on its
    # parameters than the database on the row); the new rows' ids are then read back by
    # their place in the chain, which this transaction holds (the head is locked).
    sql.insert(conn, "events", rows)
    returned = conn.execute(
        select(Event.uuid, Event.id).where(
            Event.chain == chain, Event.seq > seq - len(rows), Event.seq <= seq
        )
    )
    conn.execute(update(CustodyHead).where(CustodyHead.id == 1).values(seq=seq, hash=prev))
    ids = {u: i for u, i in returned}
    link_rows = [
        (ids[e.uuid], link.object_type, link.object_id, link.role)
        for _, e in flat
        for link in e.links
    ]
    if link_rows:
        sql.insert(conn, "links", link_rows)


class _InsertSQL:
    """The two INSERTs of :func:`record_batches` in the driver's own parameter style, and
    how the catalog's time column binds a value (``UTCDateTime``, then the dialect's)."""

    _made: ClassVar[dict[str, _InsertSQL]] = {}
    EVENT_COLUMNS = (
        "chain, seq, prev_hash, hash, uuid, type, occurred_at, agent, outcome, detail, package_id"
    )
    LINK_COLUMNS = "event_id, object_type, object_id, role"

    def __init__(self, dialect: Dialect) -> None:
        marks = {"qmark": "?", "format": "%s", "pyformat": "%s"}
        mark = marks.get(str(dialect.paramstyle))
        if mark is None:
            raise CatalogError(
                f"the catalog's database driver uses the {dialect.paramstyle} parameter style",
                hint="use SQLite or PostgreSQL (psycopg) for the catalog",
            )
        #: per table: its name, its columns, the INSERT
        self.tables: dict[str, tuple[str, str, str]] = {}
        for which, name, columns in (
            ("events", EVENTS.name, self.EVENT_COLUMNS),
            ("links", EVENT_LINKS.name, self.LINK_COLUMNS),
        ):
            values = ", ".join([mark] * len(columns.split(",")))
            self.tables[which] = (
                name,
                columns,
                f"INSERT INTO {name} ({columns}) VALUES ({values})",
            )
        process = EVENTS.c.occurred_at.type.bind_processor(dialect)
        self.bind_time: Callable[[datetime], Any] = process or (lambda value: value)
        self.copy = dialect.name == "postgresql" and dialect.driver == "psycopg"

    def insert(self, conn: Connection, which: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` into ``events`` or ``links``, in this transaction. On PostgreSQL
        (psycopg) through COPY: an executemany runs one INSERT per row on the server, which cost
        PostgreSQL more than the rest of a fixity batch's catalog work."""
        table, columns, insert = self.tables[which]
        if not self.copy:
            conn.exec_driver_sql(insert, rows)
            return
        driver = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    @classmethod
    def of(cls, dialect: Dialect) -> _InsertSQL:
        made = cls._made.get(dialect.name)
        if made is None:
            made = cls._made[dialect.name] = cls(dialect)
        return made


#: The canonical JSON encoder (one instance: ``json.dumps`` with options makes one per call).
_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
#: The string encoder ``_json`` uses (ensure_ascii off), called directly: once per field of
#: every entry, the encoder's own dispatch cost more than the encoding.
_quote: Callable[[str], str] = json.encoder.encode_basestring
_FORMAT_JSON = _quote(LOG_FORMAT)


@functools.lru_cache(maxsize=256)
def _at_json(when: datetime) -> str:
    """A batch's events mostly share one time: its text is made once."""
    return _json(timestamp_text(when))


class _EntryParts:
    """:func:`entry_bytes` of one event in three pieces, around the fields only known once
    the log head is taken (chain, prev and seq): ``head + chain + mid + prev + seq + tail``.

    Written out by hand because the canonical form is JSON with sorted keys: ``agent, at,
    chain, detail, format, links, outcome, package, prev, seq, type, uuid``. The tests check
    that :meth:`join` gives exactly :func:`entry_bytes` (which stays the definition)."""

    __slots__ = ("head", "mid", "tail")

    def __init__(self, head: bytes, mid: bytes, tail: bytes) -> None:
        self.head, self.mid, self.tail = head, mid, tail

    @classmethod
    def of(cls, package_id: str | None, e: EventRecord) -> _EntryParts:
        q = _quote  # JSON's own string encoder: what json.dumps does to each string here
        links = ",".join(
            f"[{q(t)},{q(i)},{q(r)}]"
            for t, i, r in sorted((k.object_type, k.object_id, k.role) for k in e.links)
        )
        package = "null" if package_id is None else q(package_id)
        head = f'{{"agent":{q(e.agent)},"at":{_at_json(e.occurred_at)},"chain":'
        mid = (
            f',"detail":{q(e.detail)},"format":{_FORMAT_JSON},"links":[{links}],'
            f'"outcome":{q(e.outcome)},"package":{package},"prev":'
        )
        tail = f',"type":{q(e.type)},"uuid":{q(e.uuid)}}}'
        return cls(head.encode(), mid.encode(), tail.encode())

    def join(self, chain_json: bytes, seq: int, prev: str) -> bytes:
        return b"".join(
            (
                self.head,
                chain_json,
                self.mid,
                _json(prev).encode(),
                b',"seq":',
                b"%d" % seq,
                self.tail,
            )
        )


def _q(tag: str) -> str:
    return f"{{{PREMIS_NS}}}{tag}"


def premis_xml(events: Iterable[EventRecord]) -> bytes:
    """PREMIS 3 XML (premis:premis with one premis:event per event)."""
    ET.register_namespace("premis", PREMIS_NS)
    root = ET.Element(_q("premis"), {"version": "3.0"})
    for e in events:
        ev = ET.SubElement(root, _q("event"))
        ident = ET.SubElement(ev, _q("eventIdentifier"))
        ET.SubElement(ident, _q("eventIdentifierType")).text = "UUID"
        ET.SubElement(ident, _q("eventIdentifierValue")).text = e.uuid
        ET.SubElement(ev, _q("eventType")).text = e.type
        ET.SubElement(ev, _q("eventDateTime")).text = e.occurred_at.astimezone(UTC).isoformat()
        if e.detail:
            info = ET.SubElement(ev, _q("eventDetailInformation"))
            ET.SubElement(info, _q("eventDetail")).text = e.detail
        outcome = ET.SubElement(ev, _q("eventOutcomeInformation"))
        ET.SubElement(outcome, _q("eventOutcome")).text = e.outcome
        agent = ET.SubElement(ev, _q("linkingAgentIdentifier"))
        ET.SubElement(agent, _q("linkingAgentIdentifierType")).text = "software"
        ET.SubElement(agent, _q("linkingAgentIdentifierValue")).text = e.agent
        for link in e.links:
            obj = ET.SubElement(ev, _q("linkingObjectIdentifier"))
            ET.SubElement(obj, _q("linkingObjectIdentifierType")).text = link.object_type
            ET.SubElement(obj, _q("linkingObjectIdentifierValue")).text = link.object_id
            if link.role:
                ET.SubElement(obj, _q("linkingObjectRole")).text = link.role
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def parse_premis(data: bytes) -> list[EventRecord]:
    """Read back events written by :func:`premis_xml`."""
    root = ET.fromstring(data)  # noqa: S314 - our own file, digest-checked against the inventory
    events: list[EventRecord] = []
    for ev in root.iter(_q("event")):

        def text(path: str, node: ET.Element = ev) -> str:
            found = node.find(path)
            return (found.text or "") if found is not None else ""

        links = tuple(
            Link(
                text(_q("linkingObjectIdentifierType"), obj),  # type: ignore[arg-type]
                text(_q("linkingObjectIdentifierValue"), obj),
                text(_q("linkingObjectRole"), obj),
            )
            for obj in ev.iter(_q("linkingObjectIdentifier"))
        )
        events.append(
            EventRecord(
                uuid=text(f"{_q('eventIdentifier')}/{_q('eventIdentifierValue')}"),
                type=text(_q("eventType")),
                occurred_at=datetime.fromisoformat(text(_q("eventDateTime"))),
                agent=text(f"{_q('linkingAgentIdentifier')}/{_q('linkingAgentIdentifierValue')}"),
                outcome=text(  # type: ignore[arg-type]
                    f"{_q('eventOutcomeInformation')}/{_q('eventOutcome')}"
                ),
                detail=text(f"{_q('eventDetailInformation')}/{_q('eventDetail')}"),
                links=links,
            )
        )
    return events
