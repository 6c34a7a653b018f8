"""Custody events: a hash-chained log in the catalog, and PREMIS 3 XML inside each object.

Every append to the custody log is one entry (log format 2): the events it records, each with
its own hash, SHA-512 over a canonical JSON form of every field and link (:func:`event_bytes`),
and the entry's Merkle root over those hashes in order (RFC 6962's tree hash, with SHA-512).
Entry ``n`` of a chain carries the hash of entry ``n-1`` and its own hash over its place, the
hash before it, its root and its number of events (:func:`log_entry_bytes`).

The events and their entry row are written when the caller records them, without any lock; the
entry is given its place in the chain when the caller's transaction commits, under the log head
(the one ``custody_head`` row), which other appenders then wait for only while one row is
updated and the transaction commits: a deposit of a million files does not hold every other
writer for as long as its own catalog work takes. Entries are numbered without gaps across
processes, in the order their transactions commit.

Events recorded before format 2 are entries themselves (format 1: :func:`entry_bytes`), each
chained alone; they stay as they were recorded. Heads are written to storage as checkpoints and
sealed like manifests (``archive.proofs.seal``); ``archive.audit`` checks the whole chain
against them.

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
from sqlalchemy import Connection, Dialect, event, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from archive.catalog.tables import Base, CustodyEntry, CustodyHead, Event
from archive.clock import now
from archive.errors import CatalogError
from archive.model import EventRecord, Link, Outcome

if TYPE_CHECKING:
    import psycopg

#: Identifies the canonical form hashed into each entry; a new form gets a new name.
LOG_FORMAT = "custos-custody-log/2"
#: The form of the entries recorded before format 2: one event each (:func:`entry_bytes`).
LOG_FORMAT_1 = "custos-custody-log/1"
#: The canonical form of an event's own hash in format 2 (:func:`event_bytes`).
EVENT_FORMAT = "custos-custody-event/2"
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
    """The one textual form of an event time in the log: UTC, microseconds, ``Z``
    (``strftime("%Y-%m-%dT%H:%M:%S.%fZ")``; the same text through ``isoformat``, three times
    faster, for the years where both write four digits)."""
    utc = when.astimezone(UTC)
    if utc.year < 1000:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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
    """The canonical form of one log entry of format 1 (one event, chained alone): JSON,
    sorted keys, no spaces, UTF-8.

    Written out here (rather than left to a serialiser's defaults) because anyone re-checking
    the log years from now must produce the same bytes from the same fields."""
    doc = {
        "format": LOG_FORMAT_1,
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
    """SHA-512 (hex) of :func:`entry_bytes` (format 1) over ``fields``."""
    return hashlib.sha512(entry_bytes(**fields)).hexdigest()  # type: ignore[arg-type]


def event_bytes(
    *,
    uuid: str,
    type_: str,
    occurred_at: datetime,
    agent: str,
    outcome: str,
    detail: str,
    package_id: str | None,
    links: Iterable[tuple[str, str, str]],
) -> bytes:
    """The canonical form of one event of format 2 (its own hash is over these bytes): JSON,
    sorted keys, no spaces, UTF-8. Its place in the log is its entry's."""
    doc = {
        "format": EVENT_FORMAT,
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


def event_hash(**fields: object) -> str:
    """SHA-512 (hex) of :func:`event_bytes` over ``fields``."""
    return hashlib.sha512(event_bytes(**fields)).hexdigest()  # type: ignore[arg-type]


def log_entry_bytes(*, chain: str, seq: int, prev: str, root: str, events: int) -> bytes:
    """The canonical form of one log entry of format 2: its place, the hash of the entry
    before it, and the Merkle root of its ``events`` events (:class:`MerkleRoot`)."""
    doc = {
        "format": LOG_FORMAT,
        "chain": chain,
        "seq": seq,
        "prev": prev,
        "root": root,
        "events": events,
    }
    return _json(doc).encode()


def log_entry_hash(*, chain: str, seq: int, prev: str, root: str, events: int) -> str:
    """SHA-512 (hex) of :func:`log_entry_bytes`."""
    return hashlib.sha512(
        log_entry_bytes(chain=chain, seq=seq, prev=prev, root=root, events=events)
    ).hexdigest()


class MerkleRoot:
    """RFC 6962's Merkle tree hash (section 2.1) over events' own hashes, in order, with
    SHA-512, fed one hash at a time: memory grows with the logarithm of the count only, so an
    entry of a million events is checked in bounded memory. A leaf is ``H(0x00 || hash)``, a
    node ``H(0x01 || left || right)``, the left subtree the largest power of two.

    Written here (a dozen lines) because the libraries that build these trees hold every
    leaf, and the log's audit streams entries of any size."""

    __slots__ = ("_stack", "count")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, digest) of complete subtrees
        self.count = 0

    def add(self, event_hash_hex: str) -> None:
        node = hashlib.sha512(b"\x00" + bytes.fromhex(event_hash_hex)).digest()
        height = 0
        stack = self._stack
        while stack and stack[-1][0] == height:
            node = hashlib.sha512(b"\x01" + stack.pop()[1] + node).digest()
            height += 1
        stack.append((height, node))
        self.count += 1

    def hexdigest(self) -> str:
        """The root (hex); the hash of no bytes for no events."""
        if not self._stack:
            return hashlib.sha512(b"").hexdigest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = hashlib.sha512(b"\x01" + left + node).digest()
        return node.hex()


def merkle_root(hashes: Iterable[str]) -> str:
    tree = MerkleRoot()
    for h in hashes:
        tree.add(h)
    return tree.hexdigest()


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
    """Append events to the custody log as one entry, in one batch per table. The caller
    commits; the entry takes its place in the chain then.

    Raises :class:`CatalogError` if the log head is missing (at commit)."""
    record_batches(session, [(package_id, events)])


#: ``session.info`` key: the entries this transaction wrote, to be placed when it commits.
_PENDING = "custos.custody.unplaced"


def record_batches(
    session: Session, batches: Sequence[tuple[str | None, Sequence[EventRecord]]]
) -> None:
    """Append several packages' events (``(package id, events)`` each, in that order) to the
    custody log as one entry, in one batch per table. The caller commits; the entry takes its
    place in the chain then (:func:`place_entries`).

    Raises :class:`CatalogError` if the log head is missing (at commit)."""
    flat = [(package_id, e) for package_id, events in batches for e in events]
    if not flat:
        return
    tree = MerkleRoot()
    hashes = []
    for package_id, e in flat:
        digest = hashlib.sha512(_event_json(package_id, e)).hexdigest()
        hashes.append(digest)
        tree.add(digest)
    conn = session.connection()
    sql = _InsertSQL.of(conn.dialect)
    key = conn.execute(
        insert(CustodyEntry).values(root=tree.hexdigest(), events=len(flat))
    ).inserted_primary_key
    assert key is not None
    entry_id = key[0]
    times: dict[datetime, Any] = {}
    rows = []
    for pos, ((package_id, e), digest) in enumerate(zip(flat, hashes, strict=True)):
        at = times.get(e.occurred_at)
        if at is None:
            at = times[e.occurred_at] = sql.bind_time(e.occurred_at)
        rows.append(
            (entry_id, pos, digest, e.uuid, e.type, at, e.agent, e.outcome, e.detail, package_id)
        )
    # Straight to the driver (SQLAlchemy's executemany, even Core, spent more per row on its
    # parameters than the database on the row); the new rows' ids are then read back by
    # their entry.
    sql.insert(conn, "events", rows)
    link_rows: list[tuple[Any, ...]] = []
    if any(e.links for _, e in flat):
        ids = dict(
            conn.execute(select(Event.uuid, Event.id).where(Event.entry_id == entry_id)).all()
        )
        link_rows = [
            (ids[e.uuid], link.object_type, link.object_id, link.role)
            for _, e in flat
            for link in e.links
        ]
        sql.insert(conn, "links", link_rows)
    session.info.setdefault(_PENDING, []).append(entry_id)


def place_entries(session: Session) -> int:
    """Give this transaction's new entries their places in the chain, under the log head
    (held until the transaction ends). Called when the transaction commits; called earlier
    by a caller that reads the head and wants its own entries counted (a checkpoint).
    Returns the number placed.

    Raises :class:`CatalogError` if the log head is missing."""
    pending: list[int] = session.info.pop(_PENDING, [])
    if not pending:
        return 0
    conn = session.connection()
    chain, seq, prev = lock_head(session)
    rows = conn.execute(
        select(CustodyEntry.id, CustodyEntry.root, CustodyEntry.events).where(
            CustodyEntry.id.in_(pending), CustodyEntry.seq.is_(None)
        )
    ).all()
    found = {r.id: r for r in rows}  # an entry written in a savepoint rolled back is gone
    placed = 0
    # Once each: SQLite gives a rolled-back entry's id to the next one.
    for entry_id in dict.fromkeys(pending):
        row = found.get(entry_id)
        if row is None:
            continue
        seq += 1
        digest = log_entry_hash(chain=chain, seq=seq, prev=prev, root=row.root, events=row.events)
        conn.execute(
            update(CustodyEntry)
            .where(CustodyEntry.id == entry_id)
            .values(chain=chain, seq=seq, prev_hash=prev, hash=digest)
        )
        prev = digest
        placed += 1
    if placed:
        conn.execute(update(CustodyHead).where(CustodyHead.id == 1).values(seq=seq, hash=prev))
    return placed


@event.listens_for(Session, "before_commit")
def _place_on_commit(session: Session) -> None:
    if session.info.get(_PENDING):
        place_entries(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_when_done(session: Session, transaction: SessionTransaction) -> None:
    # Only when the outermost transaction ends (committed: placed already; rolled back: its
    # entries are gone). A savepoint rolled back keeps the list: place_entries skips the
    # entries it took with it.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


class _InsertSQL:
    """The two INSERTs of :func:`record_batches` in the driver's own parameter style, and
    how the catalog's time column binds a value (``UTCDateTime``, then the dialect's)."""

    _made: ClassVar[dict[str, _InsertSQL]] = {}
    EVENT_COLUMNS = (
        "entry_id, pos, hash, uuid, type, occurred_at, agent, outcome, detail, package_id"
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
_EVENT_FORMAT_JSON = _quote(EVENT_FORMAT)


@functools.lru_cache(maxsize=256)
def _at_json(when: datetime) -> str:
    """A batch's events mostly share one time: its text is made once."""
    return _json(timestamp_text(when))


def _event_json(package_id: str | None, e: EventRecord) -> bytes:
    """:func:`event_bytes` of one event (see :func:`event_json`)."""
    return event_json(
        uuid=e.uuid,
        type_=e.type,
        occurred_at=e.occurred_at,
        agent=e.agent,
        outcome=e.outcome,
        detail=e.detail,
        package_id=package_id,
        links=[(k.object_type, k.object_id, k.role) for k in e.links],
    )


def event_json(
    *,
    uuid: str,
    type_: str,
    occurred_at: datetime,
    agent: str,
    outcome: str,
    detail: str,
    package_id: str | None,
    links: Iterable[tuple[str, str, str]],
) -> bytes:
    """:func:`event_bytes`, written out by hand: the canonical form is JSON with sorted keys
    (``agent, at, detail, format, links, outcome, package, type, uuid``), and the general
    encoder cost more than the database's work per event (on appending and in the audit). The
    tests check that this gives exactly :func:`event_bytes` (which stays the definition)."""
    q = _quote  # JSON's own string encoder: what json.dumps does to each string here
    joined = ",".join(f"[{q(t)},{q(i)},{q(r)}]" for t, i, r in sorted(links))
    package = "null" if package_id is None else q(package_id)
    return (
        f'{{"agent":{q(agent)},"at":{_at_json(occurred_at)},"detail":{q(detail)},'
        f'"format":{_EVENT_FORMAT_JSON},"links":[{joined}],"outcome":{q(outcome)},'
        f'"package":{package},"type":{q(type_)},"uuid":{q(uuid)}}}'
    ).encode()


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
