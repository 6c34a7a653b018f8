"""``custos export``: a court bundle of chosen files with everything needed to prove them.

The bundle (layout in :mod:`archive.proofs.bundle`) holds the files, the sealed manifests that
list them, the manifests' current evidence records, the tokens inside them, the TSA
certificates and trust anchors, the package's custody history and a ``VERIFY.txt`` that walks
an outside expert through every check with ``sha512sum``, ``xxd`` and ``openssl`` alone.

``custos export`` releases only public material whose consent is not withdrawn. A registrar
answering a justice body's request (:func:`access.registrar.answer_request`) releases what the
access policy lets that registrar read for the request's purpose (:func:`access.rules.may_see`
with the action ``read-content``: tier, consent, purpose, second factor), so restricted and
protected-identity files go out only where the policy's table and the recorded consent allow;
the custody event names the registrar and links non-public files by digest, never by path
(paths may name people). A file asked for by name that may not be released refuses the
export, naming it and the reason. Files are checked against the sealed inventory as they are copied
(each byte read once): a stored file that no longer matches refuses the export. The bundle is
built beside its target and renamed into place; the export is a custody event, recorded in
the bundle's own history too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from access.reads import package_head
from access.rules import Principal, Rules, access_policy, may_see, rules_from_rows
from archive.catalog.queries import access_rows, package_events, resolve_package_id
from archive.catalog.tables import Package, Seal
from archive.custody import new_event, premis_xml, record_events
from archive.digest import copy_with_digests, digest_file
from archive.errors import ConfigError, InputRejected, StorageError
from archive.findings import Finding
from archive.model import AccessRow, Link
from archive.proofs import merkle
from archive.proofs.bundle import BUNDLE_FORMAT, INDEX
from archive.proofs.evidence import RecordView, parse_record
from archive.proofs.renew import current_only
from archive.proofs.seal import EXTENSION
from archive.proofs.timestamp import signer_certificate, token_from_der
from archive.proofs.verify import trust_anchors
from archive.services import Services
from archive.storage import ocfl
from policies.access import Assignment, Consent, effective, effective_consent
from policies.errors import AccessRuleError
from policies.vocabulary import is_scope, is_tier

AGENT = "Custos export"
_MANIFESTS = ("manifest-sha512.txt", "manifest-sha256.txt")


@dataclass
class ExportResult:
    bundle: Path
    export_id: str
    package_id: str
    files: list[str] = field(default_factory=list)
    left_out: int = 0  # files not public (only when no path was named)
    manifests: int = 0
    records: int = 0
    payload_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "export_id": self.export_id,
            "package_id": self.package_id,
            "files": self.files,
            "left_out_not_public": self.left_out,
            "manifests": self.manifests,
            "evidence_records": self.records,
            "payload_bytes": self.payload_bytes,
        }


def _refuse(message: str, findings: list[Finding], hint: str = "") -> InputRejected:
    return InputRejected(message, findings, hint=hint)


def _rules(rows: Iterable[AccessRow]) -> tuple[list[Assignment], list[Consent]]:
    """The catalog's access rows as the policy's values (validated again on the way)."""
    assignments, consents = [], []
    for r in rows:
        if r.tier and is_tier(r.tier):
            successor = r.successor if r.successor and is_tier(r.successor) else None
            assignments.append(
                Assignment(r.path, r.tier, r.sunset, successor, r.legal_basis, r.sunset_basis)
            )
        if r.consent is not None:
            consents.append(Consent(r.path, frozenset(s for s in r.consent if is_scope(s))))
    return assignments, consents


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

    Without ``releaser``, only public files may be released; with it (a registrar answering a
    request), the files the access policy lets ``releaser`` read for ``purpose``.

    Raises :class:`InputRejected` (bad request, file that may not be released or unknown,
    manifest not yet sealed, target not empty), :class:`NotFound` for an unknown package, and
    :class:`StorageError` when a stored file no longer matches its sealed inventory."""
    requester, purpose = requester.strip(), purpose.strip()
    problems = []
    if not requester:
        problems.append(Finding("EXPORT-REQUESTER", "error", "the requester is not named"))
    if not purpose:
        problems.append(Finding("EXPORT-PURPOSE", "error", "the purpose is not stated"))
    to = to.absolute()
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        problems.append(
            Finding("EXPORT-TARGET", "error", "exists and is not an empty folder", str(to))
        )
    if problems:
        raise _refuse("export refused: the request is incomplete", problems)

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
        assignments, consents = _rules(rows)
    except AccessRuleError as exc:
        raise ConfigError(
            f"the catalog's access records of {package_id} are invalid: {exc}"
        ) from exc
    object_root = services.store.object_root(pkg.object_path)
    inventory = ocfl.read_inventory(object_root)
    state = ocfl.head_state(inventory)
    payload = {
        logical.removeprefix("bag/"): content
        for logical, content in state.items()
        if logical.startswith("bag/data/")
    }
    why_not = _public_only(assignments, consents)
    if releaser is not None:  # what anyone may have, and what the policy lets releaser read
        why_not = _either(why_not, _as_policy_allows(services, releaser, purpose, rules_from_rows(
            package_id, head.depositor, rows
        )))  # fmt: skip
    chosen = _choose(payload, paths, why_not, public_only=releaser is None)
    left_out = 0 if paths else len(payload) - len(chosen)
    digest_of = {p: d for d, ps in inventory["manifest"].items() for p in ps}
    closed = [p for p in chosen if _tier(p, assignments) != "public"]

    # The sealed manifests that list the chosen files, and their current records.
    records_of: dict[str, list[str]] = {}
    for subject, record in seals:
        records_of.setdefault(subject, []).append(record)
    needed = sorted({payload[p].split("/", 1)[0] + "/inventory.json" for p in chosen})
    needed += [f"v1/content/bag/{m}" for m in _MANIFESTS if f"bag/{m}" in state]
    unsealed = [m for m in needed if m not in records_of]
    if unsealed:
        raise _refuse(
            "export refused: a manifest that proves these files is not sealed yet",
            [Finding("EXPORT-NOT-SEALED", "error", "awaits its seal", m) for m in unsealed],
            hint="run `custos seal`, then export again",
        )

    export_id = str(uuid.uuid4())
    result = ExportResult(to, export_id, package_id)
    work = to.parent / f".custos-export-{export_id}"
    work.mkdir(parents=True)
    try:
        index = _write(
            services, work, object_root, inventory, chosen, payload, needed, records_of, result,
            progress,
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
            f"{len(chosen)} file(s){released}, {result.manifests} sealed manifest(s), "
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
            at=datetime.now(UTC),
        )
        custody = work / "data" / "custody"
        custody.mkdir(parents=True)
        (custody / "premis.xml").write_bytes(premis_xml([*events, event]))
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
        (work / INDEX).write_bytes((json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
        (work / "data" / "VERIFY.txt").write_text(_verify_text(index), encoding="utf-8")
        _bag_it(work, package_id, export_id, requester, purpose, event.occurred_at)
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


def _public_only(
    assignments: list[Assignment], consents: list[Consent]
) -> Callable[[str], str | None]:
    def why_not(path: str) -> str | None:
        a = effective(path, assignments)
        c = effective_consent(path, consents)
        if a is None or a.tier != "public":
            return f"is {a.tier if a else 'undeclared'}"
        if c is not None and c.withdrawn:
            return "has its consent withdrawn"
        return None

    return why_not


def _as_policy_allows(
    services: Services, releaser: Principal, purpose: str, rules: Rules
) -> Callable[[str], str | None]:
    policy = access_policy(services.settings)

    def why_not(path: str) -> str | None:
        ok, decisions = may_see(
            policy, rules, path, reader=releaser, action="read-content", purpose=purpose
        )
        return None if ok else decisions[-1].explanation

    return why_not


def _either(
    first: Callable[[str], str | None], then: Callable[[str], str | None]
) -> Callable[[str], str | None]:
    """Allowed if either allows; the second's reason when neither does."""

    def why_not(path: str) -> str | None:
        return None if first(path) is None else then(path)

    return why_not


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
                hint="custos export releases public files only; a registrar answering a "
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
                    f"{why}: custos export releases public files only; a registrar answers "
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
        raise _refuse("export refused", findings)
    return chosen


def _write(
    services: Services,
    work: Path,
    object_root: Path,
    inventory: dict[str, Any],
    chosen: list[str],
    payload: dict[str, str],
    needed: list[str],
    records_of: dict[str, list[str]],
    result: ExportResult,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    data = work / "data"
    digest_of = {p: d for d, ps in inventory["manifest"].items() for p in ps}
    files = []
    for path in chosen:
        content = payload[path]
        target = data / "files" / path.removeprefix("data/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(object_root / content, "rb") as src:
            copied = copy_with_digests(src, target)
        if copied.digests["sha512"] != digest_of[content]:
            raise StorageError(
                f"{path} of {result.package_id} in storage no longer matches its sealed "
                "inventory; nothing was exported",
                hint="run `custos verify` on the package and repair the file from a replica",
            )
        result.payload_bytes += copied.size
        files.append(
            {
                "path": f"files/{path.removeprefix('data/')}",
                "original_path": path,
                "manifest": f"manifests/{content.split('/', 1)[0]}/inventory.json",
                "entry": content,
                "sha512": copied.digests["sha512"],
                "sha256": copied.digests["sha256"],
            }
        )
        if progress:
            progress(copied.size)
    manifests = []
    tokens: dict[str, dict[str, Any]] = {}
    certs: dict[str, str] = {}
    for subject in needed:
        rel = subject.removeprefix("v1/content/")  # bag/manifest-….txt; vN/inventory.json
        target = data / "manifests" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(object_root / subject, target)
        views = [(r, parse_record((object_root / r).read_bytes())) for r in records_of[subject]]
        current = [views[i] for i in current_only(views)]
        entries = []
        for record, view in current:
            name = record.removeprefix(f"{EXTENSION}/")  # v1/inventory.json.local-2.ers
            (data / "proofs" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(object_root / record, data / "proofs" / name)
            entries.append(f"proofs/{name}")
            _tokens(view, data, tokens, certs)
            result.records += 1
        manifests.append(
            {
                "path": f"manifests/{rel}",
                "subject": subject,
                "sha512": digest_file(target, ("sha512",)).digests["sha512"],
                "records": entries,
                "chains": [_chain_info(view) for _, view in current],
            }
        )
        result.manifests += 1
    anchors = []
    for pem in trust_anchors(services):
        digest = hashlib.sha256(pem).hexdigest()
        rel = f"proofs/certs/root-{digest[:16]}.pem"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(pem)
        anchors.append({"path": rel, "sha256": digest})
    return {
        "format": BUNDLE_FORMAT,
        "package_id": result.package_id,
        "files": files,
        "manifests": manifests,
        "tokens": list(tokens.values()),
        "trust_anchors": anchors,
    }


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
        f"Package {index['package_id']}, exported by Custos (bundle format {BUNDLE_FORMAT}).",
        "Everything below can be checked with standard tools: sha512sum, xxd and openssl.",
        "Run the commands from the folder that holds this file (data/). With Custos",
        "installed, one command does it all: custos verify --bundle <the bundle's folder>",
        "",
        "0. Trust anchors. The timestamps chain to the root certificate(s) below. Compare their",
        "   SHA-256 fingerprints with the ones the archive publishes:",
        *(
            f"     sha256sum {a['path']}  # must print {a['sha256']}"
            for a in index["trust_anchors"]
        ),
        "",
        "1. The files. Each must hash to the digest its sealed manifest lists for it:",
    ]
    for f in index["files"]:
        lines += [
            f"   sha512sum {f['path']}",
            f"     must print {f['sha512']}",
            f"     as {f['manifest']} lists for {f['entry']}",
        ]
    lines += ["", "2. The manifests, and the timestamps that prove when they existed."]
    for m in index["manifests"]:
        lines += ["", f"   sha512sum {m['path']}", f"     must print {m['sha512']}"]
        for record, chains in zip(m["records"], m["chains"], strict=True):
            lines.append(f"   Its evidence record {record} (RFC 4998):")
            previous = ""
            for c, chain in enumerate(chains, start=1):
                for n, ats in enumerate(chain, start=1):
                    lines += _timestamp_steps(m, ats, c, n, previous, token_by_sha, anchor)
                    previous = token_by_sha[ats["token_sha256"]]["path"]
    lines += [
        "",
        "3. Renewals. A later timestamp in a record covers the one before it and was made while",
        "   the earlier TSA certificate was still valid: each openssl command above checks a",
        "   timestamp at the time it was made (-attime); a record is sound today when the",
        "   certificate of its newest timestamp is still valid (openssl without -attime).",
        "",
        "4. The custody history of the package, this export included: custody/premis.xml",
        "   (PREMIS 3).",
        "",
    ]
    return "\n".join(lines)


def _timestamp_steps(
    manifest: dict[str, Any],
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
        leaf = f"the manifest's hash ({tool} {manifest['path']})"
    elif number == 1:
        leaf = "H(H(manifest) + H(the earlier chains, DER)): a hash-tree renewal (custos verify)"
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
    work: Path, package_id: str, export_id: str, requester: str, purpose: str, at: datetime
) -> None:
    """Make ``work`` a BagIt 1.0 bag: manifests over the payload, bag-info, tag manifests."""
    data = work / "data"
    payload = sorted(p for p in data.rglob("*") if p.is_file())
    manifests: dict[str, list[str]] = {"sha512": [], "sha256": []}
    total = 0
    for path in payload:
        result = digest_file(path, ("sha512", "sha256"))
        total += result.size
        rel = path.relative_to(work).as_posix()
        for alg in manifests:
            manifests[alg].append(f"{result.digests[alg]}  {rel}\n")
    (work / "bagit.txt").write_text(
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", encoding="utf-8"
    )
    info = {
        "Source-Organization": "Custos archive",
        "External-Identifier": package_id,
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
