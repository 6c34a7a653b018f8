"""Digests, and the one-pass copy that computes them.

Every payload byte is read once: :func:`copy_with_digests` copies a stream into a new file
while computing sha512, sha256 and any other algorithm the caller asks for (a bag's own
manifest algorithms, for instance). On large buffers hashlib releases the GIL, so the digests
run on separate threads in parallel with the write; small files stay on one thread, where
hand-offs would cost more than they save. A write that the target's filesystem refuses (full,
over quota, read-only, I/O error) is :class:`WriteFailed`, never taken for a fault of the
source.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from archive.errors import STORAGE_ERRNOS

CHUNK = 4 * 1024 * 1024
#: Below this size a file is hashed on the calling thread only.
PARALLEL_THRESHOLD = 2 * CHUNK

#: Algorithms a BagIt manifest may use that we can compute (RFC 8493 §2.4 and older bags).
KNOWN_ALGORITHMS = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512"})

_HEX = re.compile(r"^[0-9a-f]+$")
_LENGTHS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True, slots=True)
class Digest:
    """An algorithm and a lowercase hex value, written ``sha512:<hex>``."""

    algorithm: str
    value: str

    def __post_init__(self) -> None:
        if self.algorithm not in _LENGTHS:
            raise ValueError(f"unknown digest algorithm {self.algorithm!r}")
        if len(self.value) != _LENGTHS[self.algorithm] or not _HEX.match(self.value):
            raise ValueError(f"not a {self.algorithm} hex digest: {self.value!r}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, _, value = text.partition(":")
        return cls(algorithm, value.lower())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


class Source(Protocol):
    """What a copy reads from: a file, an archive member, or a wrapper around one."""

    def read(self, n: int = -1, /) -> bytes: ...
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CopyResult:
    size: int
    digests: dict[str, str]  # algorithm -> lowercase hex


_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="custos-digest")
    return _pool


def _new_hashers(algorithms: Iterable[str]) -> dict[str, _Hasher]:
    hashers: dict[str, _Hasher] = {}
    for alg in algorithms:
        if alg not in KNOWN_ALGORITHMS:
            raise ValueError(f"unknown digest algorithm {alg!r}")
        hashers[alg] = hashlib.new(alg)
    return hashers


def _pump(
    src: Source,
    dst: _Target | None,
    hashers: dict[str, _Hasher],
    size_hint: int,
) -> int:
    """Read ``src`` to its end once, feeding every hasher and ``dst``; return the byte count."""
    total = 0
    if size_hint < PARALLEL_THRESHOLD:
        # A read of n bytes allocates n first: for a small file, ask for its expected size
        # (and one more byte, so that the end is usually found in the same read).
        want = min(CHUNK, size_hint + 1) if size_hint > 0 else CHUNK
        while True:
            chunk = src.read(want)
            if not chunk:
                return total
            total += len(chunk)
            for h in hashers.values():
                h.update(chunk)
            if dst is not None:
                dst.write(chunk)
    return _pump_pipelined(src, dst, list(hashers.values()))


#: Buffers in flight for a large file: one being read, one being digested, one spare.
BUFFERS = 3


def _pump_pipelined(src: Source, dst: _Target | None, hashers: list[_Hasher]) -> int:
    """Large files: a reader thread fills the next buffer while this one is digested and
    written, so the disk never waits for the CPU (cold reads are the bottleneck here)."""
    fileno = getattr(src, "fileno", None)
    if fileno is not None:
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.posix_fadvise(fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    free: queue.Queue[bytearray] = queue.Queue()
    full: queue.Queue[tuple[bytearray, int] | BaseException] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(bytearray(CHUNK))
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                buf = free.get()
                n = src.readinto(memoryview(buf)) or 0
                full.put((buf, n))
                if n == 0:
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            full.put(exc)

    thread = threading.Thread(target=reader, name="custos-read", daemon=True)
    thread.start()
    pool = _executor()
    first, rest = hashers[0], hashers[1:]
    total = 0
    try:
        while True:
            item = full.get()
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            if n == 0:
                return total
            total += n
            piece = memoryview(buf)[:n]
            futures: list[Future[None]] = [pool.submit(h.update, piece) for h in rest]
            if dst is not None:
                futures.append(pool.submit(dst.write, piece))
            first.update(piece)
            for fut in futures:
                fut.result()
            free.put(buf)
    finally:
        stop.set()
        free.put(bytearray(0))  # wake the reader if it waits for a buffer
        thread.join()


class WriteFailed(OSError):
    """The filesystem of a copy's target refused a write with an errno of
    :data:`~archive.errors.STORAGE_ERRNOS` (no space, no quota, read-only, I/O error): a
    failure of the storage, never of what was copied. An ``OSError`` (``errno``,
    ``strerror``, ``filename``: the target), so that callers catching those still do; a
    receiver telling its source's faults apart catches it first."""


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Writes to ``path`` (a file or folder being made): an ``OSError`` of its filesystem
    becomes :class:`WriteFailed`; others (it exists, a parent is a file) pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise WriteFailed(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


class _Target:
    """The file a copy writes to, its writes told apart from the reads of the source."""

    __slots__ = ("fh", "path")

    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh, self.path = fh, path

    def write(self, data: bytes | memoryview) -> None:
        with writing(self.path):
            self.fh.write(data)


def copy_with_digests(
    src: Source,
    dst_path: Path,
    algorithms: Iterable[str] = ("sha512", "sha256"),
    *,
    size_hint: int = 0,
    fsync: bool = False,
) -> CopyResult:
    """Copy ``src`` into a new file at ``dst_path`` and digest every byte on the way.

    Raises ``FileExistsError`` if ``dst_path`` exists (a copy never overwrites),
    :class:`WriteFailed` if its filesystem refuses the write (full, read-only, I/O error),
    ``ValueError`` for an unknown algorithm; errors reading ``src`` propagate unchanged.
    """
    hashers = _new_hashers(algorithms)
    with writing(dst_path):
        fh = open(dst_path, "xb")  # noqa: SIM115 - closed below, its errors told apart
    with fh:
        size = _pump(src, _Target(fh, dst_path), hashers, size_hint)
        with writing(dst_path):
            fh.flush()  # what the buffer holds: so that closing cannot fail on it
            if fsync:
                os.fsync(fh.fileno())
    return CopyResult(size, {a: h.hexdigest() for a, h in hashers.items()})


def digest_file(path: Path, algorithms: Iterable[str] = ("sha512", "sha256")) -> CopyResult:
    """Digest one file, read once (used by checks that must not trust sizes or metadata)."""
    with open(path, "rb") as src:
        return digest_stream(src, algorithms, size_hint=os.fstat(src.fileno()).st_size)


def digest_stream(
    src: Source, algorithms: Iterable[str] = ("sha512", "sha256"), *, size_hint: int = 0
) -> CopyResult:
    """Read ``src`` to its end once and digest every byte; the size is what was read.

    ``size_hint`` only chooses the strategy (large streams are read ahead on a thread); it is
    never taken as the size. Raises ``ValueError`` for an unknown algorithm; errors of ``src``
    propagate unchanged.
    """
    hashers = _new_hashers(algorithms)
    size = _pump(src, None, hashers, size_hint)
    return CopyResult(size, {a: h.hexdigest() for a, h in hashers.items()})


def digest_bytes(data: bytes, algorithm: str = "sha512") -> str:
    h = hashlib.new(algorithm)
    h.update(data)
    return h.hexdigest()


def copy_small(src: str, dst: str, algorithms: tuple[str, ...], expected_size: int) -> CopyResult:
    """Copy a small regular file with raw system calls, digesting it on the way.

    The fast path for many small files (no buffered objects, one read, one write). The
    source is opened without following links and must still be a plain regular file of the
    expected size; otherwise :class:`SourceChanged` is raised. A write the target's
    filesystem refuses is :class:`WriteFailed`.
    """
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != expected_size:
            raise SourceChanged(src)
        data = os.read(fd, expected_size + 1)
        while len(data) < expected_size:
            more = os.read(fd, expected_size + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    if len(data) != expected_size:
        raise SourceChanged(src)
    with writing(dst):
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]
        finally:
            os.close(out)
    return CopyResult(len(data), {a: hashlib.new(a, data).hexdigest() for a in algorithms})


class SourceChanged(Exception):
    """A file changed (type, links or size) between the scan and the copy."""
