"""Ingest: what the CLI, the API and jobs call to receive a bag and store it.

Order of work (each step named for the crash tests, see :func:`_step`):
depositor (registered, or registered now when asked) -> receive (copy + digests) ->
validate -> metadata -> inventory -> ready (journal) -> installed (object renamed into the
storage root) -> committed (catalog) -> cleaned.
A refusal at any point removes the staging folder and records one event, nothing more (a
depositor that is not registered is refused before staging is touched).
A write that the filesystem of staging and the storage root refuses (full, over quota,
read-only, I/O error) is a :class:`StorageError` naming that folder, never a finding against
the bag: staging is removed, nothing is recorded.
Format identification runs after the commit and adds version 2 to the object.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from archive import clock, installs, outbox, steps
from archive import journal as journal_mod
from archive.catalog.index import (
    ACCESS_JSON,
    BAG_INFO_JSON,
    ENCRYPTED_JSON,
    FORMATS_JSON,
    PREMIS_XML,
    index_object,
    run_index_hooks,
)
from archive.catalog.queries import deposit_by_fingerprint, resolve_package_id, tier_recipients
from archive.catalog.tables import Deposit, File, Package
from archive.custody import new_event, parse_premis, premis_xml, record_events
from archive.depositors import Registration, check_name, register, require_registered
from archive.digest import WriteFailed, digest_bytes
from archive.errors import (
    FULL_ERRNOS,
    CatalogError,
    InputRejected,
    PolicyError,
    StorageError,
    database_reason,
    storage_failure,
)
from archive.findings import Finding, errors_in, warnings_in
from archive.model import EventRecord, Link
from archive.services import Services
from archive.storage.ocfl import (
    StagedVersion,
    head_state,
    object_rel_path,
    prune_empty_dirs,
)
from archive.storage.primary import StoredObject
from archive.versions import append_version, catalog_version, finish
from ingest.access import UNDECLARED_BASIS, AccessDeclaration, declare
from ingest.bag import check_bag
from ingest.identify import Identification, identify, tool_version
from ingest.sealing import (
    Concealment,
    conceal_finding,
    conceal_records,
    encrypted_json,
    names_files,
    revealed_paths,
    seal_bytes,
    seal_payload,
    sealed_tiers,
)
from ingest.unpack import receive
from policies.load import PolicyFileError, load_access_policy, load_ingest_policy
from policies.schema import AccessPolicy, IngestPolicy

Progress = Callable[[int], None]
AGENT = "Custos ingest"


@dataclass(frozen=True)
class IngestResult:
    status: Literal["stored", "already-held"]
    package_id: str
    deposit_id: str
    object_path: str
    payload_files: int
    payload_bytes: int
    bagit_version: str
    warnings: tuple[Finding, ...] = ()
    recovered: tuple[str, ...] = ()
    identification: dict[str, Any] = field(default_factory=dict)
    #: The depositor's registration when this ingest was asked to make it (``new_depositor``).
    registration: Registration | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "package_id": self.package_id,
            "deposit_id": self.deposit_id,
            "object_path": self.object_path,
            "payload_files": self.payload_files,
            "payload_bytes": self.payload_bytes,
            "bagit_version": self.bagit_version,
            "warnings": [w.as_dict() for w in self.warnings],
            "recovered": list(self.recovered),
            "identification": self.identification,
            "depositor_registered": bool(self.registration and self.registration.created),
        }


def load_access(services: Services) -> AccessPolicy:
    try:
        return load_access_policy(services.settings.policy_dir)
    except PolicyFileError as exc:
        raise PolicyError(str(exc), hint="fix the policy file or the policy_dir setting") from exc


def _access_summary(access: AccessDeclaration, policy: AccessPolicy) -> str:
    """The tier event's detail: tiers and counts only, never paths (they may name people)."""
    package = next(a for a in access.assignments if a.path == "")
    until = (
        f" until {package.sunset.isoformat()}, then {package.successor}" if package.sunset else ""
    )
    tiers: dict[str, int] = {}
    for a in access.assignments:
        if a.path:
            tiers[a.tier] = tiers.get(a.tier, 0) + 1
    inner = ", ".join(f"{n} {t}" for t, n in sorted(tiers.items()))
    undeclared = " (undeclared: fail closed)" if package.legal_basis == UNDECLARED_BASIS else ""
    return (
        f"access at deposit ({policy.label}): the package is {package.tier}{until}{undeclared}"
        + (f"; files or folders declared apart: {inner}" if inner else "")
        + f"; consent recorded for {len(access.consents)} path(s)"
    )


