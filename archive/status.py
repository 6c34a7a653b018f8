"""`custos status`: what the archive holds and what awaits work, read from the catalog alone.

Reports holdings, the files awaiting format identification and public files awaiting text
extraction, the work queued in the outbox (by job, with what failed and why), the text
outcomes (files whose tool was not installed counted by that tool: they are read again once
it is), how many packages are safely
stored (every copy the replication plan requires written and read back), the seal backlog
(with its age and the back-off before the next attempt), the custody log's head and last
sealed checkpoint, and the fixity coverage (copies checked within their tier's period, the
oldest check, the last check). It reads; it never starts work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from archive.catalog.queries import public_files_without_text
from archive.catalog.tables import (
    TOOL_MISSING,
    Checkpoint,
    CustodyHead,
    Deposit,
    ExtractedText,
    File,
    Package,
    Seal,
)
from archive.clock import now
from archive.fixity_state import Coverage, coverage
from archive.outbox import OutboxSummary, summary
from archive.proofs.backlog import Backlog, backlog
from archive.replicas import ReplicationSummary, replication_summary

if TYPE_CHECKING:
    from archive.services import Services


@dataclass(frozen=True, slots=True)
class Status:
    packages: int
    payload_files: int
    payload_bytes: int
    unidentified: int  # payload files whose format has not been identified yet
    unidentified_packages: int
    text_pending: int  # public files (distinct bytes aside) whose text is not read yet
    text_outcomes: dict[str, int]  # extracted_texts rows by outcome
    texts_awaiting_tool: dict[str, int]  # tool-missing rows by the tool that was missing
    queued: OutboxSummary  # the work commits have queued (the outbox)
    seal: Backlog
    log_entries: int
    log_chain: str
    last_sealed_checkpoint: int | None
    last_checkpoint_at: datetime | None
    replication: ReplicationSummary
    fixity: Coverage
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "holdings": {
                "packages": self.packages,
                "payload_files": self.payload_files,
                "payload_bytes": self.payload_bytes,
            },
            "identification_backlog": self.unidentified,
            "characterisation": {
                "files_awaiting_identification": self.unidentified,
                "packages_awaiting_identification": self.unidentified_packages,
                "public_files_awaiting_text": self.text_pending,
                "texts": self.text_outcomes,
                "texts_awaiting_tool": self.texts_awaiting_tool,
            },
            "queued": self.queued.as_dict(),
            "replication": self.replication.as_dict(),
            "fixity": self.fixity.as_dict(),
            "seal_backlog": self.seal.as_dict(self.at),
            "custody_log": {
                "chain": self.log_chain,
                "entries": self.log_entries,
                "last_sealed_checkpoint": self.last_sealed_checkpoint,
                "last_checkpoint_at": (
                    self.last_checkpoint_at.isoformat() if self.last_checkpoint_at else None
                ),
            },
        }


def status(services: Services) -> Status:
    """The archive's state now. Raises :class:`CatalogError` if the catalog cannot be read."""
    with services.sessions() as session:
        packages, files, size = session.execute(
            select(
                func.count(Package.id),
                func.coalesce(func.sum(Deposit.payload_files), 0),
                func.coalesce(func.sum(Deposit.payload_bytes), 0),
            ).join(Deposit, Deposit.id == Package.deposit_id)
        ).one()
        unidentified, unidentified_packages = session.execute(
            select(func.count(File.id), func.count(func.distinct(File.package_id))).where(
                File.role == "payload", File.format_name.is_(None)
            )
        ).one()
        text_pending = session.execute(
            select(func.count()).select_from(public_files_without_text().subquery())
        ).scalar_one()
        text_outcomes = dict(
            session.execute(
                select(ExtractedText.outcome, func.count()).group_by(ExtractedText.outcome)
            ).all()
        )
        awaiting_tool = dict(
            session.execute(
                select(ExtractedText.tool, func.count())
                .where(ExtractedText.outcome == TOOL_MISSING)
                .group_by(ExtractedText.tool)
            ).all()
        )
        head = session.get(CustodyHead, 1)
        chain = head.chain if head else ""
        last = session.execute(
            select(Checkpoint.seq, Checkpoint.created_at)
            .join(Seal, Seal.subject_path == Checkpoint.path)
            .where(Checkpoint.chain == chain, Seal.package_id.is_(None))
            .order_by(Checkpoint.seq.desc())
            .limit(1)
        ).first()
        return Status(
            packages=int(packages),
            payload_files=int(files),
            payload_bytes=int(size),
            unidentified=int(unidentified),
            unidentified_packages=int(unidentified_packages),
            text_pending=int(text_pending),
            text_outcomes={k: int(v) for k, v in sorted(text_outcomes.items())},
            texts_awaiting_tool={k: int(v) for k, v in sorted(awaiting_tool.items())},
            queued=summary(session),
            seal=backlog(session, services.settings),
            log_entries=head.seq if head else 0,
            log_chain=chain,
            last_sealed_checkpoint=int(last[0]) if last else None,
            last_checkpoint_at=last[1] if last else None,
            replication=replication_summary(session),
            fixity=coverage(session),
            at=now(),
        )
