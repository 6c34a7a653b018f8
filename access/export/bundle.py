"""``custos export``: a court bundle of chosen files, each with its own proof, naming nothing
that was withheld.

What may leave is decided by the access decision (:func:`access.decisions.rules.may_see`, action
``read-content``), never by a check of its own: ``custos export`` releases what anyone may read
(the ``anonymous`` role, purpose ``public``); a registrar answering a justice body's request
(:func:`access.registrar.answer_request`) releases, besides, what the policy lets that
registrar read for the request's purpose. The purpose must be one the policy declares.

The bundle (layout in :mod:`archive.proofs.bundle`) holds the released files and, for each, its
own RFC 4998 evidence records, derived from its version's file seal
(:mod:`archive.proofs.fileseal`): a record proves that one file's bytes and reveals only the
hash of that file's secret salt and hashes over other files' salts. With them: the tokens, the
TSA certificates, the trust anchors, the custody history of the released files and a
``VERIFY.txt`` that walks an outside expert through every check with ``sha512sum``, ``xxd`` and
``openssl`` alone. Nothing in it names a file that was withheld: no path, digest, salt or
count, in the index, ``VERIFY.txt``, ``bag-info.txt``, the proofs' file names or the history
(an event is kept only when every file it links was released; an event about the whole
package only when it is an ingestion or a seal, and anyone may read the package's metadata;
the package's id and depositor likewise). When every payload file is released, the deposit's
sealed bag manifests and their records come too (the proof the
archive has always given).

Files are checked against their sealed digests as they are copied (each byte read once): a
stored file that no longer matches refuses the export. The bundle is built beside its target
and renamed into place; the export is a custody event, recorded in the bundle's own history
too; it links non-public files by digest, never by path (paths may name people).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from access.decisions.reads import opened_for, package_head
from access.decisions.rules import (
    ANONYMOUS,
    Principal,
    Rules,
    access_policy,
    may_see,
    require_purpose,
    rules_from_rows,
)
from archive import clock
from archive.catalog.index import sealed_files
from archive.catalog.queries import access_rows, package_events, resolve_package_id
from archive.catalog.tables import Package, Seal
from archive.crypt import CryptError, DecryptingReader
from archive.custody import new_event, premis_xml, record_events
from archive.digest import copy_with_digests, digest_file
from archive.errors import ConfigError, InputRejected, ProofError, StorageError
from archive.findings import Finding
from archive.model import AccessRow, EventRecord, Link
from archive.proofs import fileseal, merkle
from archive.proofs.bundle import BUNDLE_FORMAT, INDEX
from archive.proofs.evidence import LeafRecords, RecordView, parse_record
from archive.proofs.renew import current_only
from archive.proofs.seal import EXTENSION
from archive.proofs.timestamp import signer_certificate, token_from_der
from archive.proofs.verify import trust_anchors
from archive.services import Services
from archive.storage import ocfl
from archive.storage.primary import StoredObject
from policies.access import Assignment, effective
from policies.errors import AccessRuleError
from policies.vocabulary import is_tier

AGENT = "Custos export"
_MANIFESTS = ("manifest-sha512.txt", "manifest-sha256.txt")
#: Events about the whole package that a bundle may carry (when its metadata may be read):
#: they name the deposit and the seals, never a file, a tier or a count of files.
_WHOLE_PACKAGE_EVENTS = frozenset({"ingestion", "timestamp"})
#: Links that name the package rather than a file.
_PACKAGE_LINKS = frozenset({"package", "deposit", "depositor", "source"})
#: The purpose under which anyone may read public material (the reading room's).
PUBLIC_PURPOSE = "public"
#: Bytes per read when a manifest or an evidence record is copied from the primary.
COPY_CHUNK = 1024 * 1024


@dataclass
class ExportResult:
    bundle: Path
    export_id: str
    package_id: str
    files: list[str] = field(default_factory=list)
    left_out: int = 0  # files that may not be released (only when no path was named)
    manifests: int = 0
    records: int = 0
    payload_bytes: int = 0
    #: Files of the bundle (paths inside it, ``data/files/…``) released from copies stored
    #: encrypted, by tier: the archive keeps its own copy of the bundle encrypted for them.
    sealed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "export_id": self.export_id,
            "package_id": self.package_id,
            "files": self.files,
            "left_out_not_public": self.left_out,  # the name scripts know: not releasable
            "manifests": self.manifests,
            "evidence_records": self.records,
            "payload_bytes": self.payload_bytes,
        }


def _refuse(message: str, findings: list[Finding], hint: str = "") -> InputRejected:
    return InputRejected(message, findings, hint=hint)


def _rules(rows: Iterable[AccessRow]) -> list[Assignment]:
    """The catalog's tier assignments as the policy's values (validated again on the way)."""
    return [
        Assignment(
            r.path,
            r.tier,
            r.sunset,
            r.successor if r.successor and is_tier(r.successor) else None,
            r.legal_basis,
            r.sunset_basis,
        )
        for r in rows
        if r.tier and is_tier(r.tier)
    ]


@dataclass(frozen=True, slots=True)
class _Decision:
    """What the access decision lets this bundle carry."""

    why_not: Callable[[str], str | None]  # None: the file may be released
    package_known: bool  # anyone may read the package's own metadata (id, depositor, history)


def _decision(
    services: Services, rules: Rules, purpose: str, releaser: Principal | None
) -> _Decision:
    """The access decision (:func:`access.decisions.rules.may_see`) for everyone (``anonymous``,
    purpose ``public``), and for ``releaser`` reading for ``purpose`` when there is one:
    a file may be released if either may read it."""
    policy = access_policy(services.settings)
    readers = [(ANONYMOUS, PUBLIC_PURPOSE)]
    if releaser is not None:
        readers.append((releaser, purpose))

    def why_not(path: str) -> str | None:
        reason = ""
        for reader, stated in readers:
            ok, decisions = may_see(
                policy, rules, path, reader=reader, action="read-content", purpose=stated
            )
            if ok:
                return None
            reason = decisions[-1].explanation
        return reason

    # The package itself (its id, depositor, the events about it as a whole) is named only
    # when anyone may read its metadata: a registrar may read a closed package's metadata,
    # but releasing files from it does not release what the package is.
    known = may_see(
        policy, rules, "", reader=ANONYMOUS, action="read-metadata", purpose=PUBLIC_PURPOSE
    )[0]
    return _Decision(why_not, known)


def export(
    services: Services,
    package_ref: str,
    paths: list[str],
    *,
    to: Path,
    requester: str,
    purpose: str,
    progress: Callable[[int], None] | None = None,
    releaser: Principal | None = None,
) -> ExportResult:
    """Write a court bundle of ``paths`` (default: every file that may be released) to ``to``.

    Without ``releaser``, only what anyone may read is released; with it (a registrar
    answering a request), also what the access policy lets ``releaser`` read for ``purpose``.

    Raises :class:`InputRejected` (bad request, purpose the policy does not declare, file that
    may not be released or unknown, file not yet sealed on its own, target not empty),
    :class:`NotFound` for an unknown package, and :class:`StorageError` when a stored file no
    longer matches its sealed digest."""
    requester = requester.strip()
    problems = []
    if not requester:
        problems.append(Finding("EXPORT-REQUESTER", "error", "the requester is not named"))
    if not purpose.strip():
        problems.append(Finding("EXPORT-PURPOSE", "error", "the purpose is not stated"))
    to = to.absolute()
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        problems.append(
            Finding("EXPORT-TARGET", "error", "exists and is not an empty folder", str(to))
        )
    if problems:
        raise _refuse(
            "export refused: the request is incomplete",
            problems,
            hint="name the requester (--requester), state a purpose the access policy "
            "declares (--purpose), and give a new or empty folder (--to)",
        )
    purpose = require_purpose(access_policy(services.settings), purpose)

    with services.sessions() as session:
        package_id = resolve_package_id(session, package_ref)
        pkg = session.get(Package, package_id)
        head = package_head(session, package_id)
        assert pkg is not None and head is not None
        rows = access_rows(session, package_id)
        events = package_events(session, package_id)
        seals = session.execute(
            select(Seal.subject_path, Seal.record_path).where(Seal.package_id == package_id)
        ).all()
    try:
        assignments = _rules(rows)
        rules = rules_from_rows(package_id, head.depositor, rows)
    except AccessRuleError as exc:
        raise ConfigError(
            f"the catalog's access records of {package_id} are invalid: {exc}",
            hint="put the package's custos/access.json right with a tier change, then "
            "rebuild the catalog (`custos catalog rebuild`)",
        ) from exc
    decision = _decision(services, rules, purpose, releaser)
    stored = services.primary.object(pkg.object_path)
    inventory = stored.inventory()
    state = ocfl.head_state(inventory)
    payload = {
        logical.removeprefix("bag/"): content
        for logical, content in state.items()
        if logical.startswith("bag/data/")
    }
    chosen = _choose(payload, paths, decision.why_not, public_only=releaser is None)
    left_out = 0 if paths else len(payload) - len(chosen)
    digest_of = {p: d for d, ps in inventory["manifest"].items() for p in ps}
    # Copies stored encrypted are released in clear, decrypted with their tier's key, which
    # must be open in this process for the purpose of the bundle: checked before anything
    # is written.
    sealed = sealed_files(stored, inventory)
    keys = {
        payload[p]: opened_for(services.keyring, str(sealed[payload[p]]["tier"]), purpose)
        for p in chosen
        if payload[p] in sealed
    }
    closed = [p for p in chosen if _tier(p, assignments) != "public"]

    records_of: dict[str, list[str]] = {}
    for subject, record in seals:
        records_of.setdefault(subject, []).append(record)
    file_seals = _file_seals(chosen, payload, records_of)
    # The deposit's bag manifests prove the files too, when they name nothing withheld.
    whole = set(chosen) == set(payload) and all(payload[p] == f"v1/content/bag/{p}" for p in chosen)
    manifests = [
        f"v1/content/bag/{m}"
        for m in _MANIFESTS
        if whole
        and f"bag/{m}" in state
        and f"v1/content/bag/{m}" in records_of
        and f"v1/content/bag/{m}" not in sealed  # encrypted: the bag holds protected files
    ]

    export_id = str(uuid.uuid4())
    result = ExportResult(to, export_id, package_id)
    work = to.parent / f".custos-export-{export_id}"
    work.mkdir(parents=True)
    try:
        known: dict[Path, tuple[dict[str, str], int]] = {}
        index = _write(
            services, work, stored, chosen, payload, digest_of, file_seals, manifests,
            records_of, result, progress, known, _Sealed(sealed, keys),
        )  # fmt: skip
        released = (
            f", released by {releaser.agent} under {access_policy(services.settings).label}"
            f" ({len(closed)} of them not public)"
            if releaser is not None
            else ""
        )
        event = new_event(
            "export",
            "success",
            f"court bundle {export_id} for {requester} (purpose: {purpose}): "
            f"{len(chosen)} file(s){released}, each with its own proof; "
            f"{result.records} evidence record(s)",
            links=[
                Link("package", package_id),
                *(
                    Link("file", f"sha512:{digest_of[payload[p]]}", "exported")
                    if p in closed
                    else Link("file", f"bag/{p}", "exported")
                    for p in chosen
                ),
            ],
            agent=releaser.agent if releaser is not None else AGENT,
            at=clock.now(),
        )
        history = _history(
            [*events, event], chosen, payload, digest_of, package_known=decision.package_known
        )
        custody = work / "data" / "custody"
        custody.mkdir(parents=True)
        (custody / "premis.xml").write_bytes(premis_xml(history))
        for f in index["files"]:  # so that the recipient knows how to keep each file
            f["tier"] = _tier(f["original_path"], assignments)
        index.update(
            {
                "export_id": export_id,
                "requester": requester,
                "purpose": purpose,
                "exported_at": event.occurred_at.isoformat(),
                "custody": "custody/premis.xml",
            }
        )
        if decision.package_known:
            index["package_id"] = package_id
        # One line: the index of a large bundle is read by programs (C-encoded, ~8x faster).
        (work / INDEX).write_bytes((json.dumps(index, sort_keys=True) + "\n").encode())
        (work / "data" / "VERIFY.txt").write_text(_verify_text(index), encoding="utf-8")
        _bag_it(
            work,
            known,
            package_id if decision.package_known else None,
            export_id,
            requester,
            purpose,
            event.occurred_at,
        )
        if to.exists():
            to.rmdir()
        work.rename(to)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        with services.session_scope() as session:
            record_events(session, [event], package_id=package_id)
    except BaseException:
        shutil.rmtree(to, ignore_errors=True)  # no bundle leaves without its event
        raise
    result.files = chosen
    result.left_out = left_out
    return result


def _tier(path: str, assignments: list[Assignment]) -> str:
    a = effective(path, assignments)
    return a.tier if a is not None else "undeclared"


def _file_seals(
    chosen: list[str], payload: dict[str, str], records_of: dict[str, list[str]]
) -> dict[str, list[str]]:
    """For each version holding a chosen file, its file seals (subjects) that have records.

    Raises :class:`InputRejected` when a chosen file's version has none yet."""
    out: dict[str, list[str]] = {}
    for p in chosen:
        version = payload[p].split("/", 1)[0]
        if version not in out:
            out[version] = sorted(
                s for s in records_of if fileseal.is_subject(s) and s.startswith(f"{version}/")
            )
    unsealed = sorted(v for v, subjects in out.items() if not subjects)
    if unsealed:
        raise _refuse(
            "export refused: the files asked for are not yet sealed each on its own",
            [
                Finding("EXPORT-NOT-SEALED", "error", "its files await their own seal", v)
                for v in unsealed
            ],
            hint="run `custos seal files` (or `custos seal`), then export again",
        )
    return out


