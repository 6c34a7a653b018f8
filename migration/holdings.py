"""Read from the catalog what preservation planning needs: the payload files and the PUIDs
identification gave them, the derivatives stored, and the migrations that failed.

Identification is ingest's work; its results are read here from the catalog (``files.puid``),
never through ingest's code. Failed migrations are known from the custody log: each is a
``migration`` event with outcome ``failure`` whose ``source`` link names the file and whose
detail starts with the attempt key (pathway and policy version, see ``migration.plan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive.catalog.tables import Event, EventLink, File
from migration.plan import HeldFile, Holdings, parse_attempt_key


def read_holdings(session: Session, package_ids: Sequence[str] | None = None) -> Holdings:
    """Holdings of the given packages (every package when None)."""
    files = select(
        File.package_id,
        File.logical_path,
        File.content_path,
        File.size,
        File.sha512,
        File.puid,
        File.format_name,
    ).where(
        File.role == "payload",
        # A copy stored encrypted cannot be read to migrate without its tier's key, which a
        # migration run does not hold: it is left out of the holdings (not built: migrating
        # encrypted copies while the key is open).
        File.sealed_tier.is_(None),
    )
    derivatives = select(File.package_id, File.logical_path).where(File.role == "derivative")
    failures = (
        select(Event.package_id, EventLink.object_id, Event.detail)
        .join(EventLink, EventLink.event_id == Event.id)
        .where(Event.type == "migration", Event.outcome == "failure", EventLink.role == "source")
    )
    if package_ids is not None:
        files = files.where(File.package_id.in_(package_ids))
        derivatives = derivatives.where(File.package_id.in_(package_ids))
        failures = failures.where(Event.package_id.in_(package_ids))
    held = tuple(
        HeldFile(pkg, logical, content, size, sha512, puid, name)
        for pkg, logical, content, size, sha512, puid, name in session.execute(
            files.order_by(File.package_id, File.logical_path)
        )
    )
    failed: set[tuple[str, str, str]] = set()
    for pkg, source, detail in session.execute(failures):
        key = parse_attempt_key(detail)
        if pkg is not None and key is not None:
            failed.add((pkg, source, key))
    return Holdings(
        held,
        frozenset((pkg, logical) for pkg, logical in session.execute(derivatives)),
        frozenset(failed),
    )


@dataclass(frozen=True, slots=True)
class DerivativeTally:
    role: str
    extension: str
    files: int
    bytes: int


def derivative_tally(session: Session) -> list[DerivativeTally]:
    """Derivatives stored, per role and extension (for the report)."""
    out: dict[tuple[str, str], list[int]] = {}
    for logical, size in session.execute(
        select(File.logical_path, File.size).where(File.role == "derivative")
    ):
        role = logical.removeprefix("custos/derivatives/").partition("/")[0]
        ext = logical.rpartition(".")[2]
        slot = out.setdefault((role, ext), [0, 0])
        slot[0] += 1
        slot[1] += int(size)
    return [DerivativeTally(r, e, n, b) for (r, e), (n, b) in sorted(out.items())]


def migration_outcomes(session: Session) -> dict[str, int]:
    """How many migration events the custody log holds, per outcome."""
    return {
        outcome: int(n)
        for outcome, n in session.execute(
            select(Event.outcome, func.count(Event.id))
            .where(Event.type == "migration")
            .group_by(Event.outcome)
        )
    }
