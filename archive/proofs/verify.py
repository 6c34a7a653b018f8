"""`custos verify`: prove, step by step, that stored files are what was received, and when.

Each step is checked from storage and stated in words a registrar can read aloud: the stored
bytes hash to the digest the inventory records; the inventory is the one that was sealed; its
evidence record leads to a timestamp that verifies against the archive's trust anchors (the
local authority's root and the configured roots, never the copies stored beside the records).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from archive.catalog.index import sealed_files, sealed_names
from archive.catalog.queries import resolve_package_id
from archive.catalog.tables import Package, Seal
from archive.crypt import CryptError, decrypt_chunks
from archive.errors import ProofError, StorageError
from archive.keyring import KeyRing
from archive.proofs import fileseal
from archive.proofs.evidence import parse_record, verify_record
from archive.proofs.renew import current_only, digest_all
from archive.proofs.seal import EXTENSION
from archive.services import Services
from archive.storage import ocfl
from archive.storage.primary import StoredObject
from archive.storage.replica import LocationUnavailable


@dataclass(frozen=True, slots=True)
class Step:
    ok: bool
    text: str


@dataclass
class VerifyReport:
    package_id: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def passed(self, text: str) -> None:
        self.steps.append(Step(True, text))

    def failed(self, text: str) -> None:
        self.steps.append(Step(False, text))

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "verified": self.ok,
            "steps": [{"ok": s.ok, "text": s.text} for s in self.steps],
        }


def trust_anchors(services: Services) -> list[bytes]:
    """The archive's own anchors: the local authority's root, and the configured roots."""
    anchors = [p.read_bytes() for p in services.settings.tsa.roots]
    local = services.settings.tsa_path / "root.pem"
    if local.is_file():
        anchors.append(local.read_bytes())
    return anchors


def verify_package(
    services: Services, package_ref: str, paths: list[str], *, at: datetime | None = None
) -> VerifyReport:
    """Verify a package's seals, or the given files through the seals that cover them.

    Only a manifest's current records count (a renewed record supersedes the one it extends);
    ``at`` is the moment the newest timestamps must still be valid at (default now).

    Returns the report whatever it found; raises only when the package does not exist
    (:class:`NotFound`) or its inventory cannot be read at all (:class:`StorageError`).
    """
    with services.sessions() as session:
        package_id = resolve_package_id(session, package_ref)
        pkg = session.get(Package, package_id)
        assert pkg is not None
        seals = list(
            session.execute(
                select(Seal.subject_path, Seal.subject_sha512, Seal.record_path).where(
                    Seal.package_id == package_id
                )
            )
        )
    report = VerifyReport(package_id)
    root = services.primary.object(pkg.object_path)
    try:
        inventory = root.inventory()
    except LocationUnavailable:
        raise
    except StorageError as exc:
        report.failed(f"The package's inventory cannot be trusted: {exc.message}")
        return report
    report.passed(
        f"Package {package_id} is stored at {root.where()}; its inventory (head "
        f"{inventory['head']}) matches the digest recorded beside it."
    )
    anchors = trust_anchors(services)
    by_subject: dict[str, list[tuple[str, str]]] = {}
    for subject, digest, record in seals:
        by_subject.setdefault(subject, []).append((digest, record))
    checked: dict[str, str] = {}
    plain = sealed_files(root, inventory)
    subjects = (
        sorted(by_subject)
        if not paths
        else _subjects_for(report, root, inventory, paths, checked, plain, services.keyring)
    )
    if not by_subject:
        report.failed("No manifest of this package has been sealed yet (run `custos seal`).")
        return report
    for subject in subjects:
        _verify_subject(report, root, subject, by_subject.get(subject, []), anchors, at)
    if checked:
        _verify_files_alone(report, root, checked, by_subject, anchors, at, plain)
    return report


def _verify_files_alone(
    report: VerifyReport,
    root: StoredObject,
    checked: dict[str, str],
    by_subject: dict[str, list[tuple[str, str]]],
    anchors: list[bytes],
    at: datetime | None,
    plain: dict[str, Any],
) -> None:
    """Each file's own proof (its file seal, :mod:`archive.proofs.fileseal`): the record a
    court bundle would carry for it, derived from the version's sealed root and checked
    against the file's bytes (a copy stored encrypted: its plain bytes' digest)."""
    by_version: dict[str, list[str]] = {}
    for content in checked:
        by_version.setdefault(content.split("/", 1)[0], []).append(content)
    for version, contents in sorted(by_version.items()):
        subjects = [s for s in by_subject if fileseal.is_subject(s) and s.startswith(f"{version}/")]
        if not subjects:
            report.failed(
                f"the files of {version} are not yet sealed each on its own (run `custos seal "
                "files`)."
            )
            continue
        for subject in sorted(subjects):
            _verify_seal_of(
                report, root, subject, by_subject[subject], contents, checked, anchors, at, plain
            )


def _verify_seal_of(
    report: VerifyReport,
    root: StoredObject,
    subject: str,
    records: list[tuple[str, str]],
    contents: list[str],
    checked: dict[str, str],
    anchors: list[bytes],
    at: datetime | None,
    plain: dict[str, Any],
) -> None:
    """Each of ``contents`` against its own record, derived from one file seal's records."""
    try:
        data = root.read_bytes(fileseal.sidecar_path(subject, EXTENSION))
        actual = hashlib.sha512(data).hexdigest()
        sealed = {digest for digest, _ in records}
        if sealed != {actual}:
            raise ProofError(f"its sidecar now hashes to {actual[:16]}…, not what was sealed")
        seal = fileseal.load(data)
        trees = seal.paths(contents)
        ders = {r: root.read_bytes(r) for _, r in records}
        views = [(r, parse_record(der)) for r, der in ders.items()]
        current = [(views[i][0], ders[views[i][0]]) for i in current_only(views)]
    except LocationUnavailable:
        raise
    except (ProofError, StorageError) as exc:
        report.failed(f"{subject}: the file seal cannot be used: {exc.message}")
        return
    for record_path, der in current:
        for content in sorted(contents):
            if content in plain and seal.algorithm in plain[content]:
                digest = bytes.fromhex(plain[content][seal.algorithm])
            elif seal.algorithm == "sha512":
                digest = bytes.fromhex(checked[content])
            else:
                found = root.digest(content, (seal.algorithm,)).digests[seal.algorithm]
                digest = bytes.fromhex(found)
            try:
                own = seal.record_for(der, trees[content])
                check = verify_record(own, digest, roots=anchors, at=at)
            except ProofError as exc:
                report.failed(f"{content}: its own proof ({subject}) fails: {exc.message}")
                continue
            report.passed(
                f"{content}: sealed on its own at {check.gen_time.isoformat()} "
                f"({subject}, {record_path}), without naming any other file."
            )


