"""`custos audit verify`: check the hash-chained custody log against its sealed checkpoints.

Steps, each reported in words:

1. every entry of every chain in the catalog, in order: its number follows the one before
   (a gap means entries were deleted), it names the hash of the one before (otherwise an entry
   was inserted, removed or moved there), and its hash, recomputed over its fields, is the one
   it carries (otherwise it was altered after it was recorded). An entry of format 2 holds
   events: each one's own hash, recomputed over its fields and links, is the one it carries;
   they are numbered from the first without a gap; and their Merkle root and count are the
   entry's (otherwise an event was altered, deleted, added or moved). An entry of format 1 is
   one event, its fields and links in its own hash. Every event of the catalog belongs to an
   entry (otherwise it was added outside Custos, or its entry was deleted);
2. the log head (the ``custody_head`` row) names the last entry (otherwise the end of the log
   was cut off or extended behind the appenders' backs);
3. every checkpoint in *storage*: its evidence records verify against the archive's trust
   anchors, and the entry it names still has the hash it sealed (otherwise the log was
   rewritten from that entry or earlier, or cut short);
4. entries after the last sealed checkpoint are counted: the chain protects them, but until the
   next seal nothing outside the catalog vouches for them.

Checkpoints of a chain the catalog does not hold are explained only by a recorded restart of the
log (a catalog rebuilt into an empty database links the chains it could not hold); any other is
a failure.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from archive.catalog.tables import CustodyEntry, CustodyHead, Event, EventLink
from archive.checkpoints import (
    CHAIN_LINK,
    MAX_CHECKPOINT,
    CheckpointDoc,
    read_checkpoints,
    records_of,
)
from archive.custody import (
    GENESIS,
    MerkleRoot,
    entry_hash,
    event_json,
    log_entry_hash,
    timestamp_text,
)
from archive.errors import ProofError, StorageError
from archive.proofs.evidence import parse_record, verify_record
from archive.proofs.renew import current_only, digest_all
from archive.proofs.verify import trust_anchors
from archive.services import Services
from archive.storage.primary import Primary
from archive.storage.replica import LocationUnavailable

PAGE = 5000


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    text: str


@dataclass
class AuditReport:
    entries: int = 0
    events: int = 0
    chains: list[str] = field(default_factory=list)
    head: tuple[str, int] | None = None
    checkpoints_sealed: int = 0
    last_sealed: tuple[int, str] | None = None  # (entry, time of its first token)
    unanchored: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, code: str, text: str) -> None:
        self.problems.append(Problem(code, text))

    def as_dict(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "entries": self.entries,
            "events": self.events,
            "chains": self.chains,
            "head": {"chain": self.head[0], "seq": self.head[1]} if self.head else None,
            "checkpoints_sealed": self.checkpoints_sealed,
            "last_sealed": (
                {"seq": self.last_sealed[0], "sealed_at": self.last_sealed[1]}
                if self.last_sealed
                else None
            ),
            "unanchored_entries": self.unanchored,
            "notes": self.notes,
            "problems": [{"code": p.code, "text": p.text} for p in self.problems],
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    hash: str


def _links_of(session: Session, ids: list[int]) -> dict[int, list[tuple[str, str, str]]]:
    links: dict[int, list[tuple[str, str, str]]] = {}
    for event_id, t, i, r in session.execute(
        select(
            EventLink.event_id, EventLink.object_type, EventLink.object_id, EventLink.role
        ).where(EventLink.event_id.in_(ids))
    ):
        links.setdefault(event_id, []).append((t, i, r))
    return links


def _format1_entries(
    session: Session, chain: str
) -> Iterator[tuple[int, int, Event | CustodyEntry, list[tuple[str, str, str]]]]:
    """A chain's entries of format 1 (one event each) in order, with their links, a page at a
    time (keyset on seq): ``(seq, 1, event, links)``."""
    after = -1
    while True:
        rows = (
            session.execute(
                select(Event)
                .where(Event.chain == chain, Event.seq > after)
                .order_by(Event.seq)
                .limit(PAGE)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        links = _links_of(session, [r.id for r in rows])
        for row in rows:
            yield int(row.seq or 0), 1, row, links.get(row.id, [])
        after = int(rows[-1].seq or 0)


def _format2_entries(
    session: Session, chain: str
) -> Iterator[tuple[int, int, Event | CustodyEntry, list[tuple[str, str, str]]]]:
    """A chain's entries of format 2 in order, a page at a time: ``(seq, 2, entry, [])``."""
    after = -1
    while True:
        rows = (
            session.execute(
                select(CustodyEntry)
                .where(CustodyEntry.chain == chain, CustodyEntry.seq > after)
                .order_by(CustodyEntry.seq)
                .limit(PAGE)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for row in rows:
            yield int(row.seq or 0), 2, row, []
        after = int(rows[-1].seq or 0)


#: What the audit reads of an event of format 2 (rows, not ORM objects: a third faster).
_EVENT_COLUMNS = (
    Event.id,
    Event.entry_id,
    Event.pos,
    Event.hash,
    Event.uuid,
    Event.type,
    Event.occurred_at,
    Event.agent,
    Event.outcome,
    Event.detail,
    Event.package_id,
)


def _check_events(
    session: Session,
    entries: dict[int, CustodyEntry],
    report: AuditReport,
    progress: Callable[[int], None] | None,
) -> None:
    """The events of some entries of format 2: each one's own hash, their numbering, their
    count and Merkle root. Read a page at a time in the order of (entry, place), so an entry
    of any size is checked in bounded memory."""
    trees = {entry_id: MerkleRoot() for entry_id in entries}
    next_pos = dict.fromkeys(entries, 0)
    after = (-1, -1)
    while True:
        rows = session.execute(
            select(*_EVENT_COLUMNS)
            .where(
                Event.entry_id.in_(list(entries)),
                tuple_(Event.entry_id, Event.pos) > after,
            )
            .order_by(Event.entry_id, Event.pos)
            .limit(PAGE)
        ).all()
        if not rows:
            break
        links = _links_of(session, [r.id for r in rows])
        for row in rows:
            entry_id, pos = int(row.entry_id or 0), int(row.pos or 0)
            entry = entries[entry_id]
            report.events += 1
            where = (
                f"event {pos + 1} of entry {entry.seq} ({row.type}, "
                f"{timestamp_text(row.occurred_at)})"
            )
            if pos != next_pos[entry_id]:
                first = next_pos[entry_id] + 1
                gap = f"{first}" if pos + 1 == first + 1 else f"{first} to {pos}"
                report.problem(
                    "log-gap",
                    f"event {gap} of entry {entry.seq} of the custody log is missing: it was "
                    "deleted",
                )
            recomputed = hashlib.sha512(
                event_json(
                    uuid=row.uuid,
                    type_=row.type,
                    occurred_at=row.occurred_at,
                    agent=row.agent,
                    outcome=row.outcome,
                    detail=row.detail,
                    package_id=row.package_id,
                    links=links.get(row.id, []),
                )
            ).hexdigest()
            if recomputed != row.hash:
                report.problem(
                    "log-altered",
                    f"{where} was altered after it was recorded: its content no longer has "
                    "the hash it was recorded with",
                )
            trees[entry_id].add(row.hash)
            next_pos[entry_id] = pos + 1
            if progress:
                progress(1)
        after = (int(rows[-1].entry_id or 0), int(rows[-1].pos or 0))
    for entry_id, entry in entries.items():
        tree = trees[entry_id]
        if tree.count != entry.events:
            report.problem(
                "log-gap" if tree.count < entry.events else "log-link",
                f"entry {entry.seq} of the custody log was recorded with {entry.events} "
                f"event(s) and holds {tree.count}: events were "
                f"{'deleted from' if tree.count < entry.events else 'added to'} it",
            )
        elif tree.hexdigest() != entry.root:
            report.problem(
                "log-altered",
                f"the events of entry {entry.seq} are not those it was recorded with (their "
                "Merkle root differs): an event was replaced or moved, or its hash rewritten",
            )


def _check_chain(
    session: Session,
    chain: str,
    wanted: set[int],
    report: AuditReport,
    progress: Callable[[int], None] | None,
) -> tuple[_Entry | None, dict[int, str]]:
    """Step 1 for one chain: return its last entry and the hashes at the ``wanted`` numbers."""
    expected, prev = 1, GENESIS
    last: _Entry | None = None
    at: dict[int, str] = {}
    held: dict[int, CustodyEntry] = {}
    merged = heapq.merge(
        _format1_entries(session, chain),
        _format2_entries(session, chain),
        key=lambda item: (item[0], item[1]),
    )
    for seq, _kind, row, links in merged:
        report.entries += 1
        if seq != expected:
            gap = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
            report.problem("log-gap", f"entry {gap} of the custody log is missing: it was deleted")
        elif row.prev_hash != prev:
            report.problem(
                "log-link",
                f"entry {seq} does not follow the entry before it (the hash it names is not "
                "that entry's): an entry was inserted, removed or moved here",
            )
        if isinstance(row, Event):
            where = f"entry {seq} ({row.type}, {timestamp_text(row.occurred_at)})"
            report.events += 1
            recomputed = entry_hash(
                chain=row.chain,
                seq=seq,
                prev=row.prev_hash,
                uuid=row.uuid,
                type_=row.type,
                occurred_at=row.occurred_at,
                agent=row.agent,
                outcome=row.outcome,
                detail=row.detail,
                package_id=row.package_id,
                links=links,
            )
            if progress:
                progress(1)
        else:
            where = f"entry {seq} ({row.events} event(s))"
            recomputed = log_entry_hash(
                chain=chain, seq=seq, prev=row.prev_hash or "", root=row.root, events=row.events
            )
            held[row.id] = row
            if len(held) >= PAGE:
                _check_events(session, held, report, progress)
                held = {}
        if recomputed != row.hash:
            report.problem(
                "log-altered",
                f"{where} was altered after it was recorded: its content no longer has the "
                "hash it was recorded with",
            )
        digest = str(row.hash)
        if seq in wanted:
            at[seq] = digest
        prev, expected = digest, seq + 1
        last = _Entry(seq, digest)
    if held:
        _check_events(session, held, report, progress)
    return last, at


def verify_log(services: Services, *, progress: Callable[[int], None] | None = None) -> AuditReport:
    """Check the whole custody log (steps 1 to 4 above). Returns the report; raises nothing
    for a broken log (a verdict is not a failure), only for an unreadable catalog."""
    report = AuditReport()
    root = services.primary
    docs, unreadable = read_checkpoints(root)
    for path, why in unreadable:
        report.problem("checkpoint-unreadable", f"checkpoint {path}: {why}")
    anchors = trust_anchors(services)
    with services.sessions() as session:
        head = session.get(CustodyHead, 1)
        held_chains = {
            c
            for c in [
                *session.execute(select(Event.chain).distinct()).scalars(),
                *session.execute(select(CustodyEntry.chain).distinct()).scalars(),
            ]
            if c is not None
        }
        # The head's chain last; others (a catalog altered by hand) by name.
        current = head.chain if head is not None else None
        chains = sorted(held_chains, key=lambda c: (c == current, c))
        report.chains = chains
        lasts: dict[str, _Entry | None] = {}
        hashes: dict[str, dict[int, str]] = {}
        for chain in chains:
            wanted = {d.seq for d in docs if d.chain == chain}
            lasts[chain], hashes[chain] = _check_chain(session, chain, wanted, report, progress)
        stray = (session.execute(select(func.count(Event.id))).scalar() or 0) - report.events
        if stray > 0:
            report.problem(
                "log-stray",
                f"{stray} event(s) in the catalog belong to no entry of the custody log: they "
                "were added outside Custos, or the entry that held them was deleted",
            )
        unplaced = session.execute(
            select(func.count(CustodyEntry.id)).where(CustodyEntry.seq.is_(None))
        ).scalar()
        if unplaced:
            report.problem(
                "log-stray",
                f"{unplaced} entr{'y' if unplaced == 1 else 'ies'} of the custody log have no "
                "place in its chain: they were added or altered outside Custos",
            )

        # Step 2: the head names the last entry of its chain.
        if head is None:
            report.problem("head-missing", "the custody log's head row is missing from the catalog")
        else:
            report.head = (head.chain, head.seq)
            last = lasts.get(head.chain)
            if head.seq == 0 and last is None:
                pass
            elif last is None or (last.seq, last.hash) != (head.seq, head.hash):
                report.problem(
                    "head-mismatch",
                    f"the log head names entry {head.seq}, but the log's last entry is "
                    f"{last.seq if last else 'none'} (or has another hash): the end of the log "
                    "was cut off or added to outside Custos",
                )
        explained = set(
            session.execute(
                select(EventLink.object_id).where(EventLink.object_type == CHAIN_LINK)
            ).scalars()
        )

    # Step 3: checkpoints in storage, their records, and the entries they name.
    sealed_seqs: dict[str, list[tuple[int, str]]] = {}
    earlier: dict[str, int] = {}
    for doc in docs:
        sealed_at = _check_records(doc, root, anchors, report)
        if doc.chain not in lasts:
            if doc.chain in explained:
                earlier[doc.chain] = earlier.get(doc.chain, 0) + 1
            else:
                report.problem(
                    "checkpoint-foreign-chain",
                    f"checkpoint {doc.path} belongs to a custody log this catalog does not "
                    "hold, and no recorded restart of the log explains it: the log may have "
                    "been replaced",
                )
            continue
        last = lasts[doc.chain]
        if last is None or doc.seq > last.seq:
            report.problem(
                "log-truncated",
                f"checkpoint {doc.path} covers entry {doc.seq}, but the log ends at entry "
                f"{last.seq if last else 0}: entries were removed from the end",
            )
        elif hashes[doc.chain].get(doc.seq) != doc.head:
            report.problem(
                "log-rewritten",
                f"entry {doc.seq} no longer has the hash checkpoint {doc.path} recorded: the "
                f"log was rewritten from entry {doc.seq} or earlier",
            )
        if sealed_at:
            report.checkpoints_sealed += 1
            sealed_seqs.setdefault(doc.chain, []).append((doc.seq, sealed_at))
    for chain, count in earlier.items():
        report.notes.append(
            f"{count} checkpoint(s) belong to an earlier custody log ({chain}), left behind by "
            "a recorded restart of the log; they cannot be checked against this catalog"
        )

    # Step 4: what the last sealed checkpoint leaves unanchored.
    if report.head:
        chain, head_seq = report.head
        if sealed_seqs.get(chain):
            seq, when = max(sealed_seqs[chain])
            report.last_sealed = (seq, when)
            report.unanchored = max(0, head_seq - seq)
        else:
            report.unanchored = head_seq
        if report.unanchored:
            report.notes.append(
                f"{report.unanchored} entr{'y' if report.unanchored == 1 else 'ies'} since the "
                "last sealed checkpoint are protected by the chain alone until the next "
                "checkpoint is sealed (`custos seal` makes one once anything but a seal has "
                "been recorded)"
            )
    return report


def _check_records(
    doc: CheckpointDoc, root: Primary, anchors: list[bytes], report: AuditReport
) -> str | None:
    """Verify a checkpoint's current evidence records (a renewed record supersedes the one it
    extends); return the earliest time one attests, if any verifies.

    Raises :class:`LocationUnavailable` if the primary cannot be reached."""
    times: list[str] = []
    try:
        digests = digest_all(root.read_bytes(doc.path, limit=MAX_CHECKPOINT))
    except LocationUnavailable:
        raise
    except StorageError as exc:
        report.problem("checkpoint-unreadable", f"checkpoint {doc.path}: {exc.message}")
        return None
    loaded = []
    for record in records_of(root, doc.path):
        name = record.rpartition("/")[2]
        try:
            der = root.read_bytes(record)
            loaded.append((name, der, parse_record(der)))
        except LocationUnavailable:
            raise
        except (ProofError, StorageError) as exc:
            report.problem(
                "checkpoint-seal", f"evidence record {name} of {doc.path}: {exc.message}"
            )
    for i in current_only([(name, view) for name, _, view in loaded]):
        name, der, _ = loaded[i]
        try:
            check = verify_record(der, digests, roots=anchors)
        except ProofError as exc:
            report.problem(
                "checkpoint-seal",
                f"evidence record {name} of checkpoint {doc.path} does not verify: {exc.message}",
            )
            continue
        times.append(check.gen_time.isoformat())
    return min(times) if times else None