def _sealed_summary(done: Concealment) -> str:
    """The encryption event's detail: counts by tier and the recipients, never paths."""
    counts = ", ".join(f"{len(n)} of the {t} tier" for t, n in sorted(done.names.items()))
    recipients = sorted({r for to in done.recipients.values() for r in to})
    return (
        f"files stored encrypted (age-encryption.org/v1) at deposit: {counts}, under sealed "
        f"names, their real names in custos/names-<tier>.age; the bag's tag files but "
        f"bagit.txt and its bag-info encrypted to the {done.closest} tier; to "
        f"{len(recipients)} recipient(s): {', '.join(recipients)}"
    )


def load_policy(services: Services) -> IngestPolicy:
    try:
        return load_ingest_policy(services.settings.policy_dir)
    except PolicyFileError as exc:
        raise PolicyError(str(exc), hint="fix the policy file or the policy_dir setting") from exc


def fingerprint(payload: dict[str, str]) -> str:
    """sha512 over the sorted '<sha512>  <path>' lines of the payload: the same holdings
    deposited twice have the same fingerprint, whatever their bag-info says."""
    lines = "".join(f"{digest}  {path}\n" for path, digest in sorted(payload.items()))
    return "sha512:" + digest_bytes(lines.encode("utf-8", "surrogateescape"), "sha512")


def _title(info: dict[str, str | list[str]], fallback: str) -> str:
    for key in ("Title", "External-Identifier", "Internal-Sender-Identifier"):
        value = info.get(key)
        if value:
            return value[0] if isinstance(value, list) else value
    return fallback