def _subjects_for(
    report: VerifyReport,
    root: StoredObject,
    inventory: dict[str, Any],
    paths: list[str],
    checked: dict[str, str],
    plain: dict[str, Any],
    keyring: KeyRing,
) -> list[str]:
    """Check each file's stored bytes; return the inventories that must then be verified.

    A copy stored encrypted: its stored bytes against the inventory, then, while its tier's
    key is open in this process, its plain bytes against the digest recorded at deposit
    (which its file seal proves); with the key locked the report says they were not read."""
    state = ocfl.head_state(inventory)
    digest_of = {p: d for d, ps in inventory["manifest"].items() for p in ps}
    # A protected file is stored under a sealed name; its real one finds it while its key
    # is open in this process (the names map decrypted here, for this report only).
    by_real: dict[str, str] = {}
    tiers = {str(e["tier"]) for e in plain.values()}
    for purpose in sorted({o.purpose for t in tiers if (o := keyring.opened(t)) is not None}):
        names = sealed_names(root, keyring, purpose=purpose, inventory=inventory)
        by_real.update({real: sealed for sealed, real in names.items()})
    needed: set[str] = set()
    for path in paths:
        logical = path if path.startswith(("bag/", "custos/")) else f"bag/{path}"
        content = state.get(logical) or state.get(by_real.get(logical, ""))
        if content is None:
            hidden = (
                " A protected file is named by its sealed name (data/sealed/…), or by its "
                "real one with its tier's key open (--open-key)."
                if plain
                else ""
            )
            report.failed(f"{path}: no such file in the package's current version.{hidden}")
            continue
        version = content.split("/", 1)[0]
        # The digest must be the one in the inventory of the version that added the file:
        # that inventory is what the seal covers (its own bytes are checked against the seal).
        try:
            sealed_inventory = json.loads(root.read_bytes(f"{version}/inventory.json"))
            recorded = {p: d for d, ps in sealed_inventory["manifest"].items() for p in ps}.get(
                content, digest_of[content]
            )
        except LocationUnavailable:
            raise
        except (StorageError, ValueError, KeyError):
            report.failed(f"{path}: the inventory of {version} cannot be read.")
            continue
        try:
            actual = root.digest(content, ("sha512",)).digests["sha512"]
        except LocationUnavailable:
            raise
        except StorageError as exc:
            report.failed(f"{path}: its stored bytes cannot be read: {exc.message}")
            continue
        if actual != recorded:
            report.failed(
                f"{path}: the stored bytes hash to sha512 {actual[:16]}…, but the inventory "
                f"of {version} records {recorded[:16]}…: the file has been altered."
            )
            continue
        report.passed(
            f"{path}: the stored bytes hash to sha512 {actual[:16]}…, exactly as the inventory "
            f"of {version} records."
        )
        needed.add(f"{version}/inventory.json")
        checked[content] = actual
        if content in plain:
            _check_plain(report, root, path, content, plain[content], keyring)
    return sorted(needed)