def _history(
    events: list[EventRecord],
    chosen: list[str],
    payload: dict[str, str],
    digest_of: dict[str, str],
    *,
    package_known: bool,
) -> list[EventRecord]:
    """The custody history a bundle may carry: events whose every file link names a released
    file; events about the whole package only of the kinds that name no file, tier or count
    (and only when the package may be known); links to the package dropped otherwise."""
    released = set()
    for p in chosen:
        released |= {f"bag/{p}", payload[p], f"sha512:{digest_of[payload[p]]}"}
    kept = []
    for e in events:
        files = [lk for lk in e.links if lk.object_type == "file"]
        others = [lk for lk in e.links if lk.object_type != "file"]
        if any(lk.object_id not in released for lk in files):
            continue
        if any(lk.object_type not in _PACKAGE_LINKS for lk in others):
            continue  # users, custody-log entries: not about this package's files
        if not files and (not package_known or e.type not in _WHOLE_PACKAGE_EVENTS):
            continue
        if not package_known:
            e = EventRecord(e.uuid, e.type, e.occurred_at, e.agent, e.outcome, e.detail,
                            tuple(files))  # fmt: skip
        kept.append(e)
    return kept


def _choose(
    payload: dict[str, str],
    paths: list[str],
    allowed: Callable[[str], str | None],
    *,
    public_only: bool,
) -> list[str]:
    if not paths:
        chosen = [p for p in sorted(payload) if allowed(p) is None]
        if not chosen:
            raise _refuse(
                "export refused: the package holds no file that may be released",
                [Finding("EXPORT-NOTHING", "error", "no payload file may be released")],
                hint="custos export releases what anyone may read; a registrar answering a "
                "request releases what the access policy allows for its purpose"
                if public_only
                else "the access policy allows none of its files for this purpose: check "
                "the request's purpose and the files' consent",
            )
        return chosen
    findings = []
    chosen = []
    for raw in paths:
        path = raw if raw.startswith("data/") else f"data/{raw}"
        if path not in payload:
            findings.append(Finding("EXPORT-NO-SUCH-FILE", "error", "no such payload file", raw))
            continue
        why = allowed(path)
        if why:
            findings.append(
                Finding(
                    "EXPORT-NOT-PUBLIC" if public_only else "EXPORT-NOT-RELEASABLE",
                    "error",
                    f"{why}: custos export releases what anyone may read; a registrar answers "
                    "requests for other files"
                    if public_only
                    else f"may not be released for this request: {why}",
                    raw,
                )
            )
            continue
        if path not in chosen:
            chosen.append(path)
    if findings:
        codes = {f.code for f in findings}
        hints = []
        if "EXPORT-NO-SUCH-FILE" in codes:
            hints.append("give payload paths as `custos show PACKAGE` lists them (data/…)")
        if "EXPORT-NOT-PUBLIC" in codes:
            hints.append(
                "name only files anyone may read, or none to export all of them; a registrar "
                "answers requests for other files (POST /registrar/requests)"
            )
        if "EXPORT-NOT-RELEASABLE" in codes:
            hints.append(
                "leave these files out of the request, or record a new request for a purpose "
                "that the access policy and the files' recorded consent allow them for; a "
                "request naming no file releases every file that may be released"
            )
        raise _refuse("export refused", findings, hint="; ".join(hints))
    return chosen


