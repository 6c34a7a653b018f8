"""The files of each OCFL object that are not content files (``stored_files``): version
inventories and their sidecars, the object's declaration, evidence records, trust anchors and
any other extension file, with the digests fixity checks their copies against.

:func:`register` adds the rows a package lacks, reading the primary copy:

- ``vN/inventory.json`` must have the sha512 the catalog holds for version N (``versions``,
  which is also what its sidecar says); ``vN/inventory.json.sha512`` must be exactly the
  sidecar line for that digest (OCFL 1.1 §3.5.6);
- a trust anchor ``…/trust/<sha256>.pem`` must have the sha256 its name gives;
- the declaration ``0=ocfl_object_1.1`` must hold its fixed text;
- an evidence record must be a readable RFC 4998 record (its structure parses); it, or another
  extension file, is taken as the primary holds it when first seen (records are written once
  and never overwritten).

The primary is read through its location (:class:`~archive.storage.primary.Primary`): keys
listed by prefix, small files read whole, the others digested as they stream. A local primary
is also looked at for what a location does not list (links, special files: never followed,
never copied; see :func:`local_oddities`).

A primary file that does not match what the catalog says (or a record that does not parse) is
not registered: it is returned as a problem, which the fixity cycle reports (and records) every
time until it is put right, and replication does not spread it.

The root ``inventory.json`` and its sidecar are byte copies of the head version's, so they have
no rows of their own: a copy's expected digests are those of ``v<its version>/…``.

:func:`untracked` lists the files in an object's content folders that the catalog does not
list (a check of one package reports and records them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, exists, literal, select
from sqlalchemy.orm import Session

from archive.catalog.tables import Package, Seal, StoredFile, Version
from archive.catalog.upsert import insert_ignore
from archive.config import PRIMARY_LOCATION
from archive.digest import CopyResult, digest_bytes, digest_stream
from archive.errors import ProofError, StorageError
from archive.proofs.evidence import parse_record
from archive.storage import ocfl
from archive.storage.primary import MAX_SMALL_FILE, Primary, StoredObject
from archive.storage.replica import ObjectReader

#: Root files that mirror the head version's inventory and sidecar.
ROOT_FILES = {ocfl.ROOT_INVENTORY: "inventory.json", ocfl.ROOT_SIDECAR: "inventory.json.sha512"}
DECLARATION = b"ocfl_object_1.1\n"
#: Opens one stored file for reading: a location's ``open`` bound to its key.
Opener = Callable[[], ObjectReader]


@dataclass(frozen=True, slots=True)
class Problem:
    """A primary file that does not match what the catalog says it must be."""

    package_id: str
    path: str
    why: str

    def describe(self) -> str:
        return f"{PRIMARY_LOCATION}: {self.path}: {self.why}"


def root_source(path: str, version: int) -> str | None:
    """The version file a root inventory or sidecar copy must equal (None: not a root file)."""
    name = ROOT_FILES.get(path)
    return None if name is None else f"v{version}/{name}"


def sidecar_bytes(sha512: str) -> bytes:
    return f"{sha512}  inventory.json\n".encode()


def version_of(path: str) -> int:
    """N for a file in ``vN/``; 1 for the declaration; 0 for anything else (extensions)."""
    first = path.partition("/")[0]
    if path == ocfl.OBJECT_NAMASTE:
        return 1
    if "/" in path and first.startswith("v") and first[1:].isdigit():
        return int(first[1:])
    return 0


def is_content(path: str) -> bool:
    """Whether ``path`` is a content file (``vN/content/…``)."""
    parts = path.split("/")
    return len(parts) > 2 and parts[1] == "content" and parts[0] == f"v{version_of(path)}"


def kind_of(path: str) -> str:
    name = path.rpartition("/")[2]
    if path == ocfl.OBJECT_NAMASTE:
        return "declaration"
    if name == "inventory.json":
        return "inventory"
    if name.startswith("inventory.json."):
        return "sidecar"
    if name.endswith(".ers"):
        return "record"
    if "/trust/" in path and name.endswith(".pem"):
        return "anchor"
    return "extension"


def stale(session: Session, package_ids: Iterable[str] | None = None) -> list[str]:
    """Packages whose rows are incomplete by the catalog: a version inventory or an evidence
    record (``seals``) without a row, or no row at all. Found by the catalog itself, which
    reads no more than their ids into memory, whatever the archive's size."""
    ids = None if package_ids is None else list(package_ids)
    inventory = literal("v") + cast(Version.number, String) + literal("/inventory.json")
    versions = select(Version.package_id).where(
        ~exists().where(StoredFile.package_id == Version.package_id, StoredFile.path == inventory)
    )
    records = select(Seal.package_id).where(
        Seal.package_id.is_not(None),
        ~exists().where(
            StoredFile.package_id == Seal.package_id, StoredFile.path == Seal.record_path
        ),
    )
    if ids is not None:
        versions = versions.where(Version.package_id.in_(ids))
        records = records.where(Seal.package_id.in_(ids))
    found = set(session.execute(versions.distinct()).scalars())
    found.update(pid for pid in session.execute(records.distinct()).scalars() if pid is not None)
    return sorted(found)