def ingest(
    services: Services,
    source: Path,
    *,
    depositor: str,
    new_depositor: bool = False,
    by: str | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Validate the bag at ``source`` and store it as a new package of ``depositor``.

    ``depositor`` must be registered (:mod:`archive.depositors`), unless ``new_depositor``
    asks to register it first (as ``custos depositors add`` does, ``by`` naming the operator
    in its custody event; a name already registered is kept as it is). Returns
    ``already-held`` (storing nothing) when the same payload is already held.
    Raises :class:`InputRejected` listing every finding when the bag is refused, or naming
    the registered depositors close to an unregistered name (``DEPOSITOR-UNKNOWN``, before
    anything is received); the refusal is recorded as one event and leaves nothing in
    staging or storage. Raises :class:`StorageError` (:class:`~archive.errors.StorageFull`
    for no space or quota) when staging or the storage root refuses a write; that leaves
    nothing either, and no event.
    """
    depositor = check_name(depositor)
    policy = load_policy(services)
    access_policy = load_access(services)
    source = source.absolute()
    registration = _depositor(services, source, depositor, new=new_depositor, by=by)
    settings = services.settings
    deposit_id = str(uuid.uuid4())
    package_id = f"urn:uuid:{uuid.uuid4()}"
    received_at = clock.now().astimezone()
    try:
        jr = journal_mod.Journal.begin(
            services.store,
            deposit_id,
            deposit_id=deposit_id,
            source=source.name,
            depositor=depositor,
        )
    except OSError as exc:
        failure = _storage_failure(services, exc)
        if failure is None:
            raise
        raise failure from exc
    try:
        if not source.exists():
            raise InputRejected(
                f"{source} does not exist",
                [Finding("SOURCE-MISSING", "error", "no such file or folder", str(source))],
                hint="check the path of the bag",
            )
        version = StagedVersion(package_id, jr.object_dir, 1, fsync=settings.fsync)
        (jr.object_dir / "v1" / "content").mkdir(parents=True)
        bag_dir = jr.object_dir / "v1" / "content" / "bag"
        received = receive(
            source,
            bag_dir=bag_dir,
            scratch=jr.folder,
            limits=settings.limits,
            workers=settings.workers,
            progress=progress,
        )
        try:
            report = check_bag(
                bag_dir,
                received.sizes,
                received.digests,
                limits=settings.limits,
                policy=policy,
            )
        finally:
            received.close()
        steps.reached("received")
        access = declare(
            report.info,
            bag_dir,
            report.payload.keys(),
            policy=access_policy,
            depositor=depositor,
            deposited_on=received_at.date(),
        )
        findings = [*report.findings, *access.findings]
        if errors_in(findings):
            raise InputRejected(
                f"deposit refused: {source.name} is not a bag the archive can accept",
                findings,
                hint="fix every problem listed at the source and deposit the bag again",
            )
        files = received.digests()
        empty_folders = prune_empty_dirs(bag_dir)  # OCFL stores none; recorded below
        # Start flushing the payload to disk now, while the metadata and the inventory are
        # built; the flush before the journal says "ready" then has little left to do.
        flusher = _background_flush() if settings.fsync else None
        steps.reached("validated")

        payload = {p: r.digests["sha512"] for p, r in report.payload.items()}
        fp = fingerprint(payload)
        with services.session_scope() as session:  # early, to spare the work on a duplicate
            held = deposit_by_fingerprint(session, fp)
        if held is not None:
            return _already_held(
                services, jr, held, source, depositor, report.version, registration
            )

        with services.sessions() as session:
            recipients = {t: tier_recipients(session, t) for t in sealed_tiers(access_policy)}
        done = seal_payload(bag_dir, report.payload.keys(), access.assignments, files, recipients)
        sealed = done.sealed
        revealed = revealed_paths(report.payload.keys(), done)
        hidden_folders: list[str] = []
        if done:
            steps.reached("sealed")
            assignments, consents = conceal_records(
                access.assignments, access.consents, done, revealed
            )
            access = AccessDeclaration(assignments, consents, access.findings)
            hidden_folders = [f for f in empty_folders if f not in revealed]
            empty_folders = [f for f in empty_folders if f in revealed]
        for rel, res in files.items():
            version.register(f"bag/{rel}", f"v1/content/bag/{rel}", res)
        payload_bytes = sum(r.size for r in report.payload.values())
        links = [Link("package", package_id), Link("deposit", deposit_id)]
        warnings = [conceal_finding(w, done, revealed) for w in warnings_in(findings)]
        events: list[EventRecord] = [
            new_event(
                "validation",
                "warning" if warnings else "success",
                f"BagIt {report.version} bag valid (RFC 8493, {policy.label}); "
                f"{len(payload)} payload files, every manifest and algorithm checked"
                + (f"; {len(warnings)} warning(s)" if warnings else ""),
                links=links,
                agent=AGENT,
            ),
            *(
                new_event("validation", "warning", w.render(), links=links, agent=AGENT)
                for w in warnings
            ),
            new_event(
                "message digest calculation",
                "success",
                f"sha512 and sha256 of {len(files)} files computed while copying",
                links=links,
                agent=AGENT,
            ),
            new_event(
                "tier change",
                "success",
                _access_summary(access, access_policy),
                links=links,
                agent=AGENT,
            ),
            *(
                [
                    new_event(
                        "encryption",
                        "success",
                        _sealed_summary(done),
                        links=links,
                        agent=AGENT,
                    )
                ]
                if sealed
                else []
            ),
            new_event(
                "ingestion",
                "success",
                f"deposit {deposit_id} from {source.name} stored as OCFL object, version 1",
                links=[*links, Link("depositor", depositor)],
                agent=AGENT,
            ),
        ]
        meta = {
            "deposit_id": deposit_id,
            "depositor": depositor,
            "source_name": source.name,
            "received_at": received_at.isoformat(),
            "bagit_version": report.version,
            "tag_file_encoding": report.encoding,
            "fingerprint": fp,
            "payload_files": len(payload),
            "payload_bytes": payload_bytes,
            # A bag holding protected files keeps its bag-info encrypted, title included.
            "title": source.name if done else _title(report.info, source.name),
            "ingest_policy": policy.label,
            "empty_folders": empty_folders,
        }
        version.add_bytes("custos/deposit.json", _json(meta))
        if done:
            metadata = [(BAG_INFO_JSON, done.closest, _json(report.info))]
            metadata += [
                (logical, tier, plain)
                for tier, (logical, plain) in names_files(done, hidden_folders).items()
            ]
            for logical, tier, plain in metadata:
                cipher, entry = seal_bytes(plain, logical, tier, done.recipients[tier])
                sealed[version.add_bytes(logical, cipher).content_path] = entry
        else:
            version.add_bytes(BAG_INFO_JSON, _json(report.info))
        version.add_bytes(ACCESS_JSON, _json(access.as_json(access_policy)))
        if sealed:
            version.add_bytes(ENCRYPTED_JSON, encrypted_json(sealed))
        version.add_bytes("custos/premis.xml", premis_xml(events))
        steps.reached("metadata")
        inventory = version.build_inventory(
            created=received_at,
            message=f"Deposit {deposit_id} from {depositor}",
            user_name=AGENT,
            user_address="urn:custos:ingest",
        )
        version.write_inventory(inventory)
        if flusher is not None:
            flusher.join()
            os.sync()  # one flush of every staged file instead of an fsync per file
        steps.reached("inventory")
        with services.commit_lock():
            with services.session_scope() as session:  # again: another process may have won
                held = deposit_by_fingerprint(session, fp)
            if held is not None:
                return _already_held(
                    services, jr, held, source, depositor, report.version, registration
                )
            _commit(services, jr, package_id, version, inventory)
        services.store.discard(jr.folder)
        steps.reached("cleaned")
        return IngestResult(
            "stored",
            package_id,
            deposit_id,
            object_rel_path(package_id),
            len(payload),
            payload_bytes,
            report.version,
            tuple(warnings),
            tuple(services.recovered),
            registration=registration,
        )

    except InputRejected as exc:
        services.store.discard(jr.folder)
        _record_refusal(services, deposit_id, source, depositor, exc.findings)
        raise
    except BaseException as exc:
        failure = _storage_failure(services, exc)
        # Once the journal says ready, the object is complete (in staging or in the storage
        # root): keep the journal so that the next start completes the ingest. A write refused
        # before the object was in the storage root is reported as nothing stored: so it is.
        ready = jr.data.get("state") == journal_mod.READY
        if not ready or (failure is not None and not services.primary.has_object(package_id)):
            services.store.discard(jr.folder)
        if failure is not None:
            raise failure from exc
        if isinstance(exc, CatalogError | SQLAlchemyError):
            raise _catalog_failure(exc, ready=ready) from exc
        raise
    finally:
        jr.close()


def _depositor(
    services: Services, source: Path, name: str, *, new: bool, by: str | None
) -> Registration | None:
    """Register ``name`` (``new``), or refuse it unless it is registered. A refusal (a name
    not registered, or registered under another spelling) is recorded as one event, as for a
    refused bag, and nothing else is written."""
    try:
        if new:
            with services.session_scope() as session:
                return register(
                    session,
                    name,
                    by=by,
                    reason=f"its first deposit, from {source.name}",
                    where="--depositor",
                )
        with services.sessions() as session:
            require_registered(session, name, where="--depositor", option="--new-depositor")
    except InputRejected as exc:
        _record_refusal(services, str(uuid.uuid4()), source, name, exc.findings)
        raise
    return None


#: Refused writes whatever was written: a read never fails with these. (An I/O error may be
#: the source's; it counts only where a write was told apart: :class:`WriteFailed`.)
_WRITE_ERRNOS = FULL_ERRNOS | {errno.EROFS}


def _storage_failure(services: Services, exc: BaseException) -> StorageError | None:
    """The error to report for ``exc`` if staging or the storage root refused a write."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    if not isinstance(exc, WriteFailed) and exc.errno not in _WRITE_ERRNOS:
        return None
    store = services.store
    where = (
        f"the staging folder {store.staging}, on the filesystem of the storage root {store.root}"
        if services.primary.is_local
        else f"this host's scratch folder {store.staging}"
    )
    return storage_failure(
        exc.errno,
        exc.strerror or str(exc),
        doing="the deposit could not be written, so nothing was stored (the bag is not at fault)",
        where=where,
        then="deposit the bag again",
    )


def _catalog_failure(exc: CatalogError | SQLAlchemyError, *, ready: bool) -> CatalogError:
    """The error to report for a deposit cut short because the catalog did not answer
    (``ready``: once its object was complete, when the journal kept it)."""
    reason = exc.message if isinstance(exc, CatalogError) else database_reason(exc)
    if not ready:
        return CatalogError(
            "the deposit could not be recorded in the catalog, so nothing was stored "
            f"(the bag is not at fault): {reason}",
            hint="check that the catalog's database server (database_url) is running and "
            "that this host can reach it, then deposit the bag again",
        )
    return CatalogError(
        "the deposit was cut short while it was being stored, as the catalog could not record "
        f"it (the bag is not at fault): {reason}",
        hint="check that the catalog's database server (database_url) is running and that "
        "this host can reach it; the next custos command on this host then completes the "
        "deposit or rolls it back (any host does, if this one is gone); then deposit the bag "
        "again: it is stored, or answered as already held",
    )


def _background_flush() -> threading.Thread:
    """os.sync() on a thread (it releases the GIL): durability work overlapping other work."""
    thread = threading.Thread(target=os.sync, name="custos-flush", daemon=True)
    thread.start()
    return thread


def _commit(
    services: Services,
    jr: journal_mod.Journal,
    package_id: str,
    version: StagedVersion,
    inventory: dict[str, Any],
) -> None:
    """Journal ready -> object into place -> catalog rows committed (under the commit lock),
    with the work that follows in the outbox."""
    jr.mark_ready(package_id)
    with services.session_scope() as session:  # seen by every host, before any file is stored
        installs.begin(session, package_id, str(jr.data["deposit_id"]))
    steps.reached("ready")
    rel = services.primary.install(jr.object_dir, package_id)
    steps.reached("installed")
    sizes = {e.content_path: e.size for e in version.entries}
    with services.session_scope() as session:
        installs.done(session, package_id)
        index_object(
            session,
            services.primary.object(rel),
            known_sizes=sizes,
            known_inventory=inventory,
        )
        queue_after_deposit(session, package_id)
        steps.reached("indexed")
    steps.reached("committed")


def queue_after_deposit(session: Session, package_id: str) -> None:
    """The work a new package needs once committed: its formats identified and the text of
    its public documents read, its manifests and files sealed, its copies made."""
    outbox.add(session, outbox.CHARACTERISE, package_id)
    outbox.add_for_new_version(session, package_id)


def _already_held(
    services: Services,
    jr: journal_mod.Journal,
    held: tuple[str, str],
    source: Path,
    depositor: str,
    bagit_version: str,
    registration: Registration | None,
) -> IngestResult:
    services.store.discard(jr.folder)
    deposit_id, package_id = held
    with services.session_scope() as session:
        record_events(
            session,
            [
                new_event(
                    "ingestion",
                    "warning",
                    f"{source.name} holds the same payload as deposit {deposit_id}; "
                    "nothing was stored twice",
                    links=[
                        Link("package", package_id),
                        Link("source", source.name),
                        Link("depositor", depositor),
                    ],
                    agent=AGENT,
                )
            ],
        )
        pkg = session.get(Package, package_id)
        dep = session.get(Deposit, deposit_id)
        assert pkg is not None and dep is not None
        return IngestResult(
            "already-held",
            package_id,
            deposit_id,
            pkg.object_path,
            dep.payload_files,
            dep.payload_bytes,
            bagit_version,
            registration=registration,
        )


def _record_refusal(
    services: Services, deposit_id: str, source: Path, depositor: str, findings: tuple[Finding, ...]
) -> None:
    codes = sorted({f.code for f in errors_in(findings)})
    with services.session_scope() as session:
        record_events(
            session,
            [
                new_event(
                    "ingestion",
                    "failure",
                    f"deposit refused ({', '.join(codes)}); {len(errors_in(findings))} "
                    "problem(s); nothing was stored",
                    links=[
                        Link("deposit", deposit_id),
                        Link("source", source.name),
                        Link("depositor", depositor),
                    ],
                    agent=AGENT,
                )
            ],
        )


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


UNIDENTIFIED = "unidentified: no PRONOM signature or extension matched"
#: Files fetched from a primary that is not local, to be identified, at a time...
FETCH_BATCH_FILES = 1000
#: ...and their bytes at most (a larger file goes alone).
FETCH_BATCH_BYTES = 1024 * 1024 * 1024
#: The basis recorded when a result is taken from a file with the same sha512.
CACHED = "digest cache"


@dataclass(frozen=True)
class IdentifyResult:
    package_id: str
    identified: int
    unidentified: int
    version: int | None  # the OCFL version that records the results, None if nothing to do
    formats: dict[str, int] = field(default_factory=dict)  # PUID -> file count

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "identified": self.identified,
            "unidentified": self.unidentified,
            "version": self.version,
            "formats": self.formats,
        }