def _write(
    services: Services,
    work: Path,
    stored: StoredObject,
    chosen: list[str],
    payload: dict[str, str],
    digest_of: dict[str, str],
    file_seals: dict[str, list[str]],
    manifests: list[str],
    records_of: dict[str, list[str]],
    result: ExportResult,
    progress: Callable[[int], None] | None,
    known: dict[Path, tuple[dict[str, str], int]],
    sealed: _Sealed,
) -> dict[str, Any]:
    """Write the files and their proofs under ``work/data``; return the bundle's index.
    ``known`` gets the digests of what was written here as it was (so that the bag's
    manifests need not read it again)."""
    data = work / "data"
    anchors_pem = trust_anchors(services)
    tokens: dict[str, dict[str, Any]] = {}
    certs: dict[str, str] = {}
    # Each version's file seals, loaded once: the chosen files' paths in their trees, and each
    # current record of the root ready to be extended down to a file (its tokens are the files').
    trees: dict[
        str, tuple[fileseal.FileSeal, dict[str, Any], list[tuple[str, LeafRecords, bytes]]]
    ] = {}
    for version, subjects in file_seals.items():
        contents = [payload[p] for p in chosen if payload[p].startswith(f"{version}/")]
        for subject in subjects:
            seal = fileseal.load(stored.read_bytes(fileseal.sidecar_path(subject, EXTENSION)))
            views = [(r, parse_record(stored.read_bytes(r))) for r in records_of[subject]]
            current = []
            for i in current_only(views):
                leaf = LeafRecords(stored.read_bytes(views[i][0]), seal.root)
                _tokens(leaf.view, data, tokens, certs)
                imprint = token_from_der(leaf.view.chains[0][0].token).imprint
                current.append((views[i][0], leaf, imprint))
            trees[subject] = (seal, seal.paths(contents), current)
    files = []
    for path in chosen:
        content = payload[path]
        rel = path.removeprefix("data/")
        target = data / "files" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        expected = digest_of[content]
        with stored.open(content) as src:  # streamed, read once
            if content in sealed.keys:
                expected = str(sealed.files[content]["sha512"])
                try:
                    with DecryptingReader(src, sealed.keys[content]) as plain:
                        copied = copy_with_digests(plain, target, ("sha512", "sha256", "sha384"))
                except CryptError as exc:
                    raise StorageError(
                        f"{path} of {result.package_id} in storage does not decrypt ({exc}); "
                        "nothing was exported",
                        hint="run `custos verify` on the package and repair the file from a "
                        "replica",
                    ) from None
            else:
                copied = copy_with_digests(src, target, ("sha512", "sha256", "sha384"))
        if copied.digests["sha512"] != expected:
            raise StorageError(
                f"{path} of {result.package_id} in storage no longer matches its sealed "
                "digest; nothing was exported",
                hint="run `custos verify` on the package and repair the file from a replica",
            )
        result.payload_bytes += copied.size
        known[target] = (copied.digests, copied.size)
        if content in sealed.keys:
            result.sealed[f"data/files/{rel}"] = str(sealed.files[content]["tier"])
        records = []
        chains = []
        version = content.split("/", 1)[0]
        for subject in file_seals[version]:
            seal, paths, current = trees[subject]
            for record_path, leaf, imprint in current:
                # No bundle leaves with a proof that does not hold: the file's own digest
                # must lead, through its path, to what the token covers.
                full = leaf.path(paths[content])
                actual = bytes.fromhex(copied.digests[seal.algorithm])
                try:
                    holds = merkle.root_of(seal.algorithm, actual, full) == imprint
                except ValueError:
                    holds = False
                if not holds:
                    raise ProofError(
                        f"{path} of {result.package_id}: its file seal ({subject}) does not "
                        "lead from its bytes to the timestamp; nothing was exported",
                        hint="run `custos verify` on the package, naming the file",
                    )
                suffix = record_path.removeprefix(f"{EXTENSION}/{subject}")  # .local-3.ers
                name = f"proofs/files/{rel}{suffix}"
                (data / name).parent.mkdir(parents=True, exist_ok=True)
                der = leaf.record(paths[content])
                (data / name).write_bytes(der)
                known[data / name] = (
                    {a: hashlib.new(a, der).hexdigest() for a in ("sha512", "sha256")},
                    len(der),
                )
                records.append(name)
                [[first, *later]] = _chain_info(leaf.view)
                tree = [[v.hex() for v in partial] for partial in full]
                chains.append([[{**first, "tree": tree}, *later]])
                result.records += 1
        entry = {
            "path": f"files/{rel}",
            "original_path": path,
            "sha512": copied.digests["sha512"],
            "sha256": copied.digests["sha256"],
            "records": records,
            "chains": chains,
        }
        if manifests:
            entry.update({"manifest": f"manifests/bag/{_MANIFESTS[0]}", "entry": path})
        files.append(entry)
        if progress:
            progress(copied.size)
    listed = []
    for subject in manifests:
        rel = subject.removeprefix("v1/content/")  # bag/manifest-….txt
        target = data / "manifests" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy(stored, subject, target)
        views = [(r, parse_record(stored.read_bytes(r))) for r in records_of[subject]]
        newest = [views[i] for i in current_only(views)]
        entries = []
        for record, view in newest:
            name = record.removeprefix(f"{EXTENSION}/")  # v1/content/bag/manifest-…local-2.ers
            (data / "proofs" / name).parent.mkdir(parents=True, exist_ok=True)
            _copy(stored, record, data / "proofs" / name)
            entries.append(f"proofs/{name}")
            _tokens(view, data, tokens, certs)
            result.records += 1
        listed.append(
            {
                "path": f"manifests/{rel}",
                "subject": subject,
                "sha512": digest_file(target, ("sha512",)).digests["sha512"],
                "records": entries,
                "chains": [_chain_info(view) for _, view in newest],
            }
        )
        result.manifests += 1
    anchors = []
    for pem in anchors_pem:
        digest = hashlib.sha256(pem).hexdigest()
        rel = f"proofs/certs/root-{digest[:16]}.pem"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(pem)
        anchors.append({"path": rel, "sha256": digest})
    return {
        "format": BUNDLE_FORMAT,
        "files": files,
        "manifests": listed,
        "tokens": list(tokens.values()),
        "trust_anchors": anchors,
    }


