"""Reading packages and files through the API, each read decided by the access policy.

Public readers (anonymous and researchers) never learn whether something they may not see exists:
every refusal is :func:`access.decisions.rules.not_available`, worded like a missing package. Staff
who may know that material exists (archivists, registrars, a depositor for its own deposits) get the
policy's reason instead. Reads the policy says must be logged are returned with their custody event,
which the caller records in its transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.decisions.rules import (
    Principal,
    Rules,
    access_event,
    load_rules,
    may_see,
    must_log,
    not_available,
    record_reads,
)
from archive.catalog.index import sealed_names
from archive.catalog.tables import Depositor, File, Package, Seal
from archive.errors import Forbidden, InputRejected, KeyLocked, NotFound
from archive.findings import Finding
from archive.keyring import KeyRing
from archive.model import EventRecord
from archive.storage.primary import Primary
from policies.decide import Decision
from policies.schema import AccessPolicy

SEALED, AWAITING = "sealed", "awaiting seal"


def package_id_of(ref: str) -> str:
    """``urn:uuid:…`` from a UUID (as in URLs) or a full id; raises the public not-found."""
    raw = ref.removeprefix("urn:uuid:")
    try:
        canonical = str(uuid.UUID(raw))
    except ValueError:
        raise not_available() from None
    if canonical != raw.lower():
        raise not_available()
    return f"urn:uuid:{canonical}"


@dataclass(frozen=True, slots=True)
class PackageHead:
    package_id: str
    title: str
    depositor: str
    created_at: datetime
    object_path: str
    head: int
    deposit_id: str


def package_head(session: Session, package_id: str) -> PackageHead | None:
    row = session.execute(
        select(Package, Depositor.name)
        .join(Depositor, Depositor.id == Package.depositor_id)
        .where(Package.id == package_id)
    ).first()
    if row is None:
        return None
    p, name = row
    return PackageHead(p.id, p.title, name, p.created_at, p.object_path, p.head, p.deposit_id)


@dataclass(frozen=True, slots=True)
class FileView:
    path: str  # data/…
    size: int
    sha512: str
    sha256: str
    format: str
    puid: str
    version: int
    proof: str  # sealed | awaiting seal
    #: Stored encrypted: its tier; and, while that tier's key is open, its real path (the
    #: file is stored under a sealed name, ``path``).
    encrypted: str | None = None
    name: str | None = None


@dataclass
class PackageView:
    package_id: str
    title: str
    depositor: str
    created_at: datetime
    files: list[FileView] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)

    @property
    def uuid(self) -> str:
        return self.package_id.removeprefix("urn:uuid:")

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "title": self.title,
            "depositor": self.depositor,
            "created_at": self.created_at.isoformat(),
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha512": f.sha512,
                    "sha256": f.sha256,
                    "format": f.format,
                    "puid": f.puid,
                    "version": f.version,
                    "proof": f.proof,
                    **({"encrypted": f.encrypted} if f.encrypted else {}),
                    **({"name": f.name} if f.name else {}),
                }
                for f in self.files
            ],
        }


def sealed_subjects(session: Session, package_id: str) -> set[str]:
    return set(
        session.execute(select(Seal.subject_path).where(Seal.package_id == package_id)).scalars()
    )


def payload_files(session: Session, package_id: str) -> list[File]:
    return list(
        session.execute(
            select(File)
            .where(File.package_id == package_id, File.role == "payload")
            .order_by(File.logical_path)
        ).scalars()
    )


def _file_view(f: File, sealed: set[str], names: dict[str, str] | None = None) -> FileView:
    real = (names or {}).get(f.logical_path)
    return FileView(
        f.logical_path.removeprefix("bag/"),
        int(f.plain_size) if f.plain_size is not None else f.size,
        f.plain_sha512 or f.sha512,
        f.plain_sha256 or f.sha256,
        f.format_name or "",
        f.puid or "",
        f.version,
        SEALED if f"v{f.version}/inventory.json" in sealed else AWAITING,
        f.sealed_tier,
        real.removeprefix("bag/") if real else None,
    )


@dataclass
class Read:
    """What a read produced: the view, and the custody events recorded with it."""

    view: PackageView
    events: list[EventRecord] = field(default_factory=list)


def _refusal(reveal: bool, decisions: list[Decision]) -> Exception:
    if not reveal:
        return not_available()
    last = decisions[-1]
    if last.reason_code in ("PURPOSE-REQUIRED", "PURPOSE-NOT-PERMITTED", "UNKNOWN-PURPOSE"):
        return InputRejected(
            f"read refused: {last.explanation}",
            [Finding(f"ACCESS-{last.reason_code}", "error", last.explanation, "purpose")],
            hint="state a purpose the access policy accepts for this material "
            "(e.g. ?purpose=prosecution)",
        )
    return Forbidden(
        f"read refused ({last.reason_code}): {last.explanation}",
        hint=f"decided under {last.policy}; a registrar can tell you what the material needs",
    )


def read_package(
    session: Session,
    policy: AccessPolicy,
    reader: Principal,
    ref: str,
    *,
    purpose: str | None,
    reveal: bool,
    keyring: KeyRing | None = None,
    primary: Primary | None = None,
) -> Read:
    """The package's metadata and the files ``reader`` may see.

    ``reveal``: the reader may learn that material exists (staff); otherwise every refusal
    is the public not-found. A file stored encrypted is listed under its sealed name with
    its tier, and (staff, its tier's key open in ``keyring`` for ``purpose``) its real name,
    read from ``primary``. Raises :class:`NotFound`, :class:`Forbidden` or
    :class:`InputRejected`."""
    package_id = package_id_of(ref)
    head = package_head(session, package_id)
    if head is None:
        raise not_available() if not reveal else NotFound(f"no package {package_id}")
    rules = load_rules(session, package_id, head.depositor)
    allowed, decisions = may_see(
        policy, rules, "", reader=reader, action="read-metadata", purpose=purpose
    )
    if not allowed:
        raise _refusal(reveal, decisions)
    view = PackageView(head.package_id, head.title, head.depositor, head.created_at)
    sealed = sealed_subjects(session, package_id)
    logged = must_log(decisions)
    files = payload_files(session, package_id)
    names: dict[str, str] = {}
    if reveal and keyring and primary and any(f.sealed_tier for f in files):
        names = sealed_names(primary.object(head.object_path), keyring, purpose=purpose)
    for f in files:
        ok, ds = may_see(
            policy,
            rules,
            f.logical_path.removeprefix("bag/"),
            reader=reader,
            action="read-metadata",
            purpose=purpose,
        )
        if ok:
            view.files.append(_file_view(f, sealed, names))
            if must_log(ds):
                logged = True
    read = Read(view)
    if logged:
        read.events.append(
            access_event(
                reader,
                package_id,
                f"metadata of the package and {len(view.files)} file(s) read",
                purpose=purpose,
                decisions=decisions,
            )
        )
    record_reads(session, read.events)
    return read


@dataclass(frozen=True, slots=True)
class Download:
    """A file to stream to the reader, and the custody events of the read (recorded in the
    transaction of the read). ``key`` is the file's key in the primary (relative to the
    storage root: :meth:`archive.storage.primary.Primary.open` reads it)."""

    package_id: str
    key: str
    name: str
    size: int
    media_type: str
    sha512: str
    events: tuple[EventRecord, ...] = ()
    #: For a copy stored encrypted: the tier's identity, open for this read (pyrage's);
    #: ``size`` and ``sha512`` are then the plain bytes'.
    identity: Any = None


def opened_for(keyring: KeyRing | None, tier: str, purpose: str | None) -> Any:
    """The identity that opens a copy of ``tier`` for ``purpose``; raises :class:`KeyLocked`
    when the tier's key is not open in this process, or open for another purpose."""
    opened = keyring.opened(tier) if keyring is not None else None
    if opened is None:
        raise KeyLocked(
            f"the file is stored encrypted and the {tier} tier's key is locked",
            hint="registrars open it together, each presenting their share for the purpose "
            "of the read (POST /registrar/keys/unlock), then read again",
        )
    if opened.purpose != purpose:
        raise KeyLocked(
            f"the {tier} tier's key is open for {opened.purpose!r}, not for {purpose!r}",
            hint=f"read for {opened.purpose!r}, or have registrars open it for your purpose",
        )
    return opened.identity


