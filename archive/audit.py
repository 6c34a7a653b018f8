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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, true, tuple_
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
from archive.errors import CatalogError, ProofError, StorageError
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
    for event_id, t, i, r in session.connection().execute(
        select(
            EventLink.event_id, EventLink.object_type, EventLink.object_id, EventLink.role
        ).where(EventLink.event_id.in_(ids))
    ):
        links.setdefault(event_id, []).append((t, i, r))
    return links


def _entries(
    session: Session, chain: str, after: int, until: int | None, kind: int
) -> Iterator[tuple[int, int, Event | CustodyEntry, list[tuple[str, str, str]]]]:
    """A chain's entries of format ``kind`` numbered above ``after`` (up to ``until``) in
    order, a page at a time (keyset on seq): ``(seq, kind, row, links)``. An entry of format 1
    is an event, read with its links; one of format 2 a ``custody_entries`` row (its events
    are read apart, by :func:`_events_of`)."""
    table: type[Event] | type[CustodyEntry] = Event if kind == 1 else CustodyEntry
    while True:
        rows: list[Event | CustodyEntry] = list(
            session.execute(  # type: ignore[arg-type]  # rows of ``table``
                select(table)
                .where(table.chain == chain, table.seq > after)
                .where(table.seq <= until if until is not None else true())
                .order_by(table.seq)
                .limit(PAGE)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        links = _links_of(session, [r.id for r in rows]) if kind == 1 else {}
        for row in rows:
            yield int(row.seq or 0), kind, row, links.get(row.id, [])
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


def _events_of(session: Session, ids: list[int]) -> Iterator[Sequence[Any]]:
    """The events of the entries ``ids`` (sorted), a page at a time in the order of (entry,
    place). Each run of consecutive ids is read as one range of the index on (entry, place):
    a list of ids with an order asked of it made PostgreSQL read every event of the listed
    entries for each page, then sort them (19 s a page beside an entry of a million events)."""
    runs: list[list[int]] = []
    for entry_id in ids:
        if runs and entry_id == runs[-1][1] + 1:
            runs[-1][1] = entry_id
        else:
            runs.append([entry_id, entry_id])
    for first, last in runs:
        after = (first, -1)
        while True:
            rows = (
                session.connection()
                .execute(
                    select(*_EVENT_COLUMNS)
                    .where(tuple_(Event.entry_id, Event.pos) > after, Event.entry_id <= last)
                    .order_by(Event.entry_id, Event.pos)
                    .limit(PAGE)
                )
                .all()
            )
            if not rows:
                break
            yield rows
            after = (int(rows[-1].entry_id or 0), int(rows[-1].pos or 0))


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
    for rows in _events_of(session, sorted(entries)):
        links = _links_of(session, [r.id for r in rows])
        for row in rows:
            entry_id, pos = int(row.entry_id or 0), int(row.pos or 0)
            entry = entries[entry_id]
            report.events += 1
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
                    f"event {pos + 1} of entry {entry.seq} ({row.type}, "
                    f"{timestamp_text(row.occurred_at)}) was altered after it was recorded: its "
                    "content no longer has the hash it was recorded with",
                )
            trees[entry_id].add(row.hash)
            next_pos[entry_id] = pos + 1
            if progress:
                progress(1)
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


@dataclass
class _Run:
    """What checking a run of a chain's entries found: its first entry's number and the hash
    it names (checked against the run before it by whoever joins the runs), its last entry,
    the hashes at the numbers asked for, its counts and its problems."""

    first: tuple[int, str] | None = None
    last: _Entry | None = None
    at: dict[int, str] = field(default_factory=dict)
    report: AuditReport = field(default_factory=AuditReport)


def _check_run(
    session: Session,
    chain: str,
    wanted: set[int],
    progress: Callable[[int], None] | None,
    *,
    lo: int = 1,
    hi: int | None = None,
) -> _Run:
    """Step 1 for the entries of one chain numbered ``lo`` to ``hi`` (to its end if None).
    From entry 1 the first entry must name the genesis hash; from any other, the hash it names
    is returned for the caller to check against the run before."""
    run = _Run()
    report = run.report
    expected, prev = lo, (GENESIS if lo == 1 else None)
    held: dict[int, CustodyEntry] = {}
    merged = heapq.merge(
        _entries(session, chain, lo - 1, hi, 1),
        _entries(session, chain, lo - 1, hi, 2),
        key=lambda item: (item[0], item[1]),
    )
    for seq, _kind, row, links in merged:
        report.entries += 1
        if run.first is None:
            run.first = (seq, str(row.prev_hash))
        if seq != expected:
            gap = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
            report.problem("log-gap", f"entry {gap} of the custody log is missing: it was deleted")
        elif prev is not None and row.prev_hash != prev:
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
            run.at[seq] = digest
        prev, expected = digest, seq + 1
        run.last = _Entry(seq, digest)
    if held:
        _check_events(session, held, report, progress)
    if hi is not None and expected <= hi:
        gap = f"{expected}" if expected == hi else f"{expected} to {hi}"
        report.problem("log-gap", f"entry {gap} of the custody log is missing: it was deleted")
    return run


def _join(runs: list[_Run], report: AuditReport) -> tuple[_Entry | None, dict[int, str]]:
    """The runs of one chain, in order, as one: their findings, and each run's first entry
    checked against the last of the run before it."""
    last: _Entry | None = None
    at: dict[int, str] = {}
    for run in runs:
        report.entries += run.report.entries
        report.events += run.report.events
        report.problems.extend(run.report.problems)
        at.update(run.at)
        if run.first is not None and last is not None:
            seq, names = run.first
            if seq == last.seq + 1 and names != last.hash:
                report.problem(
                    "log-link",
                    f"entry {seq} does not follow the entry before it (the hash it names is "
                    "not that entry's): an entry was inserted, removed or moved here",
                )
        if run.last is not None:
            last = run.last
    return last, at


#: A chain checked in parallel is cut into runs of about this many events or more.
PARALLEL_MIN_EVENTS = 200_000


def _bounds(session: Session, chain: str, workers: int) -> list[tuple[int, int | None]]:
    """Cut a chain into at most ``workers`` runs of entries (lo, hi) holding about as many
    events each; one run for a small chain. Only the balance rests on the counts: the runs
    cover every number from 1 to the chain's last whatever they say."""
    older = session.execute(
        select(func.count(Event.id), func.max(Event.seq)).where(Event.chain == chain)
    ).one()
    newer = session.execute(
        select(func.sum(CustodyEntry.events), func.max(CustodyEntry.seq)).where(
            CustodyEntry.chain == chain
        )
    ).one()
    total = int(older[0] or 0) + int(newer[0] or 0)
    top = max(int(older[1] or 0), int(newer[1] or 0))
    runs = min(workers, total // PARALLEL_MIN_EVENTS)
    if runs < 2 or top < runs:
        return [(1, None)]
    cuts: list[int] = []
    for k in range(1, runs):
        target = total * k // runs
        if target <= int(older[0] or 0):
            cut = target  # entries of format 1 hold one event each, numbered from 1
        else:
            counted = (
                select(
                    CustodyEntry.seq,
                    func.sum(CustodyEntry.events).over(order_by=CustodyEntry.seq).label("n"),
                )
                .where(CustodyEntry.chain == chain)
                .subquery()
            )
            cut = (
                session.execute(
                    select(counted.c.seq)
                    .where(counted.c.n >= target - int(older[0] or 0))
                    .order_by(counted.c.seq)
                    .limit(1)
                ).scalar()
                or top
            )
        if cut > (cuts[-1] if cuts else 0) and cut < top:
            cuts.append(cut)
    edges = [0, *cuts, top]
    return [(edges[i] + 1, edges[i + 1]) for i in range(len(edges) - 1)]


def _run_in_process(
    url: str, chain: str, wanted: set[int], lo: int, hi: int | None, index: int, out: Any
) -> None:
    """A run checked in a process of its own; findings (or the failure) sent on ``out``."""
    from sqlalchemy.orm import sessionmaker

    from archive.catalog.session import make_engine

    engine = make_engine(url)
    counted = 0

    def progress(n: int) -> None:
        nonlocal counted
        counted += n
        if counted >= 1000:
            out.put(("progress", index, counted))
            counted = 0

    try:
        with sessionmaker(engine)() as session:
            run = _check_run(session, chain, wanted, progress, lo=lo, hi=hi)
        out.put(("progress", index, counted))
        out.put(("done", index, run))
    except BaseException as exc:  # reported by the parent, which stops the audit
        out.put(("failed", index, f"{exc.__class__.__name__}: {exc}"))
    finally:
        engine.dispose()


def _check_in_parallel(
    url: str,
    chain: str,
    wanted: set[int],
    bounds: list[tuple[int, int | None]],
    progress: Callable[[int], None] | None,
) -> list[_Run]:
    """Each run of ``bounds`` in a process of its own (the audit's work is hashing in Python:
    one process uses one core)."""
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")  # no inherited threads, locks or sockets
    out: Any = context.Queue()
    processes = [
        context.Process(target=_run_in_process, args=(url, chain, wanted, lo, hi, i, out))
        for i, (lo, hi) in enumerate(bounds)
    ]
    for process in processes:
        process.start()
    runs: dict[int, _Run] = {}
    try:
        while len(runs) < len(processes):
            try:
                kind, index, value = out.get(timeout=5)
            except queue.Empty:
                dead = [i for i, p in enumerate(processes) if not p.is_alive() and i not in runs]
                if dead:
                    raise CatalogError(
                        f"a process checking the custody log stopped (run {dead[0] + 1} of "
                        f"{len(processes)}, exit status {processes[dead[0]].exitcode})",
                        hint="run `custos audit verify --workers 1`",
                    ) from None
                continue
            if kind == "progress":
                if progress and value:
                    progress(value)
            elif kind == "done":
                runs[index] = value
            else:
                raise CatalogError(
                    f"checking the custody log failed in run {index + 1}: {value}",
                    hint="check that the catalog database is reachable and try again",
                )
    finally:
        for process in processes:
            if process.is_alive() and len(runs) < len(processes):
                process.terminate()
            process.join()
    return [runs[i] for i in range(len(processes))]


def verify_log(
    services: Services, *, progress: Callable[[int], None] | None = None, workers: int = 1
) -> AuditReport:
    """Check the whole custody log (steps 1 to 4 above), a chain of more than
    :data:`PARALLEL_MIN_EVENTS` events in up to ``workers`` processes, each a run of its
    entries. Returns the report; raises nothing for a broken log (a verdict is not a
    failure), only for an unreadable catalog (:class:`CatalogError`)."""
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
            bounds: list[tuple[int, int | None]] = [(1, None)]
            if workers > 1:
                bounds = _bounds(session, chain, workers)
            if len(bounds) == 1:
                runs = [_check_run(session, chain, wanted, progress)]
            else:
                url = services.settings.catalog_url
                runs = _check_in_parallel(url, chain, wanted, bounds, progress)
            lasts[chain], hashes[chain] = _join(runs, report)
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