@dataclass(frozen=True, slots=True)
class _Sealed:
    """The package's copies stored encrypted (by content path), and the open identity of
    each chosen one."""

    files: dict[str, Any]
    keys: dict[str, Any]


def _copy(stored: StoredObject, path: str, target: Path) -> None:
    """Copy one file of the object to ``target``, streamed in bounded chunks."""
    with stored.open(path) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK)


def _tokens(
    view: RecordView, data: Path, tokens: dict[str, dict[str, Any]], certs: dict[str, str]
) -> None:
    """Each token of a record as a .tst file, and the certificate of the TSA that signed it."""
    for chain in view.chains:
        for ats in chain:
            key = hashlib.sha256(ats.token).hexdigest()
            if key in tokens:
                continue
            token = token_from_der(ats.token)
            rel = f"proofs/tokens/{token.serial_number}-{key[:12]}.tst"
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            (data / rel).write_bytes(ats.token)
            cert = signer_certificate(token)
            der = cert.public_bytes(Encoding.DER)
            cert_key = hashlib.sha256(der).hexdigest()
            cert_rel = f"proofs/certs/tsa-{cert_key[:16]}.pem"
            if cert_key not in certs:
                (data / cert_rel).parent.mkdir(parents=True, exist_ok=True)
                (data / cert_rel).write_bytes(cert.public_bytes(Encoding.PEM))
                certs[cert_key] = cert_rel
            tokens[key] = {
                "path": rel,
                "sha256": key,
                "serial": token.serial_number,
                "gen_time": token.gen_time.isoformat(),
                "algorithm": token.algorithm,
                "imprint": token.imprint.hex(),
                "tsa_certificate": certs[cert_key],
            }


