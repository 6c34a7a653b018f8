"""Characterisation after a deposit is stored: format identification, then plain text of the
public documents for the reading-room search. What the ``characterise`` job (asked for in
the outbox by each deposit and tier change, run by a worker, by ``custos serve`` or by
``custos ingest`` itself) and ``custos identify`` call.

Every step only does what is still pending, so running it again (a job queued twice, a
worker and ``custos serve`` both at work) does nothing twice: identification takes only
files without a format (results reused by sha512 and extension, see
:func:`ingest.service.identify_package`), extraction only digests without an
``extracted_texts`` row, or whose row says the tool was missing (``tool-missing``) when that
tool is installed now: such a row is replaced by what the tool reads; any other row stays.

Which files are read for text: those the public search index holds, i.e. those
:func:`access.decisions.rules.may_see` lets a public reader see, as decided when the package was
last indexed (ingest, identification, a tier change). Restricted and protected-identity files never
enter the index, so they are never read for text and no word of theirs can be found, counted or
faceted. A tier change to public re-indexes the package and queues this work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from archive import clock
from archive.catalog.index import run_index_hooks
from archive.catalog.queries import public_files_without_text, resolve_package_id
from archive.catalog.tables import TOOL_MISSING, ExtractedText, File, Package
from archive.errors import CustosError
from archive.journal import scratch
from archive.services import Services
from ingest.extract import Extracted, extract, not_read, pdftotext_version, tools_found
from ingest.service import IdentifyResult, identify_package, pending_identification

log = logging.getLogger("custos.characterise")


@dataclass
class CharacteriseReport:
    """What one run did: per package identified, text outcomes by kind, and failures."""

    identified: list[IdentifyResult] = field(default_factory=list)
    texts: dict[str, int] = field(default_factory=dict)  # outcome -> distinct files
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "identified": [r.as_dict() for r in self.identified if r.version is not None],
            "texts": dict(sorted(self.texts.items())),
            "failures": self.failures,
        }


def pending_packages(services: Services) -> list[str]:
    """Packages with files awaiting identification or (public ones) text extraction."""
    found = set(pending_identification(services)) if services.settings.identify_formats else set()
    if services.settings.characterisation.extract_text:
        q = public_files_without_text(tools_found=tools_found()).subquery()
        with services.sessions() as session:
            found.update(session.execute(select(q.c.package_id).distinct()).scalars())
    return sorted(found)


def characterise(services: Services, package_ref: str | None = None) -> CharacteriseReport:
    """Identify what is pending, then extract the text of public documents, for one package
    (``package_ref``) or for every package with work pending.

    A package whose identification cannot run is reported in ``failures`` (and stays
    pending); the others go on. Raises :class:`NotFound` for an unknown ``package_ref``."""
    report = CharacteriseReport()
    if package_ref is not None:
        with services.sessions() as session:
            targets = [resolve_package_id(session, package_ref)]
    else:
        targets = pending_packages(services)
    settings = services.settings
    for package_id in targets:
        if settings.identify_formats:
            try:
                report.identified.append(identify_package(services, package_id))
            except CustosError as exc:
                report.failures.append(f"{package_id}: identification: {exc.message}")
                log.error("identification of %s failed: %s", package_id, exc.diagnostics())
                continue
        if settings.characterisation.extract_text:
            for outcome, n in extract_texts(services, package_id).items():
                report.texts[outcome] = report.texts.get(outcome, 0) + n
    return report


def extract_texts(services: Services, package_id: str) -> dict[str, int]:
    """Extract the text of the package's public documents not yet read (by sha512), and of
    those left ``tool-missing`` whose tool is installed now, record it, and re-index the
    package so that its words can be found. Returns outcome counts."""
    pdf_tool = pdftotext_version()
    with services.sessions() as session:
        object_path = session.execute(
            select(Package.object_path).where(Package.id == package_id)
        ).scalar()
        rows = session.execute(
            public_files_without_text(tools_found=tools_found()).where(
                File.package_id == package_id
            )
        ).all()
    if object_path is None or not rows:
        return {}
    todo: dict[str, tuple[str | None, str]] = {}
    for _, sha512, mime, content in rows:
        todo.setdefault(sha512, (mime, content))
    c = services.settings.characterisation
    obj = services.primary.object(object_path)
    results: dict[str, Extracted] = {}
    for sha512, (mime, content) in todo.items():  # the long part, outside any transaction
        if not services.primary.is_local:  # not fetched from storage if it is not to be read
            skipped = not_read(mime, obj.size(content), c.source_max_bytes)
            if skipped is not None:
                results[sha512] = skipped
                continue
        with obj.local_files([content], lambda: scratch(services.store.staging, "text-")) as got:
            results[sha512] = extract(
                got[content],
                mime,
                source_max_bytes=c.source_max_bytes,
                max_chars=c.text_max_chars,
                time_limit=c.time_limit_seconds,
                pdf_tool=pdf_tool,
            )
    at = clock.now()
    with services.session_scope() as session:
        _record(
            session,
            [
                {
                    "sha512": sha512,
                    "outcome": r.outcome,
                    "tool": r.tool,
                    "chars": len(r.text),
                    "text": r.text,
                    "extracted_at": at,
                }
                for sha512, r in results.items()
            ],
        )
        run_index_hooks(session, package_id)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return counts


def _record(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert text rows; a row already there is replaced only if it says the tool was missing
    (any other was written meanwhile by another process: same bytes, same text)."""
    if not rows:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(ExtractedText)
    stmt = stmt.on_conflict_do_update(
        index_elements=["sha512"],
        set_={c: stmt.excluded[c] for c in ("outcome", "tool", "chars", "text", "extracted_at")},
        where=ExtractedText.outcome == TOOL_MISSING,
    )
    session.execute(stmt, list(rows))
