"""OCFL 1.1 objects and storage roots, written by our own code and read back strictly.

ocfl-py creates objects in time that grows with the square of the file count (50,000 files
took minutes), so objects are written here, streaming, and ocfl-py is used only as the
independent validator in the tests. Section numbers refer to the OCFL 1.1 specification.

Layout of every Custos object (logical paths):
  ``bag/...``      the bag exactly as received (payload under ``bag/data/``, tag files beside it)
  ``custos/...``   Custos metadata: ``deposit.json``, ``bag-info.json``, ``premis.xml``,
                   ``formats.json``; format migrations' outputs under ``custos/derivatives/``
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive.digest import CopyResult, digest_bytes, writing
from archive.errors import StorageError

OCFL_VERSION = "1.1"
ROOT_NAMASTE = "0=ocfl_1.1"
OBJECT_NAMASTE = "0=ocfl_object_1.1"
INVENTORY_TYPE = "https://ocfl.io/1.1/spec/#inventory"
LAYOUT_EXTENSION = "0003-hash-and-id-n-tuple-storage-layout"
LAYOUT_CONFIG = {
    "extensionName": LAYOUT_EXTENSION,
    "digestAlgorithm": "sha256",
    "tupleSize": 3,
    "numberOfTuples": 3,
}
DIGEST_ALGORITHM = "sha512"
FIXITY_ALGORITHMS = ("sha256",)
#: The object's root inventory and its sidecar (§3.5, §3.5.6): byte copies of the head
#: version's. Replication writes them last, so a replica holding them is complete.
ROOT_INVENTORY = "inventory.json"
ROOT_SIDECAR = f"inventory.json.{DIGEST_ALGORITHM}"


@dataclass(frozen=True, slots=True)
class ContentEntry:
    """One content file as written: where it lives and what it digests to."""

    logical_path: str
    content_path: str  # relative to the object root, e.g. v1/content/bag/data/a.txt
    size: int
    sha512: str
    sha256: str


def prune_empty_dirs(root: Path) -> list[str]:
    """Remove empty folders below ``root`` (an OCFL content directory must hold none, E024);
    return their paths relative to ``root``, so that the caller can record them."""
    removed: list[str] = []
    for dirpath, _dirnames, _filenames in sorted(os.walk(root), key=lambda w: -len(w[0])):
        path = Path(dirpath)
        if path != root and not any(path.iterdir()):
            path.rmdir()
            removed.append(path.relative_to(root).as_posix())
    return sorted(removed)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_root_files() -> dict[str, bytes]:
    """The files that declare a storage root (§4.1): the layout extension's config, the layout
    description and, last, the root NAMASTE file; relative path -> bytes."""
    layout = {
        "extension": LAYOUT_EXTENSION,
        "description": "Hashed truncated n-tuple trees with object id encapsulating "
        "directory: three tuples of three characters of the sha256 of the object id, "
        "then the percent-encoded id.",
    }
    return {
        f"extensions/{LAYOUT_EXTENSION}/config.json": (
            json.dumps(LAYOUT_CONFIG, indent=2) + "\n"
        ).encode(),
        "ocfl_layout.json": (json.dumps(layout, indent=2) + "\n").encode(),
        ROOT_NAMASTE: b"ocfl_1.1\n",
    }


def init_root(root: Path) -> None:
    """Create an OCFL storage root at ``root`` unless one is there (§4.1, §4.3).

    Raises :class:`StorageError` if ``root`` is a non-empty folder that is not a storage root.
    """
    namaste = root / ROOT_NAMASTE
    if namaste.is_file():
        return
    if root.exists() and any(root.iterdir()):
        raise StorageError(
            f"{root} is not empty and is not an OCFL storage root (no {ROOT_NAMASTE})",
            hint="point storage_root at an empty folder or at an existing Custos storage root",
        )
    for rel, data in storage_root_files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def object_rel_path(object_id: str) -> str:
    """The object root, relative to the storage root, under extension 0003."""
    h = hashlib.sha256(object_id.encode("utf-8")).hexdigest()
    encoded = "".join(
        c if re.fullmatch(r"[A-Za-z0-9_-]", c) else "".join(f"%{b:02x}" for b in c.encode())
        for c in object_id
    )
    if len(encoded) > 100:
        encoded = f"{encoded[:100]}-{h}"
    return "/".join([h[0:3], h[3:6], h[6:9], encoded])


def iter_object_roots(root: Path) -> Iterator[Path]:
    """Every object root under a storage root, found by its NAMASTE file (§4.2)."""
    for dirpath, dirnames, filenames in os.walk(root):
        if OBJECT_NAMASTE in filenames:
            dirnames.clear()
            yield Path(dirpath)
        elif dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != "extensions"]


def _version_dir(number: int) -> str:
    return f"v{number}"


@dataclass
class StagedVersion:
    """A version of an object being written in staging, file by file, before it is installed."""

    object_id: str
    object_dir: Path
    number: int = 1
    entries: list[ContentEntry] = field(default_factory=list)
    fsync: bool = True

    @property
    def version_dir(self) -> Path:
        return self.object_dir / _version_dir(self.number)

    def _target(self, logical_path: str) -> tuple[str, Path]:
        content_path = f"{_version_dir(self.number)}/content/{logical_path}"
        target = self.object_dir / content_path
        target.parent.mkdir(parents=True, exist_ok=True)
        return content_path, target

    def register(self, logical_path: str, content_path: str, result: CopyResult) -> None:
        """Record a file copied into this version's content folder (by the ingest's receipt,
        which digests it on the way)."""
        self.entries.append(
            ContentEntry(
                logical_path,
                content_path,
                result.size,
                result.digests["sha512"],
                result.digests["sha256"],
            )
        )

    def add_bytes(self, logical_path: str, data: bytes) -> ContentEntry:
        content_path, target = self._target(logical_path)
        with writing(target), open(target, "xb") as fh:
            fh.write(data)
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())
        entry = ContentEntry(
            logical_path,
            content_path,
            len(data),
            digest_bytes(data, "sha512"),
            digest_bytes(data, "sha256"),
        )
        self.entries.append(entry)
        return entry

    def add_file(self, logical_path: str, source: Path, digested: CopyResult) -> ContentEntry:
        """Move a finished file into this version's content folder (a rename: ``source`` must
        be in staging, on the storage root's filesystem). ``digested`` is what the caller
        computed when it read the file, so the bytes are not read again.

        Raises :class:`StorageError` if the target exists or the file cannot be moved."""
        content_path, target = self._target(logical_path)
        if target.exists():
            raise StorageError(f"{content_path} is already staged in version {self.number}")
        try:
            source.rename(target)
        except OSError as exc:
            raise StorageError(f"cannot move {source} into {target}: {exc}") from exc
        if self.fsync:
            with open(target, "rb") as fh:
                os.fsync(fh.fileno())
        entry = ContentEntry(
            logical_path,
            content_path,
            digested.size,
            digested.digests["sha512"],
            digested.digests["sha256"],
        )
        self.entries.append(entry)
        return entry

    def build_inventory(
        self,
        *,
        created: datetime,
        message: str,
        user_name: str,
        user_address: str,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The inventory for this version (§3.5), carrying forward ``previous`` if given."""
        manifest: dict[str, list[str]] = {}
        fixity: dict[str, dict[str, list[str]]] = {"sha256": {}}
        versions: dict[str, Any] = {}
        state: dict[str, list[str]] = {}
        if previous is not None:
            manifest = {k: list(v) for k, v in previous["manifest"].items()}
            for alg, block in previous.get("fixity", {}).items():
                fixity[alg] = {k: list(v) for k, v in block.items()}
            versions = dict(previous["versions"])
            head = previous["versions"][previous["head"]]["state"]
            state = {k: list(v) for k, v in head.items()}
        replaced = {e.logical_path for e in self.entries}
        if replaced and state:
            for digest in list(state):
                kept = [p for p in state[digest] if p not in replaced]
                if kept:
                    state[digest] = kept
                else:
                    del state[digest]
        for e in sorted(self.entries, key=lambda x: x.content_path):
            manifest.setdefault(e.sha512, []).append(e.content_path)
            fixity["sha256"].setdefault(e.sha256, []).append(e.content_path)
            state.setdefault(e.sha512, []).append(e.logical_path)
        versions[_version_dir(self.number)] = {
            "created": created.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "message": message,
            "user": {"name": user_name, "address": user_address},
            "state": {k: sorted(v) for k, v in state.items()},
        }
        return {
            "id": self.object_id,
            "type": INVENTORY_TYPE,
            "digestAlgorithm": DIGEST_ALGORITHM,
            "head": _version_dir(self.number),
            "contentDirectory": "content",
            "fixity": fixity,
            "manifest": manifest,
            "versions": versions,
        }

    def write_inventory(self, inventory: dict[str, Any]) -> str:
        """Write the inventory and its sidecar into the version folder and, for a new object,
        the object root with its NAMASTE file (§3.1, §3.7). Returns the inventory's sha512."""
        # No indent: json's C encoder is used only without one (10x faster on 50,000 files).
        data = (json.dumps(inventory, ensure_ascii=False) + "\n").encode("utf-8")
        digest = digest_bytes(data, "sha512")
        sidecar = f"{digest}  inventory.json\n".encode()
        targets = [self.version_dir]
        if self.number == 1:
            targets.append(self.object_dir)
            _write_file(self.object_dir / OBJECT_NAMASTE, b"ocfl_object_1.1\n", self.fsync)
        for folder in targets:
            folder.mkdir(parents=True, exist_ok=True)
            _write_file(folder / "inventory.json", data, self.fsync)
            _write_file(folder / "inventory.json.sha512", sidecar, self.fsync)
        return digest


