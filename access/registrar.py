"""Registrars: search every tier, change a tier, record and answer justice requests, read the
access log. Every metadata read of non-public material is logged, as the policy asks.

A tier change writes a new OCFL version holding the updated ``custos/access.json`` and
``custos/premis.xml`` (:func:`access.decisions.records.write_access`), then the catalog (access
rows, the version, a ``tier change`` event) and the public search index, in one transaction. A
pending review of the assignment it replaces is closed as ``superseded``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, cast

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from access.decisions.reads import opened_for, package_head, package_id_of
from access.decisions.records import links_of, read_access, what_of, write_access
from access.decisions.reviews import supersede_reviews
from access.decisions.rules import (
    Principal,
    access_event,
    access_policy,
    load_rules,
    may_see,
    must_log,
    record_reads,
    require_purpose,
)
from access.export.bundle import ExportResult, export
from access.export.zipstream import zip_stream
from access.keys.service import KEYED_TIERS
from access.paging import Listing, Page
from archive import clock
from archive.catalog.index import sealed_bag_info, sealed_names
from archive.catalog.queries import tier_recipients
from archive.catalog.tables import (
    Depositor,
    Event,
    File,
    JusticeRequest,
    Package,
)
from archive.config import Settings
from archive.crypt import DecryptingReader, encrypt_copy
from archive.custody import new_event, record_events
from archive.digest import writing
from archive.errors import InputRejected, NotFound, StorageError
from archive.findings import Finding
from archive.keyring import KeyRing
from archive.model import EventRecord, Link
from archive.services import Services
from archive.storage.primary import Primary
from archive.storage.replica import LocationUnavailable
from policies.access import Assignment, assignment_to_json, covers, default_assignment
from policies.errors import AccessRuleError
from policies.schema import AccessPolicy
from policies.vocabulary import is_tier

PROTECTED = "protected-identity"

AGENT = "Custos registrar service"


def _reject(code: str, message: str, where: str = "", hint: str = "") -> InputRejected:
    return InputRejected(message, [Finding(code, "error", message, where)], hint=hint)


# --- search ---------------------------------------------------------------------------------


def _protected_hits(
    session: Session, words: str, keyring: KeyRing, primary: Primary
) -> dict[str, str]:
    """The packages holding files of a tier whose key is open in ``keyring`` whose real file
    names or bag-info (both stored encrypted) hold ``words``, with the purpose the key is
    open for. Decrypted here, in memory, for this search only: no index of them is kept."""
    found: dict[str, str] = {}
    needle = words.casefold()
    for tier in KEYED_TIERS:
        opened = keyring.opened(tier)
        if opened is None:
            continue
        rows = session.execute(
            select(Package.id, Package.object_path)
            .where(
                Package.id.in_(select(File.package_id).where(File.sealed_tier == tier).distinct())
            )
            .order_by(Package.created_at, Package.id)
        ).all()
        for package_id, object_path in rows:
            if package_id in found:
                continue
            obj = primary.object(object_path)
            inventory = obj.inventory()
            names = sealed_names(obj, keyring, purpose=opened.purpose, inventory=inventory)
            info = sealed_bag_info(obj, keyring, purpose=opened.purpose, inventory=inventory)
            texts = [*names.values(), *(str(v) for v in (info or {}).values())]
            if any(needle in t.casefold() for t in texts):
                found[package_id] = opened.purpose
    return found


def search_all(
    session: Session,
    policy: AccessPolicy,
    reader: Principal,
    query: str,
    *,
    limit: int = 50,
    keyring: KeyRing | None = None,
    primary: Primary | None = None,
) -> list[dict[str, Any]]:
    """Packages of every tier whose title, depositor or file names hold ``query``; and, while
    a tier's key is open in ``keyring``, those whose protected files' real names or
    encrypted bag-info hold it (read from ``primary``).

    Returns the hits (with each package's tier), and records one access event per
    non-public package shown (the policy logs those reads) in the caller's transaction; a
    hit found through an open key is recorded under the purpose it is open for."""
    words = query.strip()
    if not words:
        raise _reject("SEARCH-QUERY", "the search query is empty", "q", "give words to find")
    like = f"%{words.replace('%', '').replace('_', '')}%"
    ids = list(
        session.execute(
            select(Package.id)
            .join(Depositor, Depositor.id == Package.depositor_id)
            .where(
                or_(
                    Package.title.ilike(like),
                    Depositor.name.ilike(like),
                    Package.id.in_(
                        select(File.package_id).where(
                            File.role == "payload", File.logical_path.ilike(like)
                        )
                    ),
                )
            )
            .order_by(Package.created_at, Package.id)
            .limit(limit)
        ).scalars()
    )
    opened: dict[str, str] = {}
    if keyring is not None and primary is not None and len(ids) < limit:
        opened = _protected_hits(session, words, keyring, primary)
        ids += [p for p in opened if p not in ids][: limit - len(ids)]
    hits, events = [], []
    for package_id in ids:
        head = package_head(session, package_id)
        assert head is not None
        rules = load_rules(session, package_id, head.depositor)
        ok, decisions = may_see(
            policy, rules, "", reader=reader, action="read-metadata", purpose=None
        )
        if not ok:
            continue
        tier = next((a.tier for a in rules.assignments if a.path == ""), "undeclared")
        hits.append(
            {
                "package_id": package_id,
                "title": head.title,
                "depositor": head.depositor,
                "created_at": head.created_at.isoformat(),
                "tier": tier,
                **({"found_in": "protected names or bag-info"} if package_id in opened else {}),
            }
        )
        if must_log(decisions) or package_id in opened:
            events.append(
                access_event(
                    reader,
                    package_id,
                    "package metadata shown in a registrar search"
                    + (
                        ", found in its encrypted names or bag-info" if package_id in opened else ""
                    ),
                    purpose=opened.get(package_id),
                    decisions=decisions,
                )
            )
    record_reads(session, events)
    return hits


# --- tier change ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierChange:
    package_id: str
    path: str
    tier: str
    sunset: date | None
    successor: str | None
    legal_basis: str
    version: int
    event: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "path": self.path,
            "tier": self.tier,
            "sunset": self.sunset.isoformat() if self.sunset else None,
            "successor": self.successor,
            "legal_basis": self.legal_basis,
            "version": self.version,
            "event": self.event,
        }


def change_tier(
    services: Services,
    reader: Principal,
    ref: str,
    *,
    path: str,
    tier: str,
    legal_basis: str,
    sunset: date | None = None,
    successor: str | None = None,
) -> TierChange:
    """Give ``path`` of the package (``""``: the package) the tier ``tier``.

    A non-public tier without ``sunset``/``successor`` takes the policy's defaults from
    today. Raises :class:`InputRejected` (no legal basis, unknown tier or path, an invalid
    assignment) and :class:`NotFound`."""
    policy = access_policy(services.settings)
    package_id = package_id_of(ref)
    basis = legal_basis.strip()
    if not basis:
        raise _reject(
            "TIER-LEGAL-BASIS",
            "a tier change needs its legal basis",
            "legal_basis",
            "state the law, order or agreement that the change rests on",
        )
    if not is_tier(tier):
        raise _reject(
            "TIER-UNKNOWN", f"unknown tier {tier!r}", "tier",
            "use public, restricted or protected-identity",
        )  # fmt: skip
    with services.sessions() as session:
        head = package_head(session, package_id)
        if head is None:
            raise NotFound(f"no package {package_id}", hint="search shows the packages held")
        payload = {
            lp.removeprefix("bag/"): digest
            for lp, digest in session.execute(
                select(File.logical_path, File.sha512).where(
                    File.package_id == package_id, File.role == "payload"
                )
            )
        }
    folders = {p.rsplit("/", i)[0] for p in payload for i in range(1, p.count("/") + 1)}
    if path and path not in payload and path not in folders:
        raise _reject(
            "TIER-UNKNOWN-PATH",
            "the path is neither a payload file nor a payload folder of this package",
            "path",
            "give '' for the package, or a path starting with data/",
        )
    today = clock.today()
    try:
        if tier == "public":
            assignment = Assignment(path, tier, None, None, basis)
        else:
            base = default_assignment(
                policy, depositor=head.depositor, tier=tier, deposited_on=today,
                legal_basis=basis, path=path,
            )  # fmt: skip
            given = sunset is not None or successor is not None
            assignment = Assignment(
                path,
                tier,
                sunset or base.sunset,
                successor or base.successor,  # type: ignore[arg-type]
                basis,
                f"set by registrar {reader.name} on {today.isoformat()}"
                if given
                else base.sunset_basis,
            )
    except AccessRuleError as exc:
        raise _reject("TIER-INVALID", exc.message, "tier", exc.hint) from exc
    with services.commit_lock():
        return _write_change(services, reader, head.object_path, package_id, assignment, payload)


def _write_change(
    services: Services,
    reader: Principal,
    rel: str,
    package_id: str,
    assignment: Assignment,
    payload: dict[str, str],
) -> TierChange:
    stored = read_access(services, rel)
    access = stored.access
    governing = [a for a in access["assignments"] if covers(a["path"], assignment.path)]
    old = max(governing, key=lambda a: len(a["path"]), default=None)
    if old and old["tier"] == PROTECTED and assignment.tier != PROTECTED:
        # Protected identities open only through a review two different registrars approve
        # (policies.sunset); a tier change by one registrar must not be a way round it.
        raise _reject(
            "TIER-PROTECTED-NEEDS-REVIEW",
            "protected-identity material opens only through a review that two different "
            "registrars approve; one registrar cannot lower its tier",
            "tier",
            "to open it before its sunset, keep the tier protected-identity and bring the "
            "sunset forward (this same request with tier protected-identity, sunset and "
            "successor), then run `custos policies apply`: the review that opens needs two "
            "different registrars' approvals (POST /registrar/reviews/{id}/approve)",
        )
    access["assignments"] = sorted(
        [a for a in access["assignments"] if a["path"] != assignment.path]
        + [assignment_to_json(assignment)],
        key=lambda a: a["path"],
    )
    today = clock.today()
    superseded = supersede_reviews(access, assignment.path, on=today)
    policy = access_policy(services.settings)
    access["policy"] = policy.label
    what = what_of(assignment.path)
    until = (
        f" until {assignment.sunset.isoformat()}, then {assignment.successor}"
        if assignment.sunset
        else ""
    )
    ended = "".join(f"; review {r} of the assignment replaced was closed" for r in superseded)
    links = links_of(package_id, assignment.path, payload)
    event = new_event(
        "tier change",
        "success",
        f"{what}: {old['tier'] if old else 'undeclared'} -> {assignment.tier}{until}, by "
        f"{reader.agent} ({policy.label}); legal basis: {assignment.legal_basis}{ended}",
        links=links,
        agent=reader.agent,
    )
    number = write_access(
        services,
        package_id,
        stored,
        access,
        [event],
        message=f"Tier change by {reader.agent}",
        agent=AGENT,
    )
    return TierChange(
        package_id,
        assignment.path,
        assignment.tier,
        assignment.sunset,
        assignment.successor,
        assignment.legal_basis,
        number,
        event.uuid,
    )


# --- justice requests -----------------------------------------------------------------------


def _request_dict(r: JusticeRequest) -> dict[str, Any]:
    return {
        "request_id": r.id,
        "received_at": r.received_at.isoformat(),
        "recorded_by": r.recorded_by,
        "requester": r.requester,
        "reference": r.reference,
        "purpose": r.purpose,
        "package_id": r.package_id,
        "paths": json.loads(r.paths),
        "state": r.state,
        "answered_at": r.answered_at.isoformat() if r.answered_at else None,
        "answered_by": r.answered_by,
        "export_id": r.export_id,
        "bundle": r.bundle,
    }


def record_request(
    session: Session,
    policy: AccessPolicy,
    reader: Principal,
    *,
    requester: str,
    reference: str,
    purpose: str,
    package: str,
    paths: list[str],
) -> dict[str, Any]:
    """Record a request from a justice body. Raises :class:`InputRejected`, NotFound."""
    problems, hints = [], []
    if not requester.strip():
        problems.append(Finding("REQUEST-REQUESTER", "error", "the requester is not named"))
        hints.append("name the justice body that asks (requester)")
    if not reference.strip():
        problems.append(Finding("REQUEST-REFERENCE", "error", "the request's reference is missing"))
        hints.append("give the reference the request bears (reference)")
    try:
        purpose = require_purpose(policy, purpose)
    except InputRejected as refused:  # reported with the others: every problem at once
        problems.extend(refused.findings)
        hints.append(refused.hint)
    if problems:
        raise InputRejected("request not recorded", problems, hint="; ".join(hints))
    package_id = package_id_of(package)
    if package_head(session, package_id) is None:
        raise NotFound(
            f"no package {package_id}", hint="GET /registrar/search?q= finds the packages held"
        )
    row = JusticeRequest(
        id=str(uuid.uuid4()),
        received_at=clock.now(),
        recorded_by=reader.name,
        requester=requester.strip(),
        reference=reference.strip(),
        purpose=purpose,
        package_id=package_id,
        paths=json.dumps(paths),
        state="open",
    )
    session.add(row)
    session.flush()
    return _request_dict(row)


def list_requests(session: Session, page: Page) -> Listing:
    """The requests recorded, oldest first: one page of them, with their total."""
    total = session.execute(select(func.count()).select_from(JusticeRequest)).scalar_one()
    rows = session.execute(
        select(JusticeRequest)
        .order_by(JusticeRequest.received_at, JusticeRequest.id)
        .offset(page.offset)
        .limit(page.limit)
    ).scalars()
    return Listing.counted(page, [_request_dict(r) for r in rows], total)


#: Where the court bundles that answered justice requests are kept: in the primary copy
#: (outside every object, as OCFL 1.1 section 4.1 allows), so that every host can hand
#: them out. One folder per answer: ``<prefix>/<request id>/<answer>/``.
EXPORTS = "extensions/custos-exports"


def answer_request(services: Services, reader: Principal, request_id: str) -> dict[str, Any]:
    """Answer a request with a court bundle (:func:`access.export.bundle.export`) of the
    files asked for (default: every file) that the access policy lets ``reader`` read for the
    request's purpose, whatever their tier. The bundle is made in this host's scratch folder,
    then stored in the primary copy under ``extensions/custos-exports/<request id>/`` (a new
    folder for each answer: an answer cut short leaves files no request names), where any
    host finds it. Raises what the export raises, NotFound, and StorageError."""
    with services.sessions() as session:
        row = _request(session, request_id)
        if row.state != "open":
            raise _reject(
                "REQUEST-ANSWERED",
                "this request was answered already",
                "request_id",
                "download its bundle (GET /registrar/requests/{id}/bundle); a further request "
                "from the justice body is recorded as a new one (POST /registrar/requests)",
            )
        paths = json.loads(row.paths)
    answer = uuid.uuid4().hex
    prefix = f"{EXPORTS}/{row.id}/{answer}"
    scratch = services.store.staging / f"bundle-{answer}"
    try:
        result: ExportResult = export(
            services,
            row.package_id,
            paths,
            to=scratch,
            requester=f"{row.requester} (ref. {row.reference})",
            purpose=row.purpose,
            releaser=reader,
        )
        if result.sealed:
            _seal_bundle(services, scratch, result.sealed)
        services.primary.put_folder(prefix, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with services.session_scope() as session:
        session.execute(
            update(JusticeRequest)
            .where(JusticeRequest.id == request_id)
            .values(
                state="answered",
                answered_at=clock.now(),
                answered_by=reader.name,
                export_id=result.export_id,
                bundle=prefix,
            )
        )
        answered = _request_dict(_request(session, request_id))
    return {**answered, "export": {**result.as_dict(), "bundle": prefix}}


#: Beside a stored bundle (never in its zip): the files of it kept encrypted, with their tier
#: and plain size (``{"files": {path: {"tier": …, "size": …}}}``).
SEALED_BUNDLE = ".custos-sealed.json"


def _seal_bundle(services: Services, folder: Path, sealed: dict[str, str]) -> None:
    """Encrypt, in the bundle made in ``folder``, each file released from an encrypted copy,
    to its tier's recipients: the archive's own copy of a bundle keeps protected material as
    the archive keeps it. The bundle's manifests still name the plain bytes, which the
    download decrypts while the tier's key is open."""
    listed: dict[str, dict[str, Any]] = {}
    with services.sessions() as session:
        recipients = {t: tier_recipients(session, t) for t in set(sealed.values())}
    for rel, tier in sorted(sealed.items()):
        if not recipients[tier]:
            continue  # the tier's key was retired without a successor: nothing to encrypt to
        path = folder / rel
        sealing = path.with_name(path.name + ".custos-sealing")
        with open(path, "rb") as src, writing(sealing), open(sealing, "xb") as dst:
            done = encrypt_copy(src, dst, recipients[tier])
        with writing(path):
            os.replace(sealing, path)
        listed[rel] = {"tier": tier, "size": done.plain.size}
    (folder / SEALED_BUNDLE).write_text(json.dumps({"files": listed}, indent=1) + "\n")


def _legacy_folder(settings: Settings, request_id: str) -> Path:
    """Where a bundle answering a request was kept before bundles moved to the primary copy:
    in the answering host's data folder."""
    return settings.data_dir.resolve() / "exports" / request_id


def _request(session: Session, request_id: str) -> JusticeRequest:
    row = session.get(JusticeRequest, request_id) if len(request_id) <= 36 else None
    if row is None:
        raise NotFound(
            f"no justice request {request_id!r}",
            hint="GET /registrar/requests lists the requests recorded, with their ids",
        )
    return row


@dataclass(frozen=True, slots=True)
class BundleDownload:
    """The court bundle of an answered request, ready to send: its files (paths relative to
    the bundle, POSIX, with their sizes), how to open each, and the ``access`` event that
    records the download."""

    request_id: str
    package_id: str
    export_id: str
    files: tuple[tuple[str, int], ...]
    opener: Callable[[str], BinaryIO]
    event: EventRecord

    @property
    def name(self) -> str:
        """The bundle's name outside the archive: the top folder of its zip, and the zip's
        name with ``.zip``."""
        return f"custos-bundle-{self.export_id}"

    def chunks(self) -> Iterator[bytes]:
        """The bundle as a zip whose one top folder is :attr:`name`, streamed."""
        return zip_stream(
            ((rel, functools.partial(self.opener, rel), size) for rel, size in self.files),
            top=self.name,
        )


def bundle_of(
    session: Session, services: Services, reader: Principal, request_id: str
) -> BundleDownload:
    """The court bundle a request was answered with, for ``reader`` to download, and the
    ``access`` event naming them, the request and the export (never a path). The caller
    records the event.

    Raises :class:`NotFound` for an unknown request or one not answered yet, and
    :class:`StorageError` when its bundle is no longer whole (its files gone, or holding
    something other than plain files and folders)."""
    row = _request(session, request_id)
    if row.state != "answered" or not row.export_id or not row.bundle:
        raise NotFound(
            f"justice request {request_id!r} is not answered yet: it has no bundle",
            hint="answer it first (POST /registrar/requests/{id}/answer), then download its bundle",
        )
    stored = row.bundle.startswith(f"{EXPORTS}/")
    where = (
        row.bundle if stored else f"exports/{row.id} of the data folder of the host that made it"
    )
    lost = StorageError(
        f"the court bundle {row.export_id} of justice request {row.id} is no longer whole in "
        "the archive",
        hint=f"restore {where} from a backup; the export event in the custody log names the "
        "files it held",
    )
    opener: Callable[[str], BinaryIO]
    if stored:
        primary = services.primary
        prefix = f"{row.bundle}/"
        files: list[tuple[str, int]] = []
        sealed: dict[str, Any] = {}
        try:
            for key in sorted(primary.location.iter_keys(prefix)):
                info = primary.location.stat(key)
                if info is None:
                    raise lost
                if key == prefix + SEALED_BUNDLE:
                    sealed = json.loads(primary.read_bytes(key))["files"]
                    continue
                files.append((key[len(prefix) :], info.size))
        except LocationUnavailable:
            raise
        except StorageError as exc:  # a link or a special file: nothing of it leaves
            raise lost from exc
        # Files kept encrypted leave in clear only while their tier's key is open for the
        # request's purpose: checked before anything is sent.
        keys = {
            rel: opened_for(services.keyring, str(entry["tier"]), row.purpose)
            for rel, entry in sealed.items()
        }
        files = [(rel, int(sealed[rel]["size"]) if rel in sealed else n) for rel, n in files]

        def opener(rel: str) -> BinaryIO:
            reader = primary.open(prefix + rel)
            if rel in keys:
                return cast("BinaryIO", DecryptingReader(reader, keys[rel]))
            return cast("BinaryIO", reader)

    else:
        folder = _legacy_folder(services.settings, row.id)
        if folder.is_symlink() or not folder.is_dir():
            raise lost
        files = []
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise lost  # nothing but the bundle's own files leaves the server
            if path.is_file():
                files.append((path.relative_to(folder).as_posix(), path.stat().st_size))

        def opener(rel: str) -> BinaryIO:
            return open(folder / rel, "rb")

    if "bagit.txt" not in {rel for rel, _ in files}:
        raise lost
    event = new_event(
        "access",
        "success",
        f"court bundle {row.export_id} of justice request {row.id} downloaded as a zip; by "
        f"{reader.agent}; purpose: {row.purpose}",
        links=[Link("package", row.package_id)],
        agent=reader.agent,
    )
    record_events(session, [event], package_id=row.package_id)
    return BundleDownload(row.id, row.package_id, row.export_id, tuple(files), opener, event)


def access_log(session: Session, page: Page) -> Listing:
    """Access, export, tier-change and review events, newest first: one page of them. No
    total (counting them would read the whole custody log): whether more follow is known
    by reading one event past the page."""
    rows = list(
        session.execute(
            select(Event)
            .where(Event.type.in_(("access", "export", "tier change", "review")))
            .order_by(Event.id.desc())
            .offset(page.offset)
            .limit(page.limit + 1)
        ).scalars()
    )
    more = len(rows) > page.limit
    items = [
        {
            "uuid": e.uuid,
            "type": e.type,
            "occurred_at": e.occurred_at.isoformat(),
            "agent": e.agent,
            "outcome": e.outcome,
            "detail": e.detail,
            "package_id": e.package_id,
        }
        for e in rows[: page.limit]
    ]
    return Listing(page, items, None, more)
