"""Index an OCFL object into the catalog, from what storage holds and nothing else.

The same function serves a new ingest (after the object is moved into place), the recovery of
an interrupted ingest, and ``custos catalog rebuild``: the catalog is always derived from
storage, never the other way round.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import date
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from archive.catalog.tables import (
    AccessAssignment,
    AccessReview,
    Base,
    Checkpoint,
    ConsentRecord,
    Deposit,
    Depositor,
    Event,
    File,
    Package,
    Replica,
    ReplicationPlan,
    Seal,
    SealBatch,
    StoredFile,
    Version,
)
from archive.checkpoints import records_of
from archive.crypt import CryptError, decrypt_chunks
from archive.custody import parse_premis, record_events
from archive.digest import digest_stream
from archive.errors import StorageError
from archive.proofs.evidence import parse_record
from archive.proofs.timestamp import token_from_der
from archive.storage import ocfl
from archive.storage.primary import Primary, StoredObject

if TYPE_CHECKING:
    from archive.keyring import KeyRing

DEPOSIT_JSON = "custos/deposit.json"
BAG_INFO_JSON = "custos/bag-info.json"
PREMIS_XML = "custos/premis.xml"
FORMATS_JSON = "custos/formats.json"
ACCESS_JSON = "custos/access.json"
#: The files stored encrypted (ingest/sealing.py): tier, plain size and digests, recipients.
ENCRYPTED_JSON = "custos/encrypted.json"
PAYLOAD_PREFIX = "bag/data/"
#: The real names of a package's protected files, stored encrypted (ingest/sealing.py).
NAMES_PREFIX = "custos/names-"
#: Outputs of format migrations: ``custos/derivatives/<preservation|access>/<source path>.<ext>``.
DERIVATIVE_PREFIX = "custos/derivatives/"
FILES = Base.metadata.tables["files"]
BAG_PREFIX = "bag/"


def role_of(logical_path: str) -> str:
    if logical_path.startswith(PAYLOAD_PREFIX):
        return "payload"
    if logical_path.startswith(DERIVATIVE_PREFIX):
        return "derivative"
    if logical_path.startswith(BAG_PREFIX):
        return "tag"
    return "metadata"


def _read_logical(obj: StoredObject, state: dict[str, str], logical: str) -> bytes | None:
    content = state.get(logical)
    if content is None:
        return None
    return obj.read_bytes(content)


def sealed_files(obj: StoredObject, inventory: dict[str, Any] | None = None) -> dict[str, Any]:
    """The object's copies stored encrypted (``custos/encrypted.json`` of its head), by content
    path: logical path, tier, plain size and digests, recipients. Every encrypted content
    path of every version is listed (a copy re-wrapped for a new key is a new content path
    beside the old). Empty for an object with none."""
    inventory = inventory or obj.inventory()
    raw = _read_logical(obj, ocfl.head_state(inventory), ENCRYPTED_JSON)
    return dict(json.loads(raw)["files"]) if raw else {}


def names_path(tier: str) -> str:
    """Where an object keeps the real names of its files of ``tier`` stored under sealed
    names: an age file, encrypted to the tier's recipients."""
    return f"{NAMES_PREFIX}{tier}.age"


def _decrypted_json(obj: StoredObject, content: str, identity: Any, what: str) -> Any:
    """A small metadata file stored encrypted (a names map, a bag-info), decrypted in memory."""
    try:
        with obj.open(content) as reader:
            return json.loads(b"".join(decrypt_chunks(reader, identity)))
    except (CryptError, ValueError) as exc:
        raise StorageError(
            f"{what} of the object at {obj.where()} cannot be read: {exc}",
            hint="run `custos verify` on the package; a damaged copy is repaired by fixity",
        ) from exc