def _write_file(path: Path, data: bytes, fsync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(path)


def read_inventory(object_root: Path, version: str | None = None) -> dict[str, Any]:
    """Read an inventory and check it against its sidecar (§3.5.6).

    Raises :class:`StorageError` if it is missing, unreadable, or disagrees with its sidecar.
    """
    folder = object_root / version if version else object_root
    inv_path = folder / "inventory.json"
    try:
        data = inv_path.read_bytes()
        sidecar = (folder / "inventory.json.sha512").read_text().split()
    except OSError as exc:
        raise StorageError(f"cannot read the OCFL inventory at {inv_path}: {exc}") from exc
    if not sidecar or sidecar[0].lower() != digest_bytes(data, "sha512"):
        raise StorageError(
            f"OCFL inventory {inv_path} does not match its sidecar digest",
            hint="the object may be damaged: run a fixity check and repair from a replica",
        )
    try:
        inventory: dict[str, Any] = json.loads(data)
    except ValueError as exc:
        raise StorageError(f"OCFL inventory {inv_path} is not valid JSON: {exc}") from exc
    return inventory


def version_number(name: str) -> int:
    if not name.startswith("v") or not name[1:].isdigit():
        raise StorageError(f"not an OCFL version directory name: {name!r}")
    return int(name[1:])


def parse_created(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def head_state(inventory: dict[str, Any]) -> dict[str, str]:
    """Map each logical path of the head version to its content path."""
    head = inventory["versions"][inventory["head"]]["state"]
    out: dict[str, str] = {}
    for digest, paths in head.items():
        content = inventory["manifest"][digest][0]
        for p in paths:
            out[p] = content
    return out


def promote_head(object_root: Path, number: int) -> None:
    """Make version ``number``'s inventory the object's root inventory (§3.5.1).

    The sidecar goes last: a crash between the two renames leaves a root inventory whose
    sidecar disagrees, which :func:`complete_pending_version` repairs from the version copy.
    """
    folder = object_root / _version_dir(number)
    for name in ("inventory.json", "inventory.json.sha512"):
        tmp = object_root / f"{name}.tmp"
        tmp.write_bytes((folder / name).read_bytes())
        tmp.replace(object_root / name)


def complete_pending_version(object_root: Path) -> int | None:
    """Finish a version installed in the object but not yet promoted; return its number.

    A version folder beyond the root inventory's head, holding a complete inventory whose
    head is that version, is promoted; anything else is left alone.
    """
    try:
        head = version_number(json.loads((object_root / "inventory.json").read_bytes())["head"])
    except (OSError, ValueError, KeyError):
        head = 0
    numbers = sorted(
        int(p.name[1:])
        for p in object_root.iterdir()
        if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit()
    )
    if not numbers:
        return None
    newest = numbers[-1]
    sidecar_ok = True
    try:
        read_inventory(object_root)
    except StorageError:
        sidecar_ok = False
    if newest <= head and sidecar_ok:
        return None
    inv = read_inventory(object_root, _version_dir(newest))
    if inv.get("head") != _version_dir(newest):
        raise StorageError(f"{object_root}/v{newest} holds an inventory for {inv.get('head')}")
    promote_head(object_root, newest)
    return newest