def _pending_files(services: Services, package_id: str) -> list[tuple[int, str, str]]:
    with services.sessions() as session:
        return [
            (file_id, logical, content)
            for file_id, logical, content in session.execute(
                select(File.id, File.logical_path, File.content_path).where(
                    File.package_id == package_id,
                    File.role == "payload",
                    File.format_name.is_(None),
                )
            )
        ]


def _extension(path: str) -> str:
    """What FIDO falls back on when no signature matches: the lower-cased extension."""
    return os.path.splitext(path)[1].lower()


def _known_formats(services: Services, file_ids: list[int]) -> dict[int, Identification]:
    """Identifications already held for files with the same bytes (by sha512) and the same
    extension (FIDO's verdict depends on nothing else: the bytes, and the extension when no
    signature matches)."""
    out: dict[int, Identification] = {}
    with services.sessions() as session:
        for i in range(0, len(file_ids), 500):
            chunk = file_ids[i : i + 500]
            mine = {
                file_id: (digest, _extension(logical))
                for file_id, digest, logical in session.execute(
                    select(File.id, File.sha512, File.logical_path).where(File.id.in_(chunk))
                )
            }
            held: dict[tuple[str, str], tuple[str | None, str | None, str | None]] = {}
            for digest, logical, puid, mime, name in session.execute(
                select(
                    File.sha512, File.logical_path, File.puid, File.mime_type, File.format_name
                ).where(
                    File.sha512.in_({d for d, _ in mine.values()}),
                    File.format_name.is_not(None),
                )
            ):
                held.setdefault((digest, _extension(logical)), (puid, mime, name))
            for file_id, key in mine.items():
                if key in held:
                    puid, mime, name = held[key]
                    out[file_id] = Identification(
                        puid, mime, None if name == UNIDENTIFIED else name, CACHED
                    )
    return out