def _file_row(session: Session, package_id: str, logical: str | None) -> File | None:
    if logical is None:
        return None
    return session.execute(
        select(File)
        .where(File.package_id == package_id, File.logical_path == logical)
        .order_by(File.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def read_file(
    session: Session,
    policy: AccessPolicy,
    reader: Principal,
    ref: str,
    path: str,
    *,
    purpose: str | None,
    reveal: bool,
    keyring: KeyRing | None = None,
    primary: Primary | None = None,
) -> Download:
    """A payload file's bytes, if ``reader`` may read them for ``purpose``; a copy stored
    encrypted only while its tier's key is open in ``keyring`` for that purpose.

    A protected file is stored under a sealed name (``data/sealed/…``); with ``reveal`` (a
    registrar) and its tier's key open, its real name finds it too (its names map read from
    ``primary``), and the download carries it.

    Raises as :func:`read_package` does, and :class:`KeyLocked` (nothing recorded) for an
    encrypted copy whose key is not open for ``purpose``."""
    package_id = package_id_of(ref)
    head = package_head(session, package_id)
    logical = "bag/" + path if path.startswith("data/") else None
    name = path.rsplit("/", 1)[-1]
    row = _file_row(session, package_id, logical) if head is not None else None
    if head is not None and row is None and reveal and keyring and primary and logical:
        names = sealed_names(primary.object(head.object_path), keyring, purpose=purpose)
        opaque = {real: sealed for sealed, real in names.items()}.get(logical)
        if opaque is not None:
            row, path = _file_row(session, package_id, opaque), opaque.removeprefix("bag/")
    if head is None or row is None:
        if not reveal:
            raise not_available()
        raise NotFound(
            f"no file {path!r} in {package_id}",
            hint="a protected file is stored under a sealed name (data/sealed/…, as the "
            "package lists it); its real name finds it only while its tier's key is open",
        )
    rules: Rules = load_rules(session, package_id, head.depositor)
    allowed, decisions = may_see(
        policy, rules, path, reader=reader, action="read-content", purpose=purpose
    )
    if not allowed:
        raise _refusal(reveal, decisions)
    identity = opened_for(keyring, row.sealed_tier, purpose) if row.sealed_tier else None
    events: tuple[EventRecord, ...] = ()
    if must_log(decisions):
        events = (
            access_event(
                reader,
                package_id,
                "content of 1 file read",
                purpose=purpose,
                decisions=decisions,
                files=[row.sha512],
            ),
        )
    record_reads(session, events)
    sealed = identity is not None and row.plain_size is not None and row.plain_sha512
    return Download(
        package_id,
        f"{head.object_path}/{row.content_path}",
        name,
        int(row.plain_size) if sealed and row.plain_size is not None else row.size,
        row.mime_type or "application/octet-stream",
        str(row.plain_sha512) if sealed else row.sha512,
        events,
        identity,
    )
