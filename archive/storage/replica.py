"""Replica storage locations: one interface for every place a copy of an OCFL object is kept.

The contract, which ``tests/unit/archive/test_replica_contract.py`` runs against every
implementation:

- A location maps *keys* (``/``-separated relative paths, checked by :func:`check_key` before
  any request is made) to stored bytes. ``put`` streams a local file in and proves the bytes
  arrived intact against the digests it is given; ``open`` streams them out; ``stat`` says what
  is stored (size, version, retention) without reading it; ``iter_keys`` lists keys by prefix;
  ``delete`` removes what no lock protects.
- A location never judges a copy: ``readback.read_back`` reads every byte of it and returns a
  verdict against the catalog's digests (sizes, ETags and server checksums are not trusted).

This module holds the protocol, the shared values and errors, the local-folder location and
:func:`prepare_storage_root` (a location declared as an OCFL storage root); ``locations.py``
opens a location from its settings, ``readback.py`` reads a copy back; ``s3.py`` holds the
S3 location and is the only module that imports boto3. Replication (the one copier of
objects to locations), fixity sweeps and repair are built on top of it, in :mod:`fixity`.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat as stat_module
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from archive.digest import Digest, copy_with_digests, digest_file
from archive.errors import StorageError
from archive.storage import ocfl

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


#: S3's limit on a key, in UTF-8 bytes; the same limit is kept for every location.
MAX_KEY_BYTES = 1024
#: A local location writes ``.<name>.<random>.custos-partial`` beside the target, then renames
#: it over the target. Keys cannot end with it, and listings skip it.
PARTIAL_SUFFIX = ".custos-partial"


# -- errors -------------------------------------------------------------------------------


class KeyRejected(StorageError):
    """A storage key that is malformed or could escape its location; refused before any
    request is made."""


class ObjectMissing(StorageError):
    """Nothing is stored under the key (or under the requested version of it)."""


class ChecksumMismatch(StorageError):
    """Bytes did not match the digest they were sent with; the location kept nothing new
    under the key (unless the message says otherwise)."""


class LocationUnavailable(StorageError):
    """The location could not be reached at all (connection refused, timed out)."""


class ObjectLocked(StorageError):
    """A delete was refused because the object is under retention or a legal hold."""

    def __init__(
        self,
        location: str,
        key: str,
        *,
        mode: str | None,
        retain_until: datetime | None,
        version_id: str | None = None,
        legal_hold: bool = False,
        detail: str = "",
    ) -> None:
        what = f"{key} (version {version_id})" if version_id else key
        locks = []
        if mode and retain_until:
            locks.append(f"under {mode} retention until {retain_until:%Y-%m-%d %H:%M:%S %Z}")
        if legal_hold:
            locks.append("under a legal hold")
        lock = " and ".join(locks) or "locked" + (f" ({detail})" if detail else "")
        super().__init__(
            f"location {location}: {what} is {lock}; the archive never deletes locked objects",
            hint="to replace a damaged copy, put it again (a new version is written and the "
            "locked one stays); nothing can remove a COMPLIANCE-locked version before its date",
        )
        self.location = location
        self.key = key
        self.mode = mode
        self.retain_until = retain_until
        self.version_id = version_id
        self.legal_hold = legal_hold


# -- keys -----------------------------------------------------------------------------------


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe storage key; raise :class:`KeyRejected` otherwise.

    A key is a relative ``/``-separated path: not empty, not absolute, no empty, ``.`` or
    ``..`` segment, no backslash or control character, at most :data:`MAX_KEY_BYTES` bytes,
    and not ending with the reserved :data:`PARTIAL_SUFFIX`.
    """
    reason = _key_problem(key)
    if reason:
        raise KeyRejected(
            f"refused storage key {key!r}: {reason}",
            hint="keys are relative paths inside a location; this is a bug in the caller",
        )
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is ``""`` or the start of a safe key (it may end with ``/``)."""
    if prefix == "":
        return prefix
    reason = _key_problem(prefix.removesuffix("/"))
    if reason:
        raise KeyRejected(f"refused key prefix {prefix!r}: {reason}")
    return prefix


@functools.cache
def _proc_fd() -> bool:
    """Whether ``/proc/self/fd`` shows the path of each open file descriptor (Linux)."""
    return Path("/proc/self/fd").is_dir()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _key_problem(key: object) -> str:
    if not isinstance(key, str) or key == "":
        return "empty"
    if key.startswith("/"):
        return "absolute (starts with '/')"
    if "\\" in key:
        return "contains a backslash"
    if _CONTROL.search(key):
        return "contains a control character"
    segments = key.split("/")
    if "" in segments:
        return "has an empty segment ('//' or a trailing '/')"
    if "." in segments or ".." in segments:
        return "has a '.' or '..' segment"
    if segments[-1].endswith(PARTIAL_SUFFIX):
        return f"names ending with {PARTIAL_SUFFIX} are reserved"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    return ""


def check_digests(sha256: str, sha512: str | None) -> None:
    """Raise ``ValueError`` for a malformed digest (a caller's bug, not a storage fault)."""
    Digest("sha256", sha256)
    if sha512 is not None:
        Digest("sha512", sha512)


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a location says about a stored object, without reading its bytes.

    ``server_checksum`` is what an S3 server reports (base64 sha256, or ``<base64>-<parts>``
    for an object sent in parts): information only, never a substitute for ``readback.read_back``.
    """

    key: str
    size: int
    version_id: str | None = None
    lock_mode: str | None = None
    retain_until: datetime | None = None
    legal_hold: bool = False
    server_checksum: str | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"negative size for {self.key}")
        if self.retain_until is not None and self.retain_until.tzinfo is None:
            raise ValueError("retain_until must carry a time zone")

    def locked_at(self, moment: datetime) -> bool:
        """Whether retention or a legal hold forbids deleting this version at ``moment``."""
        return self.legal_hold or (self.retain_until is not None and self.retain_until > moment)


@dataclass(frozen=True, slots=True)
class PutResult:
    """One stored copy: where, which version, how long it is locked, and what was verified.

    ``verified`` names the digests that were compared with the bytes actually stored or sent
    (the local folder digests its copy; S3 has the server check sha256, and for an object sent
    in parts the client checks the whole file too).
    """

    location: str
    key: str
    size: int
    sha256: str
    sha512: str | None
    verified: tuple[str, ...]
    version_id: str | None = None
    lock_mode: str | None = None
    retain_until: datetime | None = None

    def __post_init__(self) -> None:
        check_digests(self.sha256, self.sha512)
        if not self.verified or not set(self.verified) <= {"sha256", "sha512"}:
            raise ValueError(f"verified must name sha256 and/or sha512, not {self.verified}")


class ObjectReader(io.RawIOBase):
    """A streaming read of one stored object version: ``read``/``readinto`` until ``b""``.

    Errors while reading are :class:`StorageError`; close it (or use ``with``) when done.
    """

    def __init__(self, key: str, version_id: str | None) -> None:
        super().__init__()
        self.key = key
        self.version_id = version_id

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        data = super().read(size)
        return b"" if data is None else data  # None is only for non-blocking streams


# -- the protocol ---------------------------------------------------------------------------


class ReplicaLocation(Protocol):
    """A place that holds copies of OCFL objects, by key."""

    @property
    def name(self) -> str:
        """The location's key in the settings (``[locations.<name>]``)."""
        ...

    @property
    def uri(self) -> str:
        """Where it is, for people and events (``file:///...``, ``s3://bucket/prefix/``)."""
        ...

    def ensure(self) -> None:
        """Create the location if absent and check it is usable; raise :class:`StorageError`
        (naming what to fix) otherwise."""
        ...

    def put(self, key: str, source: Path, *, sha256: str, sha512: str | None = None) -> PutResult:
        """Stream ``source`` into ``key`` and prove the stored bytes match ``sha256`` (and
        ``sha512`` where the location can check it in the same pass).

        A key that exists is replaced (local folder) or gets a new version (S3; the old one
        stays readable). Raises :class:`KeyRejected`, :class:`ChecksumMismatch` (nothing new is
        visible under the key), :class:`LocationUnavailable` or :class:`StorageError`.
        """
        ...

    def open(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        """Stream the bytes stored under ``key`` (the latest version unless one is named).

        Raises :class:`ObjectMissing`, :class:`KeyRejected`, :class:`LocationUnavailable` or
        :class:`StorageError`.
        """
        ...

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        """What is stored under ``key``, or ``None`` if nothing is."""
        ...

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix`` (a string prefix, as in S3); order unspecified."""
        ...

    def delete(self, key: str) -> None:
        """Remove what is stored under ``key``.

        Raises :class:`ObjectLocked` without removing anything if retention or a legal hold
        protects any version of it, :class:`ObjectMissing` if nothing is stored.
        """
        ...


# -- the local folder -----------------------------------------------------------------------


class _FileReader(ObjectReader):
    def __init__(self, key: str, raw: io.FileIO, path: str | Path) -> None:
        super().__init__(key, None)
        self._raw = raw
        self._path = path

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        try:
            return self._raw.readinto(buffer) or 0
        except OSError as exc:
            raise StorageError(f"cannot read {self._path}: {exc}") from exc

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


class LocalFolderLocation:
    """A replica location in a local folder (another disk, a mounted share).

    A put is copied to a hidden partial file beside its target while sha512 and sha256 are
    computed, compared with the expected digests, flushed, then renamed over the key (atomic
    within one filesystem); nothing else is left in the folder, so a replica of OCFL objects
    is a valid storage root. A process killed mid-put can leave a partial file, which listings
    skip. A folder keeps one copy per key: no versions, no locks.
    """

    kind = "local"

    def __init__(self, name: str, root: Path, *, fsync: bool = True) -> None:
        self.name = name
        self.root = root.resolve()
        self._root_text = str(self.root)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"LocalFolderLocation({self.name!r}, {str(self.root)!r})"

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"location {self.name}: cannot create the folder {self.root}: {exc}",
                hint=f"check path under [locations.{self.name}] and its permissions",
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(
                f"location {self.name}: the folder {self.root} is not writable",
                hint="give the archive's user write access to it",
            )

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _require_inside(self, folder: Path) -> None:
        """Refuse a folder that resolves outside the root (a planted symbolic link)."""
        if not folder.resolve().is_relative_to(self.root):
            raise StorageError(
                f"location {self.name}: {folder} leads outside {self.root} (a symbolic link?)",
                hint="a replica folder holds plain folders and files only: remove the link",
            )

    def put(self, key: str, source: Path, *, sha256: str, sha512: str | None = None) -> PutResult:
        target = self._path(key)
        check_digests(sha256, sha512)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")
        self._require_inside(target.parent)  # before creating anything through a link
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as src:
                size_hint = os.fstat(src.fileno()).st_size
                copied = copy_with_digests(
                    src, tmp, ("sha512", "sha256"), size_hint=size_hint, fsync=self.fsync
                )
        except OSError as exc:
            self._discard(tmp)
            raise StorageError(
                f"location {self.name}: cannot copy {source} to {key}: {exc}",
                hint=f"check that {source} is readable and {self.root} has room",
            ) from exc
        expected = {"sha256": sha256, "sha512": sha512}
        for alg, want in expected.items():
            if want is not None and copied.digests[alg] != want:
                self._discard(tmp)
                raise ChecksumMismatch(
                    f"location {self.name}: {source} does not match the expected {alg} for "
                    f"{key} (expected {want}, copied {copied.digests[alg]}); nothing was stored",
                    hint="the source changed or is damaged: check it before replicating it",
                )
        try:
            os.replace(tmp, target)
            if self.fsync:
                ocfl.fsync_dir(target.parent)
        except OSError as exc:
            self._discard(tmp)
            raise StorageError(f"location {self.name}: cannot store {key}: {exc}") from exc
        return PutResult(
            self.name,
            key,
            copied.size,
            copied.digests["sha256"],
            copied.digests["sha512"],
            verified=("sha512", "sha256") if sha512 is not None else ("sha256",),
        )

    def _discard(self, tmp: Path) -> None:
        """Remove a partial file and the folders left empty by it (OCFL forbids empty ones)."""
        tmp.unlink(missing_ok=True)
        self._prune(tmp.parent)

    def _prune(self, folder: Path) -> None:
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def _open_inside(self, path: str) -> int:
        """Open ``path`` for reading, refusing a folder on its way that leads outside the root
        and a link in its place. Where ``/proc/self/fd`` shows where an open folder really is
        (Linux), the folder is opened once, its real path checked and the file opened relative
        to it (a few system calls, no gap between the check and the open, and no file outside
        the root is ever opened, not even a device); elsewhere the folder's path is resolved
        first. Strings, not ``Path``: this runs once per copy."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        parent, name = os.path.split(path)
        if not _proc_fd():
            self._require_inside(Path(parent))
            return os.open(path, flags)
        folder = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            real = os.readlink(f"/proc/self/fd/{folder}")
            if real != self._root_text and not real.startswith(self._root_text + "/"):
                raise StorageError(
                    f"location {self.name}: {parent} leads outside {self.root} (a symbolic link?)",
                    hint="a replica folder holds plain folders and files only: remove the link",
                )
            return os.open(name, flags, dir_fd=folder)
        finally:
            os.close(folder)

    def open(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        # A checked key has no empty, "." or ".." segment and no leading "/": joining it
        # with a "/" is os.path.join's result, for less (this runs once per copy).
        path = f"{self._root_text}/{check_key(key)}"
        self._no_versions(version_id)
        try:
            fd = self._open_inside(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectMissing(f"location {self.name}: nothing stored under {key}") from exc
        except OSError as exc:
            raise StorageError(f"location {self.name}: cannot open {path}: {exc}") from exc
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ObjectMissing(f"location {self.name}: {key} is a folder, not a stored object")
        return _FileReader(key, io.FileIO(fd, "rb", closefd=True), path)

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        path = self._path(key)
        self._no_versions(version_id)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"location {self.name}: cannot stat {path}: {exc}") from exc
        if stat_module.S_ISLNK(st.st_mode):
            raise StorageError(
                f"location {self.name}: {path} is a symbolic link",
                hint="a replica folder holds plain files only: remove the link",
            )
        if not stat_module.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        head, sep, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if sep else self.root
        yield from self._walk(start, f"{head}/" if sep else "", prefix)

    def _walk(self, folder: Path, rel: str, prefix: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"location {self.name}: cannot list {folder}: {exc}") from exc
        for entry in entries:
            key = rel + entry.name
            if entry.name.endswith(PARTIAL_SUFFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                below = key + "/"
                if below.startswith(prefix) or prefix.startswith(below):
                    yield from self._walk(Path(entry.path), below, prefix)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                yield key

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            self._require_inside(path.parent)
            if stat_module.S_ISDIR(os.lstat(path).st_mode):
                raise ObjectMissing(f"location {self.name}: {key} is a folder, not an object")
            path.unlink()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectMissing(f"location {self.name}: nothing stored under {key}") from exc
        except OSError as exc:
            raise StorageError(f"location {self.name}: cannot delete {path}: {exc}") from exc
        self._prune(path.parent)  # an OCFL storage root holds no empty folders (E073)
        if self.fsync:
            folder = path.parent
            while not folder.is_dir():
                folder = folder.parent
            ocfl.fsync_dir(folder)

    def _no_versions(self, version_id: str | None) -> None:
        if version_id is not None:
            raise StorageError(
                f"location {self.name} is a folder and keeps no versions "
                f"(asked for version {version_id})"
            )


def prepare_storage_root(location: ReplicaLocation) -> list[str]:
    """Write the OCFL storage root declaration (§4.1: NAMASTE, layout description and the
    layout extension's config) to a location that lacks it; return the keys written.

    With it, a location holding replicated objects is a storage root any OCFL tool can read.
    Raises :class:`StorageError` (:class:`LocationUnavailable` when unreachable).
    """
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="custos-root-") as tmp:
        for key, data in ocfl.storage_root_files().items():
            if location.stat(key) is not None:
                continue
            source = Path(tmp) / key.replace("/", "_")
            source.write_bytes(data)
            digests = digest_file(source).digests
            location.put(key, source, sha256=digests["sha256"], sha512=digests["sha512"])
            written.append(key)
    return written
