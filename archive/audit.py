"""`custos audit verify`: check the hash-chained custody log against its sealed checkpoints.

Steps, each reported in words:

1. every entry of every chain in the catalog, in order: its number follows the one before
   (a gap means entries were deleted), it names the hash of the one before (otherwise an entry
   was inserted, removed or moved there), and its hash, recomputed over its fields and links,
   is the one it carries (otherwise it was altered after it was recorded);
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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive.catalog.tables import CustodyHead, Event, EventLink
from archive.checkpoints import (
    CHAIN_LINK,
    MAX_CHECKPOINT,
    CheckpointDoc,
    read_checkpoints,
    records_of,
)
from archive.custody import GENESIS, entry_hash, timestamp_text
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


def _chain_entries(session: Session, chain: str) -> Iterator[tuple[Event, list[EventLink]]]:
    """A chain's entries in order, with their links, a page at a time (keyset on seq)."""
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
        links: dict[int, list[EventLink]] = {}
        for link in session.execute(
            select(EventLink).where(EventLink.event_id.in_([r.id for r in rows]))
        ).scalars():
            links.setdefault(link.event_id, []).append(link)
        for row in rows:
            yield row, links.get(row.id, [])
        after = rows[-1].seq


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
    for row, links in _chain_entries(session, chain):
        report.entries += 1
        where = f"entry {row.seq} ({row.type}, {timestamp_text(row.occurred_at)})"
        if row.seq != expected:
            gap = f"{expected}" if row.seq == expected + 1 else f"{expected} to {row.seq - 1}"
            report.problem("log-gap", f"entry {gap} of the custody log is missing: it was deleted")
        elif row.prev_hash != prev:
            report.problem(
                "log-link",
                f"{where} does not follow the entry before it (the hash it names is not that "
                "entry's): an entry was inserted, removed or moved here",
            )
        recomputed = entry_hash(
            chain=row.chain,
            seq=row.seq,
            prev=row.prev_hash,
            uuid=row.uuid,
            type_=row.type,
            occurred_at=row.occurred_at,
            agent=row.agent,
            outcome=row.outcome,
            detail=row.detail,
            package_id=row.package_id,
            links=[(k.object_type, k.object_id, k.role) for k in links],
        )
        if recomputed != row.hash:
            report.problem(
                "log-altered",
                f"{where} was altered after it was recorded: its content no longer has the "
                "hash it was recorded with",
            )
        if row.seq in wanted:
            at[row.seq] = row.hash
        prev, expected = row.hash, row.seq + 1
        last = _Entry(row.seq, row.hash)
        if progress:
            progress(1)
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
        chains = [
            c
            for c, _ in session.execute(
                select(Event.chain, func.min(Event.id))
                .group_by(Event.chain)
                .order_by(func.min(Event.id))
            )
        ]
        report.chains = chains
        lasts: dict[str, _Entry | None] = {}
        hashes: dict[str, dict[int, str]] = {}
        for chain in chains:
            wanted = {d.seq for d in docs if d.chain == chain}
            lasts[chain], hashes[chain] = _check_chain(session, chain, wanted, report, progress)

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
