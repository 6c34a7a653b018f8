"""The custody log's files in the storage root, replicated and checked like the objects' files.

Everything Custos writes under ``extensions/custos-custody-log/`` (checkpoints, their RFC 4998
evidence records, the trust anchors in ``trust/``; see :mod:`archive.checkpoints`) proves what
the log said, and when. These files belong to no package, so:

- ``log_files`` holds each one's expected digests (:func:`register`): a checkpoint's sha512
  must be the one the catalog holds (``checkpoints``), a trust anchor's sha256 the one its name
  gives, a record must parse; otherwise (and for the sha256 of a checkpoint) the primary's
  bytes when first seen, as :mod:`fixity.stored` does for files only the object describes.
- Their copies are ``fixity_coverage`` rows under the reserved package key :data:`LOG_KEY`
  (package ids are UUIDs: it cannot clash) with the path relative to the storage root as
  ``content_path``, on the :data:`LOG_TIER` cycle. Fixity seeds the primary's rows; a
  replica's row is added by replication once its copy was read back in full, so a row at a
  replica location is the record that the location holds that file.
- Replication (:func:`copy_log`) copies every registered file a location holds no row for,
  to every configured location, at the same key relative to the storage root.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive import fixity_state
from archive.catalog.tables import Checkpoint, FixityCoverage, LogFile, StorageLocation
from archive.catalog.upsert import insert_ignore
from archive.checkpoints import LOG_DIR
from archive.config import PRIMARY_LOCATION
from archive.storage.primary import Primary
from fixity.stored import Opener, Problem, expected_row, kind_of, local_oddities

#: The package key of the custody log's files in ``fixity_coverage`` (and in reports).
LOG_KEY = fixity_state.LOG_KEY
#: Their fixity cycle: the archive's default tier (they hold hashes and times, no content).
LOG_TIER = "restricted"


@dataclass(frozen=True, slots=True)
class Wanted:
    """One registered file of the log: where it is and what it must be."""

    path: str
    size: int
    sha512: str
    sha256: str


def at_primary(primary: Primary) -> tuple[list[str], list[Problem]]:
    """The keys (paths relative to the storage root) of every file under the log's folder
    at the primary, sorted, leaving out files being written (``.tmp``); and links or special
    files found there (a local primary's), as problems (never followed, never copied).
    Raises :class:`StorageError` when the primary cannot be listed."""
    found = sorted(
        key for key in primary.location.iter_keys(LOG_DIR + "/") if not key.endswith(".tmp")
    )
    odd = [
        Problem(LOG_KEY, key, "IS NOT A PLAIN FILE OR FOLDER; move it away")
        for key in local_oddities(primary, LOG_DIR)
    ]
    return found, odd


def register(session: Session, primary: Primary, at: datetime) -> list[Problem]:
    """Add the ``log_files`` rows the primary's new files lack; the caller commits. A file
    that does not match what the catalog says it must be is returned as a problem and not
    registered (so not spread). Raises :class:`StorageError` (:class:`LocationUnavailable`)
    when the primary cannot be read."""
    have = set(session.execute(select(LogFile.path)).scalars())
    checkpoints = dict(session.execute(select(Checkpoint.path, Checkpoint.sha512)).all())
    rows: list[dict[str, Any]] = []
    files, problems = at_primary(primary)
    for rel in files:
        if rel in have:
            continue
        row, why = expected_row(rel, _opener(primary, rel), {})
        if row is not None and rel in checkpoints:
            row["kind"] = "checkpoint"
            if row["sha512"] != checkpoints[rel]:
                why = (
                    f"DOES NOT MATCH the sha512 the catalog holds for this checkpoint "
                    f"({row['sha512']} instead of {checkpoints[rel]})"
                )
                row = None
        if row is None:
            problems.append(Problem(LOG_KEY, rel, why))
            continue
        rows.append(
            {
                "path": rel,
                "kind": row["kind"],
                "size": row["size"],
                "sha512": row["sha512"],
                "sha256": row["sha256"],
                "added_at": at,
            }
        )
    insert_ignore(session, LogFile, rows, key=["path"])
    return problems


def _opener(primary: Primary, key: str) -> Opener:
    return lambda: primary.open(key)


def wanted(session: Session) -> list[Wanted]:
    return [
        Wanted(path, size, sha512, sha256)
        for path, size, sha512, sha256 in session.execute(
            select(LogFile.path, LogFile.size, LogFile.sha512, LogFile.sha256).order_by(
                LogFile.path
            )
        )
    ]


def held(session: Session) -> dict[str, set[str]]:
    """Location -> the log's files it holds a read-back copy of (its coverage rows)."""
    out: dict[str, set[str]] = {}
    for name, path in session.execute(
        select(StorageLocation.name, FixityCoverage.content_path)
        .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
        .where(FixityCoverage.package_id == LOG_KEY)
    ):
        out.setdefault(name, set()).add(path)
    return out


def holders(session: Session, path: str) -> list[str]:
    """The locations other than the primary recorded as holding ``path``."""
    return sorted(
        name for name, paths in held(session).items() if path in paths and name != PRIMARY_LOCATION
    )


def add_copies(session: Session, location_id: int, paths: list[str]) -> None:
    """Record copies read back at a location: their coverage rows, due now."""
    insert_ignore(
        session,
        FixityCoverage,
        [
            {"location_id": location_id, "package_id": LOG_KEY, "content_path": p, "tier": LOG_TIER}
            for p in paths
        ],
        key=["location_id", "package_id", "content_path"],
    )


def describe_kinds(paths: list[str]) -> str:
    """e.g. ``1 checkpoint(s), 2 record(s), 1 anchor(s)`` (by file name)."""
    counts: dict[str, int] = {}
    for p in paths:
        kind = "checkpoint" if p.endswith(".json") else kind_of(p)
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {k}(s)" for k, n in sorted(counts.items()))
