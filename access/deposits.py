"""A depositor's view of its deposits: the list, each one's status and receipt, as the access
policy allows. A depositor sees the deposits of its own organisation only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access.decisions.reads import AWAITING, SEALED, payload_files, sealed_subjects
from access.decisions.rules import (
    Principal,
    access_event,
    load_rules,
    may_see,
    must_log,
    record_reads,
)
from access.paging import Listing, Page
from archive.catalog.tables import Deposit, File, Seal, Upload, Version
from archive.errors import NotFound
from policies.decide import Decision
from policies.schema import AccessPolicy


@dataclass(frozen=True, slots=True)
class DepositStatus:
    upload_id: str
    state: str
    package_id: str | None
    deposit_id: str | None
    filename: str
    size: int
    sha256: str
    received_at: datetime
    finished_at: datetime
    message: str
    identification: str  # pending | done
    files_awaiting_identification: int
    seal: str  # sealed | awaiting seal

    def as_dict(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "state": self.state,
            "package_id": self.package_id,
            "deposit_id": self.deposit_id,
            "filename": self.filename,
            "size": self.size,
            "sha256": self.sha256,
            "received_at": self.received_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "message": self.message,
            "identification": self.identification,
            "files_awaiting_identification": self.files_awaiting_identification,
            "seal": self.seal,
        }


def _own_upload(session: Session, reader: Principal, upload_id: str) -> Upload:
    row = session.get(Upload, upload_id) if len(upload_id) <= 36 else None
    if row is None or row.depositor != reader.organisation:
        raise NotFound(
            "no deposit with this id from your organisation",
            hint="use the upload_id the upload returned",
        )
    return row


def deposit_status(session: Session, reader: Principal, upload_id: str) -> DepositStatus:
    """Where a deposit of ``reader``'s organisation stands. Raises :class:`NotFound`."""
    return _statuses(session, [_own_upload(session, reader, upload_id)])[0]


def list_deposits(session: Session, reader: Principal, page: Page) -> Listing:
    """The deposits of ``reader``'s organisation, newest first, one page of them, each as
    :func:`deposit_status` tells it; with their total."""
    if not reader.organisation:
        return Listing.counted(page, [], 0)
    mine = Upload.depositor == reader.organisation
    total = session.execute(select(func.count()).select_from(Upload).where(mine)).scalar_one()
    rows = session.execute(
        select(Upload)
        .where(mine)
        .order_by(Upload.received_at.desc(), Upload.id.desc())
        .offset(page.offset)
        .limit(page.limit)
    ).scalars()
    return Listing.counted(page, [s.as_dict() for s in _statuses(session, list(rows))], total)


def _statuses(session: Session, rows: list[Upload]) -> list[DepositStatus]:
    """Where each deposit stands: identification pending while a payload file of its package
    has no format yet (the characterise job is queued work); sealed once the manifests of its
    version 1 are."""
    packages = [r.package_id for r in rows if r.package_id]
    waiting: dict[str, int] = {}
    sealed: set[str | None] = set()
    if packages:
        waiting = {
            package_id: int(n)
            for package_id, n in session.execute(
                select(File.package_id, func.count(File.id))
                .where(
                    File.package_id.in_(packages),
                    File.role == "payload",
                    File.format_name.is_(None),
                )
                .group_by(File.package_id)
            )
        }
        sealed = set(
            session.execute(
                select(Seal.package_id).where(
                    Seal.package_id.in_(packages), Seal.subject_path == "v1/inventory.json"
                )
            ).scalars()
        )
    out = []
    for row in rows:
        identification, seal, pending = "pending", AWAITING, 0
        if row.package_id:
            pending = waiting.get(row.package_id, 0)
            identification = "pending" if pending else "done"
            seal = SEALED if row.package_id in sealed else AWAITING
        out.append(
            DepositStatus(
                row.id,
                row.state,
                row.package_id,
                row.deposit_id,
                row.filename,
                row.size,
                row.sha256,
                row.received_at,
                row.finished_at,
                row.message,
                identification,
                pending,
                seal,
            )
        )
    return out


@dataclass
class Receipt:
    upload_id: str
    deposit_id: str
    package_id: str
    stored_at: datetime
    files: list[dict[str, Any]] = field(default_factory=list)
    withheld: int = 0
    manifests: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "deposit_id": self.deposit_id,
            "package_id": self.package_id,
            "stored_at": self.stored_at.isoformat(),
            "files": self.files,
            "files_withheld_by_access_policy": self.withheld,
            "seal": self.manifests,
        }


def receipt(session: Session, policy: AccessPolicy, reader: Principal, upload_id: str) -> Receipt:
    """The receipt of a deposit: ids, files with digests, seal status of each manifest.

    Each file is listed if the access policy lets the depositor read its metadata (own
    deposits); reads it says must be logged are recorded in the caller's transaction.
    Raises :class:`NotFound`."""
    row = _own_upload(session, reader, upload_id)
    if not row.package_id or not row.deposit_id:
        raise NotFound("this deposit stored no package", hint="see its status")
    deposit = session.get(Deposit, row.deposit_id)
    assert deposit is not None
    rules = load_rules(session, row.package_id, row.depositor)
    out = Receipt(row.id, row.deposit_id, row.package_id, deposit.stored_at)
    decisions: list[Decision] = []
    for f in payload_files(session, row.package_id):
        path = f.logical_path.removeprefix("bag/")
        for purpose in (None, "research", "public"):
            ok, ds = may_see(
                policy, rules, path, reader=reader, action="read-metadata", purpose=purpose
            )
            if ok:
                decisions += ds
                # What the depositor sent: a copy stored encrypted by its plain bytes.
                encrypted = f.sealed_tier is not None
                out.files.append(
                    {
                        "path": path,
                        "size": f.plain_size if encrypted else f.size,
                        "sha512": f.plain_sha512 if encrypted else f.sha512,
                        "sha256": f.plain_sha256 if encrypted else f.sha256,
                    }
                )
                break
        else:
            out.withheld += 1
    sealed = sealed_subjects(session, row.package_id)
    subjects = sorted(
        {
            f"v{n}/inventory.json"
            for n in session.execute(
                select(Version.number).where(Version.package_id == row.package_id)
            ).scalars()
        }
    )
    out.manifests = {s: SEALED if s in sealed else AWAITING for s in subjects}
    events = []
    if must_log(decisions):
        events.append(
            access_event(
                reader,
                row.package_id,
                f"deposit receipt: metadata of {len(out.files)} file(s) read",
                purpose=None,
                decisions=decisions,
            )
        )
    record_reads(session, events)
    return out