def _chain_info(view: RecordView) -> list[list[dict[str, Any]]]:
    """Per chain, per archive timestamp: the algorithm, the token and the hash-tree lists."""
    return [
        [
            {
                "algorithm": ats.algorithm,
                "token_sha256": hashlib.sha256(ats.token).hexdigest(),
                "tree": [[v.hex() for v in partial] for partial in ats.path],
            }
            for ats in chain
        ]
        for chain in view.chains
    ]


def _verify_text(index: dict[str, Any]) -> str:
    """VERIFY.txt: every check, spelt out with the commands and the values they must print."""
    anchor = index["trust_anchors"][0]["path"] if index["trust_anchors"] else "ROOT.pem"
    token_by_sha = {t["sha256"]: t for t in index["tokens"]}
    lines = [
        "HOW TO VERIFY THIS BUNDLE",
        "=========================",
        "",
        f"Court bundle {index['export_id']}, exported by Custos (bundle format {BUNDLE_FORMAT}).",
        "Everything below can be checked with standard tools: sha512sum, sha256sum, xxd and",
        "openssl. Run the commands from the folder that holds this file (data/). With Custos",
        "installed, one command does it all: custos verify --bundle <the bundle's folder>",
        "",
        "Each file carries its own proof: an RFC 4998 evidence record whose hash tree starts",
        "from the file's own hash and a salt's hash, and leads to a timestamp. The values on",
        "the way are hashes over other files' secret salts: they tell nothing of any other",
        "file, nor how many there are.",
        "",
        "What openssl prints besides its verdict is expected:",
        "  'Using configuration from .../openssl.cnf', and",
        "  'Warning: certificate from proofs/certs/tsa-... is not a CA cert'",
        "(that file is the timestamp authority's own certificate, given so that the token's",
        "signer is found; the chain of trust ends at the root certificate).",
        "",
        "0. Trust anchors. The timestamps chain to the root certificate(s) below. Compare their",
        "   fingerprints with the ones the archive publishes (GET /trust on its web address):",
        *(
            f"     sha256sum {a['path']}  # must print {a['sha256']}"
            for a in index["trust_anchors"]
        ),
        "   (or: openssl x509 -in <root>.pem -noout -fingerprint -sha256, compared with the",
        "   certificate_sha256 that /trust lists)",
        "",
        "1. The bag. From the bundle's top folder (the one holding bagit.txt), every line of",
        "   these must end in OK:",
        "     (cd .. && sha512sum -c manifest-sha512.txt && sha512sum -c tagmanifest-sha512.txt)",
        "",
        "2. The files, each with its own proof.",
    ]
    for f in index["files"]:
        lines += _document_steps(f, token_by_sha, anchor)
    if index["manifests"]:
        lines += [
            "",
            "   Every file of the deposit is in this bundle, so its bag manifest, sealed when it",
            "   was received, proves them too: each file's sha512 above is the one",
        ]
        for f in index["files"]:
            if "manifest" in f:
                lines.append(f"     {f['manifest']} lists for {f['entry']}")
        lines += [
            "",
            "3. The deposit's sealed manifests, and the timestamps that prove when they existed.",
        ]
        for m in index["manifests"]:
            lines += _document_steps(m, token_by_sha, anchor)
    lines += [
        "",
        "4. Renewals. A later timestamp in a record covers the one before it and was made while",
        "   the earlier TSA certificate was still valid: each openssl command above checks a",
        "   timestamp at the time it was made (-attime); a record is sound today when the",
        "   certificate of its newest timestamp is still valid (openssl without -attime).",
        "",
        "5. The custody history of the files in this bundle, this export included:",
        "   custody/premis.xml (PREMIS 3).",
        "",
    ]
    return "\n".join(lines)


