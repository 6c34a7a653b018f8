"""What awaits a seal, read from the catalog alone: the manifests without a seal, the
versions without a file seal, and the back-off after authorities that did not answer. Apart
from the sealing itself (:mod:`archive.proofs.seal`), so that ``custos status`` and the
worker's scheduling read it without loading the proof machinery."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, distinct, exists, func, literal, select
from sqlalchemy.orm import Session

from archive.catalog.tables import Checkpoint, Event, File, Package, Seal, Version
from archive.clock import now
from archive.config import Settings

_MANIFEST = re.compile(r"^v1/content/bag/(tag)?manifest-[A-Za-z0-9_-]+\.txt$")


@dataclass(frozen=True, slots=True)
class Subject:
    """A manifest awaiting its seal: a package's, or (``package_id`` None) a log checkpoint."""

    package_id: str | None
    object_path: str  # "" for a checkpoint
    subject_path: str  # relative to the object root (to the storage root for a checkpoint)
    sha512: str
    since: datetime  # when the manifest was written


@dataclass(frozen=True, slots=True)
class Backlog:
    """What awaits a seal, since when, and when sealing will next be tried."""

    pending: int
    oldest: datetime | None
    failures: int  # failed attempts since the last seal that succeeded
    last_failure: datetime | None
    last_failure_detail: str
    next_attempt: datetime | None  # None: due now (or nothing pending)
    files_versions: int = 0  # versions awaiting their file seal
    files_packages: int = 0  # in how many packages

    @property
    def due(self) -> bool:
        return bool(self.pending or self.files_versions)

    def as_dict(self, at: datetime | None = None) -> dict[str, Any]:
        at = at or now()
        return {
            "pending": self.pending,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "oldest_age_seconds": (
                round((at - self.oldest).total_seconds(), 1) if self.oldest else None
            ),
            "failed_attempts": self.failures,
            "last_failure": self.last_failure.isoformat() if self.last_failure else None,
            "last_failure_detail": self.last_failure_detail,
            "next_attempt": self.next_attempt.isoformat() if self.next_attempt else None,
            "file_seals_pending": {
                "versions": self.files_versions,
                "packages": self.files_packages,
            },
        }


def pending(session: Session) -> list[Subject]:
    """Every bag manifest, version inventory and log checkpoint without a seal, oldest first."""
    sealed = {(p, s) for p, s in session.execute(select(Seal.package_id, Seal.subject_path))}
    out: list[Subject] = []
    rows = session.execute(
        select(
            Version.package_id,
            Package.object_path,
            Version.number,
            Version.inventory_sha512,
            Version.created_at,
        )
        .join(Package, Package.id == Version.package_id)
        .order_by(Version.created_at, Version.package_id, Version.number)
    )
    for package_id, path, number, digest, created in rows:
        subject = f"v{number}/inventory.json"
        if (package_id, subject) not in sealed:
            out.append(Subject(package_id, path, subject, digest, created))
    files = session.execute(
        select(
            File.package_id, Package.object_path, File.content_path, File.sha512, Package.created_at
        )
        .join(Package, Package.id == File.package_id)
        .where(File.role == "tag", File.version == 1)
        .order_by(File.package_id, File.content_path)
    )
    for package_id, path, content_path, digest, created in files:
        if _MANIFEST.match(content_path) and (package_id, content_path) not in sealed:
            out.append(Subject(package_id, path, content_path, digest, created))
    for cp_path, digest, created in session.execute(
        select(Checkpoint.path, Checkpoint.sha512, Checkpoint.created_at).order_by(Checkpoint.id)
    ):
        if (None, cp_path) not in sealed:
            out.append(Subject(None, "", cp_path, digest, created))
    return out


def backlog(session: Session, settings: Settings) -> Backlog:
    """The seal backlog: what is pending, the oldest, the failures since the last success and
    when the next try is due (exponential back-off: ``retry_base`` doubled per failure, at
    most ``retry_max``)."""
    waiting = pending(session)
    failures, last_failure, detail = 0, None, ""
    attempts = session.execute(
        select(Event.outcome, Event.occurred_at, Event.detail)
        .where(Event.type == "timestamp")
        .order_by(Event.id.desc())
        .limit(1000)
    )
    for outcome, occurred, text in attempts:
        if outcome != "failure":
            break
        failures += 1
        if last_failure is None:
            last_failure, detail = occurred, text
    next_attempt = None
    versions, packages = files_backlog(session, settings.proofs.algorithm)
    if (waiting or versions) and failures and last_failure is not None:
        delay = min(settings.tsa.retry_max, settings.tsa.retry_base * 2 ** (failures - 1))
        next_attempt = last_failure + timedelta(seconds=delay)
    return Backlog(
        pending=len(waiting),
        oldest=min((s.since for s in waiting), default=None),
        failures=failures,
        last_failure=last_failure,
        last_failure_detail=detail,
        next_attempt=next_attempt,
        files_versions=versions,
        files_packages=packages,
    )


@dataclass(frozen=True, slots=True)
class PendingVersion:
    """A version awaiting its file seal under the proof policy's algorithm."""

    package_id: str
    object_path: str
    number: int
    since: datetime


def pending_files(
    session: Session,
    algorithm: str,
    *,
    limit: int | None = None,
    skip: set[tuple[str, int]] | None = None,
) -> list[PendingVersion]:
    """Versions without a file seal under ``algorithm``, oldest first."""
    subject = literal("v") + cast(Version.number, String) + literal(f"/files-{algorithm}")
    sealed = exists().where(Seal.package_id == Version.package_id, Seal.subject_path == subject)
    stmt = (
        select(Version.package_id, Package.object_path, Version.number, Version.created_at)
        .join(Package, Package.id == Version.package_id)
        .where(~sealed)
        .order_by(Version.created_at, Version.package_id, Version.number)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        PendingVersion(pid, path, number, created)
        for pid, path, number, created in session.execute(stmt)
        if (pid, number) not in (skip or set())
    ]


def files_backlog(session: Session, algorithm: str) -> tuple[int, int]:
    """(versions, packages) awaiting their file seal under ``algorithm``."""
    subject = literal("v") + cast(Version.number, String) + literal(f"/files-{algorithm}")
    sealed = exists().where(Seal.package_id == Version.package_id, Seal.subject_path == subject)
    versions, packages = session.execute(
        select(func.count(), func.count(distinct(Version.package_id))).where(~sealed)
    ).one()
    return int(versions), int(packages)
