"""A depositor's view of its deposits: status and receipt, as the access policy allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access.reads import AWAITING, SEALED, payload_files, sealed_subjects
from access.rules import Principal, access_event, load_rules, may_see, must_log
from archive.catalog.tables import Deposit, File, Upload, Version
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
    row = _own_upload(session, reader, upload_id)
    identification, seal, waiting = "pending", AWAITING, 0
    if row.package_id:
        # Identification is queued work (the characterise job): pending until it has run.
        waiting = session.execute(
            select(func.count(File.id)).where(
                File.package_id == row.package_id,
                File.role == "payload",
                File.format_name.is_(None),
            )
        ).scalar_one()
        identification = "pending" if waiting else "done"
        sealed = sealed_subjects(session, row.package_id)
        seal = SEALED if "v1/inventory.json" in sealed else AWAITING
    return DepositStatus(
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
        int(waiting),
        seal,
    )


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


def receipt(
    session: Session, policy: AccessPolicy, reader: Principal, upload_id: str
) -> tuple[Receipt, list[Any]]:
    """The receipt of a deposit: ids, files with digests, seal status of each manifest.

    Each file is listed if the access policy lets the depositor read its metadata (own
    deposits); reads it says must be logged come back as custody events to record.
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
                out.files.append(
                    {"path": path, "size": f.size, "sha512": f.sha512, "sha256": f.sha256}
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
    return out, events