def _document_steps(
    document: dict[str, Any], token_by_sha: dict[str, dict[str, Any]], anchor: str
) -> list[str]:
    """A file's or manifest's digest, then each of its records, timestamp by timestamp."""
    lines = ["", f"   sha512sum {document['path']}", f"     must print {document['sha512']}"]
    for record, chains in zip(document["records"], document["chains"], strict=True):
        lines.append(f"   Its evidence record {record} (RFC 4998):")
        previous = ""
        for c, chain in enumerate(chains, start=1):
            for n, ats in enumerate(chain, start=1):
                lines += _timestamp_steps(
                    document["path"], ats, c, n, previous, token_by_sha, anchor
                )
                previous = token_by_sha[ats["token_sha256"]]["path"]
    return lines


def _timestamp_steps(
    document: str,
    ats: dict[str, Any],
    chain: int,
    number: int,
    previous: str,
    token_by_sha: dict[str, dict[str, Any]],
    anchor: str,
) -> list[str]:
    token = token_by_sha[ats["token_sha256"]]
    alg = ats["algorithm"]
    tool = f"{alg}sum"
    if chain == 1 and number == 1:
        leaf = f"the hash of {document} ({tool} {document})"
    elif number == 1:
        leaf = "H(H(document) + H(the earlier chains, DER)): a hash-tree renewal (custos verify)"
    else:
        leaf = f"the hash of the timestamp before it ({tool} {previous})"
    lines = [f"     chain {chain}, timestamp {number}: its leaf is {leaf}"]
    value: bytes | None = None
    for level, partial in enumerate(ats["tree"], start=1):
        pair = sorted(partial) if level == 1 else sorted((value.hex() if value else "", partial[0]))
        lines.append(f"       level {level}: echo {''.join(pair)} | xxd -r -p | {tool}")
        value = merkle.combine(alg, bytes.fromhex(pair[0]), bytes.fromhex(pair[1]))
        lines.append(f"         must print {value.hex()}")
    when = int(datetime.fromisoformat(token["gen_time"]).timestamp())
    lines += [
        f"       the timestamp covers {token['imprint']}, made {token['gen_time']}:",
        f"       openssl ts -verify -token_in -in {token['path']} -digest {token['imprint']}"
        f" -CAfile {anchor} -untrusted {token['tsa_certificate']} -attime {when}",
        "         must print: Verification: OK",
    ]
    return lines