def register(
    session: Session, primary: Primary, at: datetime, package_ids: Iterable[str] | None = None
) -> list[Problem]:
    """Add the rows the packages (default: every package) lack, reading their files at the
    primary; the caller commits. Raises :class:`StorageError` (:class:`LocationUnavailable`)
    when the primary cannot be read."""
    problems: list[Problem] = []
    todo = stale(session, package_ids)
    for i in range(0, len(todo), 500):
        chunk = todo[i : i + 500]
        packages = dict(
            session.execute(
                select(Package.id, Package.object_path).where(Package.id.in_(chunk))
            ).all()
        )
        heads = dict(
            session.execute(select(Package.id, Package.head).where(Package.id.in_(chunk))).all()
        )
        inventories: dict[str, dict[int, str]] = {}
        for pid, number, digest in session.execute(
            select(Version.package_id, Version.number, Version.inventory_sha512).where(
                Version.package_id.in_(chunk)
            )
        ):
            inventories.setdefault(pid, {})[number] = digest
        have: set[tuple[str, str]] = {
            (owner, path)
            for owner, path in session.execute(
                select(StoredFile.package_id, StoredFile.path).where(
                    StoredFile.package_id.in_(chunk)
                )
            )
        }
        rows: list[dict[str, Any]] = []
        for pid in chunk:
            if pid not in packages:
                continue
            obj = primary.object(packages[pid])
            for rel in _object_extras(obj, heads[pid]):
                if (pid, rel) in have:
                    continue
                row, why = expected_row(rel, _opener(obj, rel), inventories.get(pid, {}))
                if row is None:
                    problems.append(Problem(pid, rel, why))
                    continue
                rows.append({"package_id": pid, "path": rel, "added_at": at, **row})
        insert_ignore(session, StoredFile, rows, key=["package_id", "path"])
    return problems


def untracked(obj: StoredObject, head: int, known: set[str]) -> list[str]:
    """The files in the content folders of the object's versions 1 to ``head`` that ``known``
    (the catalog's content paths of the package) lacks, sorted: put there behind the archive's
    back, they are in no inventory the catalog holds, and no fixity check covers them (links
    and special files in a local primary's folders too, which its listing leaves out)."""
    found: set[str] = set()
    for number in range(1, head + 1):
        folder = f"v{number}/content"
        found.update(rel for rel in obj.iter_files(folder) if rel not in known)
        prefix = obj.rel_path + "/"
        for key in local_oddities(obj.primary, obj.key(folder)):
            if key.removeprefix(prefix) not in known:
                found.add(key.removeprefix(prefix))
    return sorted(found)


