"""Custody-log checkpoints: the log head, written into storage to be sealed like a manifest.

A checkpoint is a small JSON document in the storage root, outside every object (OCFL 1.1 §4.1
allows an ``extensions/`` folder there): ``extensions/custos-custody-log/<chain>/
checkpoint-<seq>.json``, naming the chain, the entry number and that entry's hash. Its evidence
records sit beside it (``<name>.<authority>-<serial>.ers``) and the trust anchors in
``trust/``, so storage alone shows what the log said, and when.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive.catalog.tables import Checkpoint, CustodyHead, Event, EventLink
from archive.clock import now
from archive.custody import LOG_FORMAT, new_event, record_events, timestamp_text
from archive.errors import StorageError
from archive.model import Link
from archive.storage.primary import Primary
from archive.storage.replica import LocationUnavailable

LOG_DIR = "extensions/custos-custody-log"
CHECKPOINT_FORMAT = "custos-custody-log-checkpoint/1"
#: Links of this type name an earlier chain that a restart of the log left behind.
CHAIN_LINK: Final = "custody-log"
_NAME = re.compile(r"^checkpoint-(\d{12})\.json$")
#: A checkpoint is a few hundred bytes; a file under its name larger than this is none.
MAX_CHECKPOINT = 64 * 1024


@dataclass(frozen=True, slots=True)
class CheckpointDoc:
    """A checkpoint as read back from storage."""

    path: str  # relative to the storage root
    chain: str
    seq: int
    head: str
    created: str
    sha512: str


def write_checkpoint(session: Session, primary: Primary, *, fsync: bool = True) -> str | None:
    """Write the current log head to the primary unless a checkpoint already covers it
    (``fsync``: flush a local primary's file to disk first).

    Returns the checkpoint's path (relative to the storage root), or ``None``. The caller
    commits; a crash before that leaves a file no row names, which is harmless (the next
    checkpoint of the same head rewrites it, and audits read what storage holds).
    Raises :class:`StorageError` if it cannot be written."""
    head = session.get(CustodyHead, 1)
    if head is None or head.seq == 0:
        return None
    last = session.execute(
        select(func.max(Checkpoint.seq)).where(Checkpoint.chain == head.chain)
    ).scalar()
    if last is not None and last >= head.seq:
        return None
    # The seal's own "timestamp" entries alone do not call for a checkpoint, or every seal
    # would leave work for the next one; they are covered by the next checkpoint made for
    # anything else.
    other = session.execute(
        select(Event.id)
        .where(Event.chain == head.chain, Event.seq > (last or 0), Event.type != "timestamp")
        .limit(1)
    ).first()
    if other is None:
        return None
    created = now()
    doc = {
        "format": CHECKPOINT_FORMAT,
        "log_format": LOG_FORMAT,
        "chain": head.chain,
        "seq": head.seq,
        "head": head.hash,
        "algorithm": "sha512",
        "created": timestamp_text(created),
    }
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    rel = f"{LOG_DIR}/{head.chain}/checkpoint-{head.seq:012d}.json"
    primary.write_bytes(rel, data, fsync=fsync)
    session.add(
        Checkpoint(
            chain=head.chain,
            seq=head.seq,
            head_hash=head.hash,
            created_at=created,
            path=rel,
            sha512=hashlib.sha512(data).hexdigest(),
        )
    )
    session.flush()
    return rel


def read_checkpoints(primary: Primary) -> tuple[list[CheckpointDoc], list[tuple[str, str]]]:
    """Every checkpoint in the primary, by chain and entry; and (path, problem) for unreadable
    ones. Raises :class:`StorageError` only if the primary cannot be listed."""
    docs: list[CheckpointDoc] = []
    bad: list[tuple[str, str]] = []
    found: list[tuple[str, str, re.Match[str]]] = []
    for key in primary.location.iter_keys(f"{LOG_DIR}/"):
        chain, _, name = key.removeprefix(f"{LOG_DIR}/").partition("/")
        match = _NAME.match(name)
        if chain != "trust" and match:
            found.append((chain, name, match))
    for chain, name, match in sorted(found, key=lambda f: (f[0], f[1])):
        rel = f"{LOG_DIR}/{chain}/{name}"
        try:
            data = primary.read_bytes(rel, limit=MAX_CHECKPOINT)
        except LocationUnavailable:
            raise  # the primary cannot be reached: nothing can be said of the checkpoint
        except StorageError as exc:
            bad.append((rel, f"cannot be read: {exc.message}"))
            continue
        try:
            raw = json.loads(data)
            doc = CheckpointDoc(
                path=rel,
                chain=str(raw["chain"]),
                seq=int(raw["seq"]),
                head=str(raw["head"]),
                created=str(raw["created"]),
                sha512=hashlib.sha512(data).hexdigest(),
            )
        except (ValueError, KeyError, TypeError) as exc:
            bad.append((rel, f"not a readable checkpoint ({exc.__class__.__name__}: {exc})"))
            continue
        if raw.get("format") != CHECKPOINT_FORMAT:
            bad.append((rel, f"unknown checkpoint format {raw.get('format')!r}"))
        elif doc.chain != chain or doc.seq != int(match.group(1)):
            bad.append((rel, "its content names another chain or entry than its file name"))
        else:
            docs.append(doc)
    return docs, bad


def records_of(primary: Primary, checkpoint_path: str) -> list[str]:
    """The evidence records stored beside a checkpoint: their paths relative to the storage
    root, in order of name."""
    prefix = f"{checkpoint_path}."  # <name>.<authority>-<serial>.ers, in the same folder
    return sorted(
        key
        for key in primary.location.iter_keys(prefix)
        if "/" not in key[len(prefix) :] and key[len(prefix) :].endswith(".ers")
    )


def record_restart(session: Session, primary: Primary) -> list[str]:
    """Name, in the log, the chains whose checkpoints storage holds but the catalog does not.

    Called when the catalog is rebuilt: a rebuilt catalog cannot hold the log it replaced, so
    the new log says so, once, in an entry linking each earlier chain (``custos audit verify``
    then reports those checkpoints as left behind rather than as a replaced log). Returns the
    chains named now. The caller commits."""
    docs, _ = read_checkpoints(primary)
    held = set(session.execute(select(Event.chain).distinct()).scalars())
    named = set(
        session.execute(
            select(EventLink.object_id).where(EventLink.object_type == CHAIN_LINK)
        ).scalars()
    )
    last: dict[str, int] = {}
    for doc in docs:
        if doc.chain not in held and doc.chain not in named:
            last[doc.chain] = max(last.get(doc.chain, 0), doc.seq)
    if not last:
        return []
    text = "; ".join(f"chain {c} (checkpoints up to entry {n})" for c, n in sorted(last.items()))
    record_events(
        session,
        [
            new_event(
                "recovery",
                "warning",
                "the custody log was restarted when the catalog was rebuilt from storage; "
                f"sealed checkpoints of the earlier log remain in storage: {text}",
                links=[Link(CHAIN_LINK, c, "earlier") for c in sorted(last)],
            )
        ],
    )
    return sorted(last)