def identify_package(
    services: Services, package_ref: str, *, progress: Progress | None = None
) -> IdentifyResult:
    """Identify the formats of a package's payload files not yet identified.

    Results go to the catalog (PUID, MIME type and format name per file, one event per file)
    and into storage as a new OCFL version holding ``custos/formats.json`` and the updated
    ``custos/premis.xml``, so that a rebuilt catalog has them too.
    Raises :class:`NotFound` for an unknown package and :class:`IdentificationError` when
    the identifier cannot run (the package stays as it was).
    """
    with services.sessions() as session:
        package_id = resolve_package_id(session, package_ref)
        pkg = session.get(Package, package_id)
        assert pkg is not None
        rel = pkg.object_path
    pending = _pending_files(services, package_id)
    if not pending:
        return IdentifyResult(package_id, 0, 0, None)
    # The same bytes are never identified twice: results held for another file with the same
    # sha512 (and extension) are reused; only the others go to the identifier.
    known = _known_formats(services, [file_id for file_id, _, _ in pending])
    # Within the package too: one file per (bytes, extension) goes to the identifier.
    with services.sessions() as session:
        digests = {
            file_id: (sha512, size)
            for file_id, sha512, size in session.execute(
                select(File.id, File.sha512, File.size).where(
                    File.package_id == package_id, File.role == "payload"
                )
            )
        }
    first: dict[tuple[str, str], tuple[str, int]] = {}
    copies: list[tuple[str, str]] = []  # (file, the file with its bytes that is identified)
    for file_id, logical, content in pending:
        if file_id in known:
            continue
        sha512, size = digests[file_id]
        key = (sha512, _extension(logical))
        if key in first:
            copies.append((content, first[key][0]))
        else:
            first[key] = (content, size)
    found = _identify_stored(  # the long part, outside the lock
        services, services.primary.object(rel), list(first.values()), progress
    )
    if progress and (known or copies):
        progress(len(known) + len(copies))
    for content, same in copies:
        ident = found[same]
        found[content] = Identification(ident.puid, ident.mime_type, ident.format_name, CACHED)
    for file_id, _, content in pending:
        if file_id in known:
            found[content] = known[file_id]
    tool = tool_version()
    with services.commit_lock():
        # Another process may have identified some of these, or added a version, meanwhile.
        still = {file_id for file_id, _, _ in _pending_files(services, package_id)}
        pending = [p for p in pending if p[0] in still]
        if not pending:
            return IdentifyResult(package_id, 0, 0, None)
        return _record_identification(services, package_id, rel, pending, found, tool)