def _bag_it(
    work: Path,
    known: dict[Path, tuple[dict[str, str], int]],
    package_id: str | None,
    export_id: str,
    requester: str,
    purpose: str,
    at: datetime,
) -> None:
    """Make ``work`` a BagIt 1.0 bag: manifests over the payload, bag-info, tag manifests.
    ``known``: digests and sizes of files already read; ``package_id``: None when the package
    may not be named."""
    data = work / "data"
    payload = sorted(p for p in data.rglob("*") if p.is_file())
    manifests: dict[str, list[str]] = {"sha512": [], "sha256": []}
    total = 0
    for path in payload:
        if path in known:
            digests, size = known[path]
        else:
            result = digest_file(path, ("sha512", "sha256"))
            digests, size = result.digests, result.size
        total += size
        rel = path.relative_to(work).as_posix()
        for alg in manifests:
            manifests[alg].append(f"{digests[alg]}  {rel}\n")
    (work / "bagit.txt").write_text(
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", encoding="utf-8"
    )
    info = {
        "Source-Organization": "Custos archive",
        **({"External-Identifier": package_id} if package_id else {}),
        "Bag-Group-Identifier": export_id,
        "Bagging-Date": at.date().isoformat(),
        "External-Description": f"Court bundle for {requester}; purpose: {purpose}",
        "Payload-Oxum": f"{total}.{len(payload)}",
    }
    (work / "bag-info.txt").write_text(
        "".join(f"{k}: {' '.join(v.split())}\n" for k, v in info.items()), encoding="utf-8"
    )
    for alg, lines in manifests.items():
        (work / f"manifest-{alg}.txt").write_text("".join(lines), encoding="utf-8")
    tags = ["bagit.txt", "bag-info.txt", *(f"manifest-{a}.txt" for a in manifests)]
    for alg in manifests:
        (work / f"tagmanifest-{alg}.txt").write_text(
            "".join(
                f"{hashlib.new(alg, (work / t).read_bytes()).hexdigest()}  {t}\n" for t in tags
            ),
            encoding="utf-8",
        )
