"""Named read queries over the catalog, returning domain values (never ORM rows)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, selectinload

from archive.catalog.tables import (
    TOOL_MISSING,
    AccessAssignment,
    ConsentRecord,
    Deposit,
    Depositor,
    Event,
    ExtractedText,
    File,
    Package,
    SearchEntry,
    TierKey,
)
from archive.errors import NotFound
from archive.model import (
    AccessRow,
    EventRecord,
    FileRow,
    Link,
    PackageDetail,
    PackageSummary,
    VersionRow,
)


def _summaries(session: Session, where: object | None = None) -> list[PackageSummary]:
    counts = (
        select(
            File.package_id,
            func.count(File.id).label("n"),
            func.coalesce(func.sum(File.size), 0).label("bytes"),
        )
        .where(File.role == "payload")
        .group_by(File.package_id)
        .subquery()
    )
    stmt = (
        select(Package, Depositor.name, counts.c.n, counts.c.bytes)
        .join(Depositor, Depositor.id == Package.depositor_id)
        .outerjoin(counts, counts.c.package_id == Package.id)
        .order_by(Package.created_at, Package.id)
    )
    if where is not None:
        stmt = stmt.where(where)  # type: ignore[arg-type]
    return [
        PackageSummary(
            id=p.id,
            depositor=name,
            title=p.title,
            created_at=p.created_at,
            head=p.head,
            files=n or 0,
            bytes=int(b or 0),
            object_path=p.object_path,
        )
        for p, name, n, b in session.execute(stmt)
    ]


def list_packages(session: Session, *, depositor: str | None = None) -> list[PackageSummary]:
    return _summaries(session, Depositor.name == depositor if depositor else None)


def resolve_package_id(session: Session, ref: str) -> str:
    """Accept a full package id or a unique prefix of its UUID; raise :class:`NotFound`."""
    if session.get(Package, ref) is not None:
        return ref
    like = ref.removeprefix("urn:uuid:")
    matches = list(
        session.execute(
            select(Package.id).where(
                or_(Package.id.like(f"urn:uuid:{like}%"), Package.id.like(f"{ref}%"))
            )
        ).scalars()
    )
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(
            f"no package {ref!r} in the catalog", hint="`custos list` shows the packages held"
        )
    raise NotFound(f"{ref!r} matches {len(matches)} packages", hint="give more of the id")


def package_events(session: Session, package_id: str) -> list[EventRecord]:
    rows = session.execute(
        select(Event)
        .where(Event.package_id == package_id)
        .options(selectinload(Event.links))
        .order_by(Event.occurred_at, Event.id)
    ).scalars()
    return [_event(e) for e in rows]


def _event(e: Event) -> EventRecord:
    return EventRecord(
        uuid=e.uuid,
        type=e.type,
        occurred_at=e.occurred_at,
        agent=e.agent,
        outcome=e.outcome,  # type: ignore[arg-type]
        detail=e.detail,
        links=tuple(Link(lk.object_type, lk.object_id, lk.role) for lk in e.links),  # type: ignore[arg-type]
    )


def package_detail(session: Session, ref: str) -> PackageDetail:
    package_id = resolve_package_id(session, ref)
    pkg = session.execute(
        select(Package).where(Package.id == package_id).options(selectinload(Package.versions))
    ).scalar_one()
    deposit = session.get(Deposit, pkg.deposit_id)
    assert deposit is not None
    (summary,) = _summaries(session, Package.id == package_id)
    files = session.execute(
        select(File).where(File.package_id == package_id).order_by(File.version, File.logical_path)
    ).scalars()
    return PackageDetail(
        summary=summary,
        deposit_id=deposit.id,
        source_name=deposit.source_name,
        bagit_version=deposit.bagit_version,
        fingerprint=deposit.fingerprint,
        versions=tuple(
            VersionRow(v.number, v.created_at, v.message, v.agent, v.inventory_sha512)
            for v in pkg.versions
        ),
        files=tuple(
            FileRow(
                f.logical_path,
                f.content_path,
                f.version,
                f.role,
                f.size,
                f.sha512,
                f.sha256,
                f.puid,
                f.mime_type,
                f.format_name,
            )
            for f in files
        ),
        events=tuple(package_events(session, package_id)),
        access=access_rows(session, package_id),
    )


def _access_rows_statement() -> Any:
    a, c = AccessAssignment, ConsentRecord
    assignments = select(
        literal(0).label("kind"),
        a.path,
        a.tier,
        a.sunset,
        a.successor,
        a.legal_basis,
        a.sunset_basis,
        cast(null(), Text).label("scopes"),
    ).where(a.package_id == bindparam("package_id"))
    consents = select(
        literal(1),
        c.path,
        cast(null(), String),
        cast(null(), Date),
        cast(null(), String),
        cast(null(), Text),
        cast(null(), Text),
        c.scopes,
    ).where(c.package_id == bindparam("package_id"))
    return union_all(assignments, consents)


#: Built once: every access decision on a package reads it.
_ACCESS_ROWS = _access_rows_statement()


def access_rows(session: Session, package_id: str) -> tuple[AccessRow, ...]:
    """The package's tier assignments with the consent on the same paths, package first,
    in one statement."""
    result: Any = session.execute(_ACCESS_ROWS, {"package_id": package_id})
    assigned: list[AssignmentRow] = []
    consents: dict[str, str] = {}
    for kind, path, tier, sunset, successor, basis, sunset_basis, scopes in result:
        if kind == 0:
            assigned.append((path, tier, sunset, successor, basis, sunset_basis))
        else:
            consents[path] = scopes
    return merge_access_rows(assigned, consents)


#: A tier assignment as stored: path, tier, sunset, successor, legal basis, sunset basis.
AssignmentRow = tuple[str, str, date | None, str | None, str, str]


def merge_access_rows(
    assignments: Iterable[AssignmentRow], consents: Mapping[str, str]
) -> tuple[AccessRow, ...]:
    """A package's assignments (by path), each with the consent recorded on the same path,
    then the consents on paths without an assignment. ``consents``: path -> the stored
    comma-separated scopes."""
    left = {path: tuple(s for s in scopes.split(",") if s) for path, scopes in consents.items()}
    rows = [
        AccessRow(path, tier, sunset, successor, basis, left.pop(path, None), sunset_basis)
        for path, tier, sunset, successor, basis, sunset_basis in sorted(
            assignments, key=lambda r: r[0]
        )
    ]
    rows += [AccessRow(p, "", None, None, "", c) for p, c in sorted(left.items())]
    return tuple(rows)


def deposit_by_fingerprint(session: Session, fingerprint: str) -> tuple[str, str] | None:
    """(deposit id, package id) already holding a bag with this fingerprint, if any."""
    row = session.execute(
        select(Deposit.id, Package.id)
        .join(Package, Package.deposit_id == Deposit.id)
        .where(Deposit.fingerprint == fingerprint)
    ).first()
    return (row[0], row[1]) if row else None


def public_files_without_text(
    *, tools_found: Collection[str] = ()
) -> Select[str, str, str | None, str]:
    """(package id, sha512, MIME type, content path) of identified payload files that the
    public search index holds and whose bytes have no ``extracted_texts`` row yet: the text
    extraction backlog; with them, those whose row says a tool of ``tools_found`` was missing
    (:data:`TOOL_MISSING`), to be read again now that it is installed. Files the public may
    not see are never in the index, so never here."""
    read: ColumnElement[bool] = ExtractedText.sha512.is_(None)
    if tools_found:
        read = or_(
            read,
            and_(
                ExtractedText.outcome == TOOL_MISSING,
                ExtractedText.tool.in_(sorted(tools_found)),
            ),
        )
    return (
        select(File.package_id, File.sha512, File.mime_type, File.content_path)
        .join(
            SearchEntry,
            and_(
                SearchEntry.package_id == File.package_id,
                SearchEntry.kind == "file",
                literal("bag/") + SearchEntry.path == File.logical_path,
            ),
        )
        .outerjoin(ExtractedText, ExtractedText.sha512 == File.sha512)
        .where(
            File.role == "payload",
            File.format_name.is_not(None),
            read,
        )
    )


def tier_recipients(session: Session, tier: str) -> list[str]:
    """Every recipient a new copy of ``tier`` is encrypted to (``access.keys``): the tier's
    own key's, then its escrows', in the order they were added. Empty: the tier has no key,
    and its copies are stored plain."""
    rows = session.execute(
        select(TierKey.recipient, TierKey.kind)
        .where(TierKey.tier == tier, TierKey.retired_at.is_(None))
        .order_by(TierKey.id)
    ).all()
    if not any(kind == "shares" for _, kind in rows):
        return []  # escrows alone never switch encryption on
    return [r for r, kind in rows if kind == "shares"] + [r for r, kind in rows if kind != "shares"]