def sealed_names(
    obj: StoredObject,
    keyring: KeyRing,
    *,
    purpose: str | None,
    inventory: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The real logical path of each of the object's files stored under a sealed name, by
    that name, for the tiers whose key is open in ``keyring`` for ``purpose`` (read and
    decrypted here, held by no one). Empty when no key is open for it or the object has
    none. Raises :class:`StorageError` when a names map is unreadable or does not decrypt."""
    inventory = inventory or obj.inventory()
    state = ocfl.head_state(inventory)
    out: dict[str, str] = {}
    for logical, content in sorted(state.items()):
        if not (logical.startswith(NAMES_PREFIX) and logical.endswith(".age")):
            continue
        opened = keyring.opened(logical.removeprefix(NAMES_PREFIX).removesuffix(".age"))
        if opened is None or opened.purpose != purpose:
            continue
        body = _decrypted_json(obj, content, opened.identity, f"the names map {logical}")
        out.update(body["files"])
    return out


def sealed_bag_info(
    obj: StoredObject,
    keyring: KeyRing,
    *,
    purpose: str | None,
    inventory: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The object's bag-info (``custos/bag-info.json``) when it is stored encrypted and its
    tier's key is open in ``keyring`` for ``purpose``; None otherwise. Raises
    :class:`StorageError` as :func:`sealed_names` does."""
    inventory = inventory or obj.inventory()
    content = ocfl.head_state(inventory).get(BAG_INFO_JSON)
    entry = sealed_files(obj, inventory).get(content or "")
    if content is None or entry is None:
        return None
    opened = keyring.opened(str(entry["tier"]))
    if opened is None or opened.purpose != purpose:
        return None
    info = _decrypted_json(obj, content, opened.identity, "the bag-info")
    return info if isinstance(info, dict) else None


def depositor_id(session: Session, name: str, at: Any) -> int:
    """The catalog id of the depositor that an object's ``custos/deposit.json`` names, its
    row written if the catalog lacks it (registered at ``at``, the object's first version).

    Storage is the record: this restores a registration (``custos catalog rebuild``, a
    recovered ingest), it never checks one. A new deposit is checked against the registered
    depositors before anything is written (:func:`archive.depositors.require_registered`)."""
    found = session.execute(select(Depositor.id).where(Depositor.name == name)).scalar()
    if found is not None:
        return found
    row = Depositor(name=name, created_at=at)
    session.add(row)
    session.flush()
    return row.id


def index_object(
    session: Session,
    obj: StoredObject,
    *,
    known_sizes: Mapping[str, int] | None = None,
    known_inventory: dict[str, Any] | None = None,
) -> str:
    """Write catalog rows for the object ``obj`` (in the primary); return the package id.

    ``known_sizes`` and ``known_inventory`` spare re-reading what the caller has just written
    (a new ingest); everything else comes from storage. Any rows already held for the package
    are replaced. The caller commits.
    Raises :class:`StorageError` if the object lacks Custos metadata or is unreadable.
    """
    rel_path = obj.rel_path
    inventory = known_inventory or obj.inventory()
    state = ocfl.head_state(inventory)
    package_id: str = inventory["id"]
    raw_deposit = _read_logical(obj, state, DEPOSIT_JSON)
    if raw_deposit is None:
        raise StorageError(
            f"object {package_id} at {obj.where()} has no {DEPOSIT_JSON}",
            hint="only objects written by Custos can be indexed",
        )
    meta = json.loads(raw_deposit)
    inv_digest = obj.inventory_digest()
    premis = _read_logical(obj, state, PREMIS_XML)
    events = parse_premis(premis) if premis else []
    formats_raw = _read_logical(obj, state, FORMATS_JSON)
    formats: dict[str, dict[str, str]] = json.loads(formats_raw) if formats_raw else {}
    encrypted_raw = _read_logical(obj, state, ENCRYPTED_JSON)
    sealed: dict[str, dict[str, Any]] = json.loads(encrypted_raw)["files"] if encrypted_raw else {}

    remove_package(session, package_id)
    v1 = inventory["versions"]["v1"]
    created = ocfl.parse_created(v1["created"])
    dep_id = depositor_id(session, meta["depositor"], created)
    session.execute(
        insert(Deposit),
        [
            {
                "id": meta["deposit_id"],
                "depositor_id": dep_id,
                "source_name": meta["source_name"],
                "received_at": ocfl.parse_created(meta["received_at"]),
                "stored_at": created,
                "bagit_version": meta["bagit_version"],
                "fingerprint": meta["fingerprint"],
                "payload_files": meta["payload_files"],
                "payload_bytes": meta["payload_bytes"],
            }
        ],
    )
    head = ocfl.version_number(inventory["head"])
    session.execute(
        insert(Package),
        [
            {
                "id": package_id,
                "deposit_id": meta["deposit_id"],
                "depositor_id": dep_id,
                "title": meta.get("title", ""),
                "created_at": created,
                "head": head,
                "object_path": rel_path,
            }
        ],
    )
    version_rows = []
    for name, ver in inventory["versions"].items():
        number = ocfl.version_number(name)
        version_inv = inv_digest
        if number != head:
            version_inv = _sidecar(obj, name)
        version_rows.append(
            {
                "package_id": package_id,
                "number": number,
                "created_at": ocfl.parse_created(ver["created"]),
                "message": ver.get("message", ""),
                "agent": ver.get("user", {}).get("name", ""),
                "inventory_sha512": version_inv,
            }
        )
    session.execute(insert(Version), version_rows)

    sha256_of: dict[str, str] = {}
    for digest, paths in inventory.get("fixity", {}).get("sha256", {}).items():
        for p in paths:
            sha256_of[p] = digest
    file_rows = []
    for digest, paths in inventory["manifest"].items():
        for content_path in paths:
            version_name, _, rest = content_path.partition("/")
            logical = rest.partition("/")[2]  # strip "content/"
            if content_path not in sha256_of:
                raise StorageError(f"object {package_id}: no sha256 fixity for {content_path}")
            size = (known_sizes or {}).get(content_path)
            if size is None:
                size = obj.size(content_path)
            fmt = formats.get(logical, {})
            plain = sealed.get(content_path)
            file_rows.append(
                {
                    "package_id": package_id,
                    "version": ocfl.version_number(version_name),
                    "logical_path": logical,
                    "content_path": content_path,
                    "role": role_of(logical),
                    "size": size,
                    "sha512": digest,
                    "sha256": sha256_of[content_path],
                    "puid": fmt.get("puid"),
                    "mime_type": fmt.get("mime_type"),
                    "format_name": fmt.get("format_name"),
                    "sealed_tier": plain["tier"] if plain else None,
                    "plain_size": plain["size"] if plain else None,
                    "plain_sha512": plain["sha512"] if plain else None,
                    "plain_sha256": plain["sha256"] if plain else None,
                }
            )
    # Core executemany on the table: the ORM bulk path costs 4x more per row.
    for i in range(0, len(file_rows), 10000):
        session.execute(insert(FILES), file_rows[i : i + 10000])
    access_raw = _read_logical(obj, state, ACCESS_JSON)
    if access_raw is not None:
        _index_access(session, package_id, json.loads(access_raw))
    # The custody log is append-only: events already in it stay as they are; only those the
    # catalog lacks (a new ingest, a rebuild into an empty catalog) are appended.
    if events:
        held = set(
            session.execute(select(Event.uuid).where(Event.uuid.in_([e.uuid for e in events])))
            .scalars()
            .all()
        )
        record_events(session, [e for e in events if e.uuid not in held], package_id=package_id)
    _index_seals(session, obj, package_id, inventory)
    run_index_hooks(session, package_id)
    return package_id


#: A function called with the session and a package id once that package's catalog rows are
#: (re)written, inside the same transaction (e.g. the public search index of ``access``).
IndexHook = Callable[[Session, str], None]
HOOK_GROUP = "custos.index_hooks"
_hooks: list[IndexHook] | None = None


def index_hooks() -> list[IndexHook]:
    """The hooks registered under the ``custos.index_hooks`` entry points (loaded once), so
    that packages above the core keep derived tables without the core importing upward."""
    global _hooks
    if _hooks is None:
        _hooks = [ep.load() for ep in sorted(entry_points(group=HOOK_GROUP), key=lambda e: e.name)]
    return _hooks


def run_index_hooks(session: Session, package_id: str) -> None:
    """Tell every registered hook that the package's catalog rows changed (the caller commits).

    Called by :func:`index_object`, and by anything else that changes a package's rows
    (format identification, a tier change). A hook's error aborts the caller's transaction."""
    for hook in index_hooks():
        hook(session, package_id)


EVIDENCE_DIR = "extensions/custos-evidence-records"
_FILE_SEAL = re.compile(r"^files-.*\.json$")
_RECORD_NAME = re.compile(
    r"^(?P<subject>.+)\.(?P<tag>local|tsa-[0-9a-f]{12})-(?P<serial>[0-9]+)\.ers$"
)


def _sidecar(obj: StoredObject, version: str) -> str:
    """A version inventory's sha512, as its sidecar gives it."""
    return obj.read_bytes(f"{version}/inventory.json.sha512", limit=4096).decode().split()[0]


def _index_seals(
    session: Session, obj: StoredObject, package_id: str, inventory: dict[str, Any]
) -> None:
    """Seal rows for the evidence records the object carries (OCFL 1.1 §4.1 extension)."""
    held = sorted(p.removeprefix(EVIDENCE_DIR + "/") for p in obj.iter_files(EVIDENCE_DIR))
    if not held:
        return
    digest_of = {p: d for d, paths in inventory["manifest"].items() for p in paths}
    for name in inventory["versions"]:
        digest_of[f"{name}/inventory.json"] = _sidecar(obj, name)
    # A version's file seals (archive.proofs.fileseal): their subject is the sidecar's.
    for rel in held:
        version, _, leaf = rel.partition("/")
        if version in inventory["versions"] and "/" not in leaf and _FILE_SEAL.match(leaf):
            with obj.open(f"{EVIDENCE_DIR}/{rel}") as reader:
                sha512 = digest_stream(reader, ("sha512",)).digests["sha512"]
            digest_of[f"{version}/{leaf.removesuffix('.json')}"] = sha512
    for rel in held:
        if not rel.endswith(".ers"):
            continue
        m = _RECORD_NAME.match(rel)
        if not m or m["subject"] not in digest_of:
            raise StorageError(f"object {package_id}: unexpected evidence record {rel}")
        session.add(
            Seal(
                package_id=package_id,
                subject_path=m["subject"],
                subject_sha512=digest_of[m["subject"]],
                batch_id=_batch_of(session, obj.read_bytes(f"{EVIDENCE_DIR}/{rel}"), m["tag"]),
                record_path=f"{EVIDENCE_DIR}/{rel}",
            )
        )
    session.flush()


def _batch_of(session: Session, record: bytes, tag: str) -> int:
    """The seal batch of a record's newest token (the one its name carries), added if the
    catalog lacks it."""
    token = token_from_der(parse_record(record).last.token)
    batch_id = session.execute(
        select(SealBatch.id).where(
            SealBatch.root == token.imprint.hex(),
            SealBatch.serial_number == str(token.serial_number),
            SealBatch.tsa == tag,
        )
    ).scalar()
    if batch_id is None:
        row = SealBatch(
            created_at=token.gen_time,
            algorithm=token.algorithm,
            root=token.imprint.hex(),
            tsa=tag,
            token=token.token,
            gen_time=token.gen_time,
            serial_number=str(token.serial_number),
        )
        session.add(row)
        session.flush()
        batch_id = row.id
    return batch_id


def index_checkpoint_seals(session: Session, primary: Primary) -> None:
    """Seal rows for the evidence records beside the checkpoints the catalog knows (in the
    primary). Raises :class:`StorageError` if one cannot be read or is not one."""
    for cp_path, digest in session.execute(select(Checkpoint.path, Checkpoint.sha512)).all():
        for record in records_of(primary, cp_path):
            m = _RECORD_NAME.match(record.rpartition("/")[2])
            if m is None:
                raise StorageError(
                    f"unexpected evidence record {primary.name}:{record} beside {cp_path}"
                )
            session.add(
                Seal(
                    package_id=None,
                    subject_path=cp_path,
                    subject_sha512=digest,
                    batch_id=_batch_of(session, primary.read_bytes(record), m["tag"]),
                    record_path=record,
                )
            )
    session.flush()


def _index_access(session: Session, package_id: str, access: dict[str, Any]) -> None:
    """Tier assignments, consent and reviews as ``custos/access.json`` records them."""
    rows = [
        {
            "package_id": package_id,
            "path": a["path"],
            "tier": a["tier"],
            "sunset": date.fromisoformat(a["sunset"]) if a["sunset"] else None,
            "successor": a["successor"],
            "legal_basis": a["legal_basis"],
            "sunset_basis": a.get("sunset_basis", ""),
        }
        for a in access.get("assignments", [])
    ]
    if rows:
        session.execute(insert(AccessAssignment), rows)
    consents = [
        {"package_id": package_id, "path": c["path"], "scopes": ",".join(c["scopes"])}
        for c in access.get("consent", [])
    ]
    if consents:
        session.execute(insert(ConsentRecord), consents)
    reviews = [
        {
            "id": r["id"],
            "package_id": package_id,
            "path": r["path"],
            "sunset": date.fromisoformat(r["assignment"]["sunset"]),
            "successor": r["assignment"]["successor"],
            "opened_on": date.fromisoformat(r["opened_on"]),
            "outcome": r["outcome"],
            "decided_on": date.fromisoformat(r["decided_on"]) if r.get("decided_on") else None,
            "approvals": json.dumps(r.get("approvals", []), sort_keys=True),
            "extension": json.dumps(r["extension"], sort_keys=True) if r.get("extension") else None,
        }
        for r in access.get("reviews", [])
    ]
    if reviews:
        session.execute(insert(AccessReview), reviews)


def replace_access(session: Session, package_id: str, access: dict[str, Any]) -> None:
    """Replace the package's tier assignments, consent and reviews with ``access`` (the
    content of a new ``custos/access.json``). The caller commits and runs the index hooks."""
    session.execute(delete(AccessReview).where(AccessReview.package_id == package_id))
    session.execute(delete(AccessAssignment).where(AccessAssignment.package_id == package_id))
    session.execute(delete(ConsentRecord).where(ConsentRecord.package_id == package_id))
    _index_access(session, package_id, access)


def remove_package(session: Session, package_id: str) -> None:
    """Drop the catalog rows of a package derived from storage (before re-indexing it).

    Its events stay: they are entries of the append-only custody log. Its replica rows and
    replication plan go too (storage alone cannot vouch for copies elsewhere): the next
    replication run reads the copies back and records them again. Fixity coverage stays."""
    existing = session.get(Package, package_id)
    if existing is None:
        return
    deposit_id = existing.deposit_id
    session.execute(delete(File).where(File.package_id == package_id))
    session.execute(delete(AccessReview).where(AccessReview.package_id == package_id))
    session.execute(delete(AccessAssignment).where(AccessAssignment.package_id == package_id))
    session.execute(delete(ConsentRecord).where(ConsentRecord.package_id == package_id))
    session.execute(delete(Seal).where(Seal.package_id == package_id))
    session.execute(delete(Replica).where(Replica.package_id == package_id))
    session.execute(delete(ReplicationPlan).where(ReplicationPlan.package_id == package_id))
    session.execute(delete(StoredFile).where(StoredFile.package_id == package_id))
    session.execute(delete(Version).where(Version.package_id == package_id))
    session.execute(delete(Package).where(Package.id == package_id))
    session.execute(delete(Deposit).where(Deposit.id == deposit_id))
    session.flush()
