"""The primary copy: the OCFL storage root every host reads and writes through one interface.

The primary is a location (:class:`~archive.storage.replica.ReplicaLocation`): by default the
local storage root (``storage_root``), or any ``[locations.NAME]`` that ``primary_location``
names (a folder, or an S3 bucket with Object Lock that several hosts share). Readers ask it
for keys relative to the storage root, streaming (:meth:`Primary.open`), or use a
:class:`StoredObject` for one object's files; nothing outside this module needs a path into
the storage root, though a local primary offers one (:meth:`Primary.local_path`) for what can
use the kernel directly (``sendfile``, the fixity reader's helper process).

Objects and versions are built in this host's scratch space (``staging_dir``) and committed:

- to a local primary by rename, as :class:`~archive.storage.local.LocalStore` always did (a
  whole object, or a version folder, appears at once);
- to an S3 primary file by file through the location (every put proves its sha256 to the
  server), each read back in full before the next, in an order that makes the object exist
  only once it is whole: content and version inventories first, then the root inventory and
  its sidecar, and the object's declaration (``0=ocfl_object_1.1``) last, since that is what
  :meth:`Primary.has_object` and listings look for. A crash part way leaves keys no listing
  takes for an object, and nothing the catalog claims (it commits after).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from archive.digest import CopyResult, digest_bytes, digest_file, digest_stream
from archive.errors import StorageError
from archive.storage import ocfl
from archive.storage.local import LocalStore
from archive.storage.readback import read_back
from archive.storage.replica import (
    PARTIAL_SUFFIX,
    LocalFolderLocation,
    LocationUnavailable,
    ObjectLocked,
    ObjectMissing,
    ObjectReader,
    ReplicaLocation,
    prepare_storage_root,
)

#: Inventories and sidecars are read whole; anything larger than this is not one.
MAX_SMALL_FILE = 256 * 1024 * 1024
#: Files put into a primary reached through a location at once (see Primary._put_all).
PUT_THREADS = 8
#: Bytes per read when a stored file is copied to this host.
COPY_CHUNK = 1024 * 1024
#: The files of an object root that are written last, in this order (see the module text).
_LAST = ("inventory.json", "inventory.json.sha512", ocfl.OBJECT_NAMASTE)


class Primary:
    """The primary location, with this host's scratch space (a :class:`LocalStore` whose
    staging folder builds objects and versions)."""

    def __init__(self, location: ReplicaLocation, store: LocalStore) -> None:
        self.location = location
        self.store = store
        local = isinstance(location, LocalFolderLocation) and location.root == store.root
        #: The storage root on this host's filesystem, when the primary is the local one.
        self.root: Path | None = store.root if local else None

    @property
    def name(self) -> str:
        return self.location.name

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def is_local(self) -> bool:
        return self.root is not None

    def ensure(self) -> None:
        """Create the storage root (and this host's scratch space) if absent."""
        self.store.ensure() if self.is_local else self._ensure_remote()

    def _ensure_remote(self) -> None:
        try:
            self.store.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the scratch folder {self.store.staging}: {exc}",
                hint="set staging_dir to a writable folder on this host",
            ) from exc
        try:
            self.location.ensure()
            prepare_storage_root(self.location)
        except StorageError as exc:  # a host that cannot reach it, or is refused by it
            kind = LocationUnavailable if isinstance(exc, LocationUnavailable) else StorageError
            raise kind(
                f"the primary copy (location {self.name}, {self.uri}) cannot be used from "
                f"this host: {exc.message}",
                hint=exc.hint,
            ) from exc

    # -- reading ------------------------------------------------------------------------

    def local_path(self, key: str) -> Path | None:
        """The file behind ``key`` on this host's filesystem, for a local primary only."""
        return None if self.root is None else self.root.joinpath(*key.split("/"))

    def open(self, key: str) -> ObjectReader:
        """Stream the file at ``key`` (relative to the storage root). Raises
        :class:`ObjectMissing`, :class:`LocationUnavailable` or :class:`StorageError`."""
        return self.location.open(key)

    def read_bytes(self, key: str, *, limit: int = MAX_SMALL_FILE) -> bytes:
        """A small file whole (an inventory, a sidecar, Custos's metadata); at most ``limit``
        bytes, or :class:`StorageError`."""
        with self.open(key) as reader:
            data = reader.read(limit + 1)
        if len(data) > limit:
            raise StorageError(
                f"{self.name}:{key} is larger than {limit} bytes, too large to read whole"
            )
        return data

    def exists(self, key: str) -> bool:
        return self.location.stat(key) is not None

    def digest(self, key: str, algorithms: Iterable[str] = ("sha512", "sha256")) -> CopyResult:
        """The digests of the file at ``key``, its bytes read once (from its path, for a local
        primary). Raises :class:`ObjectMissing` or :class:`StorageError`."""
        path = self.local_path(key)
        if path is not None:
            try:
                return digest_file(path, algorithms)
            except FileNotFoundError as exc:
                raise ObjectMissing(f"{path}: nothing stored") from exc
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {exc}") from exc
        info = self.location.stat(key)
        with self.open(key) as reader:
            return digest_stream(reader, algorithms, size_hint=info.size if info else 0)

    def object(self, rel_path: str) -> StoredObject:
        """The object whose root is at ``rel_path`` (relative to the storage root)."""
        return StoredObject(self, rel_path)

    def has_object(self, object_id: str) -> bool:
        return self.exists(f"{ocfl.object_rel_path(object_id)}/{ocfl.OBJECT_NAMASTE}")

    def iter_objects(self) -> Iterator[str]:
        """Relative paths of every whole object in the root (found by its declaration)."""
        if self.root is not None:
            yield from self.store.iter_objects()
            return
        tail = "/" + ocfl.OBJECT_NAMASTE
        for key in self.location.iter_keys():
            if key.endswith(tail) and not key.startswith("extensions/"):
                yield key.removesuffix(tail)

    # -- writing ------------------------------------------------------------------------

    def install(self, staged_object: Path, object_id: str) -> str:
        """Commit a complete object built in scratch space; return its relative path.
        Raises :class:`StorageError` if an object with that id is already there."""
        if self.root is not None:
            return self.store.install(staged_object, object_id)
        rel = ocfl.object_rel_path(object_id)
        if self.has_object(object_id):
            raise StorageError(f"an object already exists at {self.name}:{rel} for {object_id}")
        files = sorted(
            (p.relative_to(staged_object).as_posix(), p)
            for p in staged_object.rglob("*")
            if p.is_file()
        )
        last = [(name, path) for name, path in files if name in _LAST]
        last.sort(key=lambda f: _LAST.index(f[0]))
        self._put_all([(f"{rel}/{name}", path) for name, path in files if name not in _LAST])
        for name, path in last:  # in order, once every other file is stored
            self._put(f"{rel}/{name}", path)
        return rel

    def _put_all(self, items: list[tuple[str, Path]]) -> None:
        """Put files whose order does not matter, :data:`PUT_THREADS` at a time: each put
        and read-back waits on the network far more than on this host."""
        if len(items) <= 1:
            for key, path in items:
                self._put(key, path)
            return
        with ThreadPoolExecutor(min(PUT_THREADS, len(items))) as pool:
            for done in [pool.submit(self._put, key, path) for key, path in items]:
                done.result()  # the first error, once every put started has ended

    def install_version(self, rel_path: str, version_dir: Path, number: int) -> None:
        """Commit version ``number`` built in scratch space (a ``vN`` folder holding its
        content and inventory) to the object at ``rel_path``, and make it the head: the
        version's files first, then the root inventory and its sidecar (sidecar last, as
        :func:`archive.storage.ocfl.promote_head` does)."""
        name = f"v{number}"
        if self.root is not None:
            object_root = self.root / rel_path
            version_dir.rename(object_root / name)
            ocfl.promote_head(object_root, number)
            return
        self._put_all(
            [
                (f"{rel_path}/{name}/{path.relative_to(version_dir).as_posix()}", path)
                for path in sorted(p for p in version_dir.rglob("*") if p.is_file())
            ]
        )
        for leaf in ("inventory.json", "inventory.json.sha512"):
            self._put(f"{rel_path}/{leaf}", version_dir / leaf)

    def write_bytes(self, key: str, data: bytes, *, fsync: bool = True) -> None:
        """Write a small file at ``key`` whole (a custody-log checkpoint, an evidence record,
        a file seal, a trust anchor), replacing what is there.

        Into a local primary as before: a hidden partial file beside the target (flushed to
        disk when ``fsync``), renamed over it. Into one reached through a location: from a
        file in this host's scratch space, read back before this returns (S3 keeps what was
        there as an earlier version). Raises :class:`StorageError`."""
        if self.root is not None:
            target = self.root.joinpath(*key.split("/"))
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    if fsync:
                        os.fsync(fh.fileno())
                os.replace(tmp, target)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                raise StorageError(
                    f"cannot write {target}: {exc}",
                    hint="check that the storage root is writable and has room",
                ) from exc
            return
        source = self.store.staging / f".custos-put-{uuid.uuid4().hex}"
        try:
            try:
                source.write_bytes(data)
            except OSError as exc:
                raise StorageError(
                    f"cannot write to the scratch folder {self.store.staging}: {exc}",
                    hint="set staging_dir to a writable folder on this host with room",
                ) from exc
            self._put(key, source)
        finally:
            with contextlib.suppress(OSError):  # nothing was written, or the folder is gone
                source.unlink(missing_ok=True)

    def put_file(self, key: str, source: Path) -> None:
        """Write one file at ``key`` (the custody log's checkpoints and their records),
        read back before this returns."""
        if self.root is not None:
            raise StorageError("put_file is for a primary reached through a location")
        self._put(key, source)

    def _put(self, key: str, source: Path) -> None:
        digests = digest_file(source).digests
        self.location.put(key, source, sha256=digests["sha256"], sha512=digests["sha512"])
        back = read_back(
            self.location,
            key,
            sha512=digests["sha512"],
            sha256=digests["sha256"],
            size=os.path.getsize(source),
        )
        if not back.ok:
            raise StorageError(
                f"the primary's copy was not stored whole: {back.describe()}",
                hint="check the primary location's health, then try again",
            )

    def remove_partial(self, object_id: str) -> tuple[int, int]:
        """Remove what an interrupted install left of ``object_id`` (never a whole object:
        one whose declaration is there); return how many files were removed, and how many
        stay stored but read as absent because the location's lock (Object Lock retention)
        keeps every version written until it runs out. No listing takes either for an
        object, as the declaration is missing."""
        rel = ocfl.object_rel_path(object_id)
        if self.has_object(object_id):
            raise StorageError(f"{self.name}:{rel} holds a whole object: not removing it")
        if self.root is not None:
            return 0, 0  # a local install is one rename: nothing partial is ever left
        return self._remove_keys(sorted(self.location.iter_keys(rel + "/")))

    def _remove_keys(self, keys: list[str]) -> tuple[int, int]:
        removed = hidden = 0
        for key in keys:
            try:
                self.location.delete(key)
            except ObjectMissing:
                continue
            except ObjectLocked:
                hide = getattr(self.location, "hide", None)
                if hide is None:
                    raise
                hide(key)
                hidden += 1
                continue
            removed += 1
        return removed, hidden

    def remove_orphan(self, object_id: str) -> int:
        """Remove a whole object the catalog does not hold (recovery found its deposit held
        under another package), its declaration first so that it stops being an object at
        once; return how many of its files remain stored, read as absent, because the
        location's lock (Object Lock retention) keeps every version written until it runs
        out. The caller makes sure the catalog does not claim it."""
        rel = ocfl.object_rel_path(object_id)
        if self.root is not None:
            target = self.root / rel
            if target.is_dir():
                shutil.rmtree(target)
                for parent in target.parents:  # the layout's folders it alone used
                    if parent == self.root or any(parent.iterdir()):
                        break
                    parent.rmdir()
            return 0
        declaration = f"{rel}/{ocfl.OBJECT_NAMASTE}"
        keys = sorted(self.location.iter_keys(rel + "/"), key=lambda k: k != declaration)
        return self._remove_keys(keys)[1]