def _check_plain(
    report: VerifyReport,
    root: StoredObject,
    path: str,
    content: str,
    entry: dict[str, Any],
    keyring: KeyRing,
) -> None:
    tier = str(entry["tier"])
    opened = keyring.opened(tier)
    if opened is None:
        report.passed(
            f"{path}: stored encrypted to the {tier} tier's key, which is locked: its plain "
            f"bytes were not read here; its own proof below is of the plain sha512 "
            f"{str(entry['sha512'])[:16]}… recorded at deposit."
        )
        return
    sha512, size = hashlib.sha512(), 0
    try:
        with root.open(content) as reader:
            for chunk in decrypt_chunks(reader, opened.identity):
                sha512.update(chunk)
                size += len(chunk)
    except CryptError as exc:
        report.failed(f"{path}: the stored copy does not decrypt with the {tier} key: {exc}")
        return
    if sha512.hexdigest() != entry["sha512"] or size != entry["size"]:
        report.failed(
            f"{path}: decrypted, its plain bytes hash to sha512 {sha512.hexdigest()[:16]}…, "
            f"not the {str(entry['sha512'])[:16]}… recorded at deposit."
        )
        return
    report.passed(
        f"{path}: decrypted with the {tier} tier's key, its plain bytes hash to sha512 "
        f"{sha512.hexdigest()[:16]}…, as recorded at deposit and sealed."
    )


def _verify_subject(
    report: VerifyReport,
    root: StoredObject,
    subject: str,
    records: list[tuple[str, str]],
    anchors: list[bytes],
    at: datetime | None,
) -> None:
    if not records:
        report.failed(f"{subject}: not sealed yet (run `custos seal`).")
        return
    try:
        if fileseal.is_subject(subject):
            data = root.read_bytes(fileseal.sidecar_path(subject, EXTENSION))
            seal = fileseal.load(data)
            digests = {seal.algorithm: seal.root}
        else:
            data = root.read_bytes(subject)
            digests = digest_all(data)
    except LocationUnavailable:
        raise
    except (ProofError, StorageError) as exc:
        what = "the file seal" if fileseal.is_subject(subject) else "it"
        report.failed(f"{subject}: {what} cannot be read: {exc.message}")
        return
    actual = hashlib.sha512(data).hexdigest()
    views = []
    for sealed_digest, record_path in records:
        try:
            der = root.read_bytes(record_path)
            views.append((sealed_digest, record_path, der, parse_record(der)))
        except LocationUnavailable:
            raise
        except (ProofError, StorageError) as exc:
            report.failed(
                f"{subject}: its evidence record {record_path} fails: {exc.message} "
                f"(read from {root.where(record_path)})"
            )
    current = current_only([(path, view) for _, path, _, view in views])
    for sealed_digest, record_path, der, _ in (views[i] for i in current):
        if actual != sealed_digest:
            report.failed(
                f"{subject}: its bytes now hash to {actual[:16]}…, not the {sealed_digest[:16]}… "
                "that was sealed."
            )
            continue
        try:
            check = verify_record(der, digests, roots=anchors, at=at)
        except ProofError as exc:
            report.failed(
                f"{subject}: its evidence record {record_path} fails: {exc.message} "
                f"(read from {root.where(record_path)})"
            )
            continue
        report.passed(
            f"{subject} (sha512 {actual[:16]}…) is sealed by {record_path}: "
            + "; ".join(s.split(". ", 1)[1] for s in check.steps)
            + "."
        )