def local_oddities(primary: Primary, folder: str) -> list[str]:
    """Keys (relative to the storage root) of the links and special files under ``folder``
    of a local primary, sorted: a location lists plain files only, and these are never
    followed nor copied, but an operator must hear of them. Nothing for a primary elsewhere
    (a bucket holds no links)."""
    base = primary.local_path(folder)
    if base is None or primary.root is None:
        return []
    odd = []
    todo = [str(base)]
    while todo:  # entries' types from the folder listing: no call per file
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:  # gone, or not a folder; what cannot be listed the location reports
            continue
        for entry in entries:
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                odd.append(Path(entry.path).relative_to(primary.root).as_posix())
            elif entry.is_dir():
                todo.append(entry.path)
    return sorted(odd)


def _object_extras(obj: StoredObject, head: int) -> list[str]:
    """Every file of the object that is neither a content file nor a root inventory file,
    up to version ``head`` (a version appended meanwhile is registered once catalogued)."""
    found = []
    for rel in sorted(obj.iter_files()):
        if rel in ROOT_FILES or rel.endswith(".tmp"):
            continue
        if is_content(rel) or (
            rel.partition("/")[0] == f"v{version_of(rel)}" and version_of(rel) > head
        ):
            continue
        found.append(rel)
    return found


def _opener(obj: StoredObject, rel: str) -> Opener:
    return lambda: obj.open(rel)


def _small(open_: Opener, what: str) -> bytes:
    """A file read whole (a sidecar, a declaration, an evidence record)."""
    with open_() as reader:
        data = reader.read(MAX_SMALL_FILE + 1)
    if len(data) > MAX_SMALL_FILE:
        raise StorageError(f"{what} is larger than {MAX_SMALL_FILE} bytes, too large to read")
    return data


def _digest(open_: Opener) -> CopyResult:
    with open_() as reader:
        return digest_stream(reader, ("sha512", "sha256"))


def expected_row(
    rel: str, open_: Opener, inventories: dict[int, str]
) -> tuple[dict[str, Any] | None, str]:
    """The row's digests, or None and why the primary file cannot be registered (``open_``
    streams the primary's copy). Raises :class:`StorageError` if it cannot be read."""
    kind = kind_of(rel)
    number = version_of(rel)
    data: bytes | None = None
    if kind in ("inventory", "sidecar") and number in inventories:
        want = inventories[number]
        if kind == "sidecar":
            data = sidecar_bytes(want)
            if _small(open_, rel) != data:
                return None, f"DOES NOT MATCH the sidecar of v{number}'s inventory ({want})"
        else:
            got = _digest(open_)
            if got.digests["sha512"] != want:
                return None, (
                    f"DOES NOT MATCH the sha512 the catalog and sidecar hold for v{number}'s "
                    f"inventory ({got.digests['sha512']} instead of {want})"
                )
            return _values(kind, number, got.size, got.digests), ""
    elif kind == "declaration":
        data = DECLARATION
        if _small(open_, rel) != data:
            return None, "DOES NOT MATCH the OCFL object declaration (ocfl_object_1.1)"
    elif kind == "anchor":
        named = rel.rpartition("/")[2].removesuffix(".pem")
        got = _digest(open_)
        if got.digests["sha256"] != named:
            return None, f"DOES NOT MATCH the sha256 its name gives ({got.digests['sha256']})"
        return _values(kind, number, got.size, got.digests), ""
    if data is not None:
        digests = {"sha512": digest_bytes(data, "sha512"), "sha256": digest_bytes(data, "sha256")}
        return _values(kind, number, len(data), digests), ""
    if kind == "record":
        record = _small(open_, rel)
        try:
            parse_record(record)  # damage that breaks its structure is not taken as it is
        except ProofError as exc:
            return None, f"IS NOT A READABLE EVIDENCE RECORD ({exc.message})"
        digests = {
            "sha512": digest_bytes(record, "sha512"),
            "sha256": digest_bytes(record, "sha256"),
        }
        return _values(kind, number, len(record), digests), ""
    got = _digest(open_)
    return _values(kind, number, got.size, got.digests), ""


def _values(kind: str, version: int, size: int, digests: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": kind,
        "version": version,
        "size": size,
        "sha512": digests["sha512"],
        "sha256": digests["sha256"],
    }