class StoredObject:
    """One object in the primary: its files by path relative to the object root."""

    def __init__(self, primary: Primary, rel_path: str) -> None:
        self.primary = primary
        self.rel_path = rel_path

    def __repr__(self) -> str:
        return f"StoredObject({self.primary.name}:{self.rel_path})"

    def key(self, path: str) -> str:
        return f"{self.rel_path}/{path}"

    def where(self, path: str = "") -> str:
        """For people: ``primary:<key>`` (or the file's path, for a local primary)."""
        local = self.local_path(path) if path else self.primary.local_path(self.rel_path)
        return str(local) if local is not None else f"{self.primary.name}:{self.key(path)}"

    def local_path(self, path: str) -> Path | None:
        return self.primary.local_path(self.key(path))

    def open(self, path: str) -> ObjectReader:
        return self.primary.open(self.key(path))

    def read_bytes(self, path: str, *, limit: int = MAX_SMALL_FILE) -> bytes:
        return self.primary.read_bytes(self.key(path), limit=limit)

    def exists(self, path: str) -> bool:
        return self.primary.exists(self.key(path))

    def iter_files(self, under: str = "") -> Iterator[str]:
        """Every file's path relative to the object root (in the folder ``under`` only, if
        given); in no set order."""
        prefix = self.rel_path + "/"
        folder = prefix + under.strip("/") + "/" if under else prefix
        for key in self.primary.location.iter_keys(folder):
            yield key.removeprefix(prefix)

    def digest(self, path: str, algorithms: Iterable[str] = ("sha512", "sha256")) -> CopyResult:
        """A file's digests, its bytes read once (see :meth:`Primary.digest`)."""
        return self.primary.digest(self.key(path), algorithms)

    def size(self, path: str) -> int:
        """A file's size, from the location (no byte read). Raises :class:`ObjectMissing`."""
        info = self.primary.location.stat(self.key(path))
        if info is None:
            raise ObjectMissing(f"{self.where(path)}: nothing stored")
        return info.size

    @contextmanager
    def local_files(
        self, paths: Sequence[str], scratch: Callable[[], AbstractContextManager[Path]]
    ) -> Iterator[dict[str, Path]]:
        """The files at ``paths`` (relative to the object root) as files on this host, for
        tools that need a path (format identification, text extraction, migration): a local
        primary's own files, or else copies streamed into a folder ``scratch()`` gives (this
        host's scratch space, which the caller's recovery cleans after a crash), removed
        when the block ends. Each copy keeps its file's extension (identifiers look at it).
        Callers bound ``paths`` (a batch), as the copies take that much room."""
        if self.primary.root is not None:
            yield {p: self.primary.root / self.rel_path / p for p in paths}
            return
        with scratch() as folder:
            out: dict[str, Path] = {}
            for i, path in enumerate(paths):
                target = folder / f"{i}{PurePosixPath(path).suffix[:16]}"
                with self.open(path) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, COPY_CHUNK)
                out[path] = target
            yield out

    def inventory(self, version: str | None = None) -> dict[str, Any]:
        """An inventory (the root's, or ``version``'s), checked against its sidecar (§3.5.6).
        Raises :class:`StorageError` if it is missing, unreadable or disagrees."""
        folder = f"{version}/" if version else ""
        name = f"{folder}inventory.json"
        try:
            data = self.read_bytes(name)
            sidecar = self.read_bytes(f"{name}.sha512", limit=4096).decode().split()
        except (ObjectMissing, UnicodeDecodeError) as exc:
            raise StorageError(
                f"cannot read the OCFL inventory at {self.where(name)}: {exc}"
            ) from exc
        if not sidecar or sidecar[0].lower() != digest_bytes(data, "sha512"):
            raise StorageError(
                f"OCFL inventory {self.where(name)} does not match its sidecar digest",
                hint="the object may be damaged: run a fixity check and repair from a replica",
            )
        try:
            inventory: dict[str, Any] = json.loads(data)
        except ValueError as exc:
            raise StorageError(
                f"OCFL inventory {self.where(name)} is not valid JSON: {exc}"
            ) from exc
        return inventory

    def inventory_digest(self) -> str:
        """The root inventory's sha512, as its sidecar gives it."""
        return self.read_bytes("inventory.json.sha512", limit=4096).decode().split()[0]