def _identify_stored(
    services: Services,
    obj: StoredObject,
    files: list[tuple[str, int]],
    progress: Progress | None,
) -> dict[str, Identification]:
    """Identify stored files ((content path, size) each); results by content path. The
    identifier reads files on this host: a local primary's own, or else copies fetched in
    batches of at most :data:`FETCH_BATCH_FILES` files and :data:`FETCH_BATCH_BYTES` bytes
    (one file at least), each batch's copies removed before the next is fetched."""
    batches: list[list[str]] = []
    if services.primary.is_local:
        batches.append([content for content, _ in files])
    else:
        batch: list[str] = []
        held = 0
        for content, size in files:
            if batch and (len(batch) >= FETCH_BATCH_FILES or held + size > FETCH_BATCH_BYTES):
                batches.append(batch)
                batch, held = [], 0
            batch.append(content)
            held += size
        if batch:
            batches.append(batch)
    out: dict[str, Identification] = {}
    for contents in batches:
        with obj.local_files(
            contents, lambda: journal_mod.scratch(services.store.staging, "identify-")
        ) as got:
            found = identify(
                list(got.values()), workers=services.settings.workers, progress=progress
            )
        out.update((content, found[got[content]]) for content in contents)
    return out


def _record_identification(
    services: Services,
    package_id: str,
    rel: str,
    pending: list[tuple[int, str, str]],
    found: dict[str, Identification],
    tool: str,
) -> IdentifyResult:
    """Write the results as the object's next version, then into the catalog."""
    obj = services.primary.object(rel)
    state = head_state(obj.inventory())
    formats: dict[str, dict[str, str | None]] = {}
    if FORMATS_JSON in state:
        formats = json.loads(obj.read_bytes(state[FORMATS_JSON]))
    old_events = parse_premis(obj.read_bytes(state[PREMIS_XML]))
    updates: list[dict[str, Any]] = []
    events: list[EventRecord] = []
    counts: dict[str, int] = {}
    for file_id, logical, content in pending:
        ident = found[content]
        name = ident.format_name or UNIDENTIFIED
        formats[logical] = {
            "puid": ident.puid,
            "mime_type": ident.mime_type,
            "format_name": name,
            "basis": ident.basis,
            "tool": tool,
        }
        updates.append(
            {"id": file_id, "puid": ident.puid, "mime_type": ident.mime_type, "format_name": name}
        )
        counts[ident.puid or "unidentified"] = counts.get(ident.puid or "unidentified", 0) + 1
        how = (
            "the same bytes were identified before"
            if ident.basis == CACHED
            else f"{ident.basis} match"
        )
        detail = (
            f"{ident.puid} {ident.mime_type or ''} ({how}, {tool})"
            if ident.puid
            else f"no PRONOM match ({how if ident.basis == CACHED else tool})"
        )
        events.append(
            new_event(
                "format identification",
                "success" if ident.puid else "warning",
                detail.replace("  ", " "),
                links=[Link("package", package_id), Link("file", logical)],
                agent=tool,
            )
        )
    created = clock.local_now()  # as the inventory records it
    message = f"Format identification of {len(pending)} files ({tool})"
    new = append_version(
        services.primary,
        rel,
        {
            FORMATS_JSON: _json(formats),
            PREMIS_XML: premis_xml([*old_events, *events]),
        },
        message=message,
        agent=AGENT,
        created=created,
    )
    steps.reached("version-installed")
    with services.session_scope() as session:
        session.execute(update(File), updates)
        catalog_version(session, package_id, new, message=message, agent=AGENT)
        record_events(session, events, package_id=package_id)
        run_index_hooks(session, package_id)  # formats are facets of the search index
        if services.settings.migration.after_identification:
            outbox.add(session, outbox.MIGRATE, package_id)
    steps.reached("version-committed")
    finish(services.store, new)
    unidentified = counts.get("unidentified", 0)
    return IdentifyResult(package_id, len(pending) - unidentified, unidentified, new.number, counts)


def pending_identification(services: Services) -> list[str]:
    """Packages with payload files whose format is not yet identified."""
    with services.sessions() as session:
        return list(
            session.execute(
                select(File.package_id)
                .where(File.role == "payload", File.format_name.is_(None))
                .distinct()
            ).scalars()
        )
