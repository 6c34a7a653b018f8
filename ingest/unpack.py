"""Receive a bag from a folder, .zip, .tar or .tar.gz into staging, refusing hostile input.

This is the one place where deposit bytes are read: every file is copied into the staging
object while sha512 and sha256 (and, where known beforehand, the bag's own manifest
algorithms) are computed. What is refused here, with the member or path named:
links (symbolic and hard), devices, FIFOs and other special files, absolute and ``..`` paths,
home shortcuts, backslashes, non-UTF-8 names, duplicate archive members, encrypted members,
and compression bombs (total size, file count and compression ratio, all configurable).
Python's ``zipfile``/``tarfile`` do not enforce any of this on their own, hence this module.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import stat
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from archive.config import Limits
from archive.digest import (
    KNOWN_ALGORITHMS,
    PARALLEL_THRESHOLD,
    CopyResult,
    Source,
    SourceChanged,
    copy_small,
    copy_with_digests,
)
from archive.errors import InputRejected
from archive.findings import Finding, errors_in
from ingest.checks import check_relative_path, display

Progress = Callable[[int], None]
BASE_ALGORITHMS = ("sha512", "sha256")


@dataclass
class Received:
    """A bag copied into staging: where it is, every file's size, and their digests.

    For a folder with many small files the payload is still being copied by worker
    processes when this is returned, so that validation of the tag files can run meanwhile;
    :meth:`digests` waits for the copy, :meth:`close` stops it.
    """

    bag_dir: Path
    sizes: dict[str, int]  # bag-relative path -> size, for every file
    _ready: dict[str, CopyResult]
    _pending: _BackgroundCopy | None = None
    kind: str = "folder"

    def digests(self) -> dict[str, CopyResult]:
        """Size and digests of every file, once the copy has finished.

        Raises :class:`InputRejected` if a source file changed during the copy."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._ready.update(pending.wait())
        return self._ready

    def close(self) -> None:
        """Stop a copy still running (after a refusal) and wait for its workers."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


def _received(bag_dir: Path, files: dict[str, CopyResult], kind: str) -> Received:
    return Received(bag_dir, {rel: r.size for rel, r in files.items()}, files, kind=kind)


def source_kind(source: Path) -> str:
    name = source.name.lower()
    if source.is_dir():
        return "folder"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    raise InputRejected(
        f"{source} is neither a folder nor a .zip, .tar or .tar.gz file",
        [Finding("SOURCE-UNSUPPORTED", "error", "unsupported deposit format", str(source))],
        hint="deposit a bag folder, or a bag packed as .zip, .tar or .tar.gz",
    )


def _reject(message: str, findings: list[Finding]) -> InputRejected:
    return InputRejected(message, findings, hint="fix the bag at its source and deposit it again")


class _Budget:
    """Running totals against the configured limits; raises as soon as one is exceeded."""

    def __init__(self, limits: Limits, compressed_size: int | None) -> None:
        self.limits = limits
        self.compressed = compressed_size
        self.files = 0
        self.bytes = 0

    def add_file(self, where: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise _reject(
                "deposit refused: too many files",
                [
                    Finding(
                        "LIMIT-FILE-COUNT",
                        "error",
                        f"more than {self.limits.max_files} files",
                        where,
                        "archive limit max_files",
                    )
                ],
            )

    def add_bytes(self, n: int, where: str) -> None:
        self.bytes += n
        lim = self.limits
        if self.bytes > lim.max_total_bytes:
            raise _reject(
                "deposit refused: too large",
                [
                    Finding(
                        "LIMIT-TOTAL-SIZE",
                        "error",
                        f"more than {lim.max_total_bytes} bytes unpacked",
                        where,
                        "archive limit max_total_bytes",
                    )
                ],
            )
        if (
            self.compressed is not None
            and self.bytes > lim.ratio_floor_bytes
            and self.bytes > lim.max_compression_ratio * max(self.compressed, 1)
        ):
            raise _reject(
                "deposit refused: compression bomb",
                [
                    Finding(
                        "LIMIT-COMPRESSION-RATIO",
                        "error",
                        f"unpacks to more than {lim.max_compression_ratio:g} times its "
                        f"packed size ({self.compressed} bytes)",
                        where,
                        "archive limit max_compression_ratio",
                    )
                ],
            )


class _Capped:
    """A reader that charges every byte to the budget (for streams whose size may lie)."""

    def __init__(self, raw: IO[bytes], budget: _Budget, where: str, declared: int) -> None:
        self.raw = raw
        self.budget = budget
        self.where = where
        self.left = declared

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self._charge(len(data))
        return data

    def readinto(self, buf: memoryview) -> int:
        data = self.raw.read(len(buf))
        buf[: len(data)] = data
        self._charge(len(data))
        return len(data)

    def _charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _reject(
                "deposit refused: archive member larger than declared",
                [
                    Finding(
                        "ARCHIVE-SIZE-MISMATCH",
                        "error",
                        "member holds more bytes than its header declares",
                        self.where,
                    )
                ],
            )
        self.budget.add_bytes(n, self.where)


def receive(
    source: Path,
    *,
    bag_dir: Path,
    scratch: Path,
    limits: Limits,
    workers: int = 2,
    progress: Progress | None = None,
) -> Received:
    """Copy the bag at ``source`` into ``bag_dir`` (which must not exist yet).

    ``scratch`` is an empty staging folder on the same filesystem, used to unpack archives
    before the bag folder inside them is moved to ``bag_dir``.
    Raises :class:`InputRejected` with every finding gathered before the refusal.
    """
    kind = source_kind(source)
    if kind == "folder":
        return _receive_folder(source, bag_dir, limits, workers, progress)
    unpacked = scratch / "unpacked"
    unpacked.mkdir()
    if kind == "zip":
        files = _unpack_zip(source, unpacked, limits, progress)
    else:
        files = _unpack_tar(source, unpacked, limits, progress)
    prefix = _bag_root(unpacked, files)
    (unpacked / prefix if prefix else unpacked).rename(bag_dir)
    cut = len(prefix) + 1 if prefix else 0
    return _received(bag_dir, {rel[cut:]: res for rel, res in files.items()}, kind)


def _bag_root(unpacked: Path, files: dict[str, CopyResult]) -> str:
    """The folder inside an archive that holds bagit.txt: the top, or its single folder."""
    if "bagit.txt" in files:
        return ""
    tops = {rel.split("/", 1)[0] for rel in files}
    tops |= {p.name for p in unpacked.iterdir()}
    if len(tops) == 1:
        top = next(iter(tops))
        if f"{top}/bagit.txt" in files:
            return top
    found = sorted(rel for rel in files if rel.endswith("/bagit.txt") and rel.count("/") == 1)
    if found:
        outside = sorted(t for t in tops if t != found[0].split("/")[0])
        raise _reject(
            "deposit refused: the archive holds files outside the bag folder",
            [
                Finding(
                    "ARCHIVE-OUTSIDE-BAG",
                    "error",
                    f"{display(t)!r} is beside the bag folder {found[0].split('/')[0]!r}",
                    display(t),
                )
                for t in outside
            ],
        )
    raise _reject(
        "deposit refused: no bag found in the archive",
        [
            Finding(
                "BAG-NO-DECLARATION",
                "error",
                "bagit.txt is missing at the top of the archive and of its single folder",
                "bagit.txt",
                "RFC 8493 §2.1.1",
            )
        ],
    )


# --- folders -------------------------------------------------------------------------------


def _scan_folder(root: Path, limits: Limits) -> tuple[list[tuple[str, int]], list[Finding]]:
    """Every regular file under ``root`` with its size, and findings for anything else."""
    files: list[tuple[str, int]] = []
    findings: list[Finding] = []
    budget = _Budget(limits, None)

    def walk(folder: Path, rel: str) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            findings.append(Finding("SOURCE-UNREADABLE", "error", str(exc), rel or "."))
            return
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            findings.extend(check_relative_path(path, limits))
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                findings.append(
                    Finding(
                        "SOURCE-SYMLINK",
                        "error",
                        "symbolic links are refused; replace the link with the file itself",
                        display(path),
                    )
                )
            elif stat.S_ISDIR(st.st_mode):
                walk(Path(entry.path), path)
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    findings.append(
                        Finding(
                            "SOURCE-HARDLINK",
                            "error",
                            f"hard link ({st.st_nlink} names for one file) refused; "
                            "copy the file instead",
                            display(path),
                        )
                    )
                    continue
                budget.add_file(display(path))
                budget.add_bytes(st.st_size, display(path))
                files.append((path, st.st_size))
            else:
                findings.append(
                    Finding(
                        "SOURCE-SPECIAL-FILE",
                        "error",
                        "device, FIFO or socket refused: only regular files may be deposited",
                        display(path),
                    )
                )

    walk(root, "")
    return files, findings


def _open_regular(path: Path, rel: str) -> io.BufferedReader:
    """Open without following links, and check it is still the regular file we scanned."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        raise _reject(
            "deposit refused: a file changed while it was being read",
            [Finding("SOURCE-CHANGED", "error", "no longer a plain regular file", display(rel))],
        )
    return io.open(fd, "rb")  # noqa: UP020 - os.fdopen is typed as returning Any


def _receive_folder(
    source: Path, bag_dir: Path, limits: Limits, workers: int, progress: Progress | None
) -> Received:
    files, findings = _scan_folder(source, limits)
    if errors_in(findings):
        raise _reject(f"deposit refused: {source} holds files the archive cannot accept", findings)
    algorithms = _manifest_algorithms(name for name, _ in files if "/" not in name)
    bag_dir.mkdir()
    made: set[str] = set()
    for rel, _size in files:
        parent = rel.rpartition("/")[0]
        if parent and parent not in made:
            (bag_dir / parent).mkdir(parents=True, exist_ok=True)
            made.add(parent)

    def copy_large(item: tuple[str, int]) -> tuple[str, CopyResult]:
        rel, size = item
        with _open_regular(source / rel, rel) as src:
            result = copy_with_digests(src, bag_dir / rel, algorithms, size_hint=size)
        if result.size != size:
            raise _changed(rel)
        if progress:
            progress(size)
        return rel, result

    # Tag files first (they are few), so that validation can read them while the payload
    # is still being copied.
    tags = [f for f in files if not f[0].startswith("data/")]
    payload = [f for f in files if f[0].startswith("data/")]
    ready: dict[str, CopyResult] = {}
    for group in (tags, payload):
        small = [f for f in group if f[1] < PARALLEL_THRESHOLD]
        ready.update(map(copy_large, (f for f in group if f[1] >= PARALLEL_THRESHOLD)))
        if group is payload and workers > 1 and len(small) >= PROCESS_THRESHOLD:
            pending = _BackgroundCopy(source, bag_dir, small, algorithms, workers, progress)
            return Received(bag_dir, dict(files), ready, pending, kind="folder")
        for batch in _batches(small):
            ready.update(_checked(_copy_batch(str(source), str(bag_dir), batch, algorithms)))
            if progress:
                progress(sum(size for _, size in batch))
    return Received(bag_dir, dict(files), ready, kind="folder")


def _changed(rel: str) -> InputRejected:
    return _reject(
        "deposit refused: a file changed while it was being read",
        [
            Finding(
                "SOURCE-CHANGED",
                "error",
                "the file was replaced, linked or resized during the deposit",
                display(rel),
            )
        ],
    )


IO_PROCESSES_PER_WORKER = 2
#: Small files go to worker processes in batches of this many (one round trip per batch).
SMALL_BATCH = 256
#: Below this many small files, worker processes cost more than they save.
PROCESS_THRESHOLD = 2000


def _copy_batch(
    source: str, target: str, batch: list[tuple[str, int]], algorithms: tuple[str, ...]
) -> list[tuple[str, CopyResult | None]]:
    """Worker-process side: copy a batch of small files; ``None`` marks a changed source."""
    out: list[tuple[str, CopyResult | None]] = []
    for rel, size in batch:
        try:
            out.append((rel, copy_small(f"{source}/{rel}", f"{target}/{rel}", algorithms, size)))
        except (SourceChanged, OSError):
            out.append((rel, None))
    return out


def _batches(files: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    return [files[i : i + SMALL_BATCH] for i in range(0, len(files), SMALL_BATCH)]


def _checked(results: list[tuple[str, CopyResult | None]]) -> dict[str, CopyResult]:
    out: dict[str, CopyResult] = {}
    for rel, res in results:
        if res is None:
            raise _changed(rel)
        out[rel] = res
    return out


def _advance(progress: Progress, n: int) -> Callable[[Future[Any]], None]:
    def done(fut: Future[Any]) -> None:
        if not fut.cancelled():
            progress(n)

    return done


class _BackgroundCopy:
    """Many small files copied by worker processes, batch by batch.

    Threads do not help here: per-file work is short and holds the GIL between system calls
    (measured: two threads were slower than one; two processes twice as fast as one).
    """

    def __init__(
        self,
        source: Path,
        bag_dir: Path,
        files: list[tuple[str, int]],
        algorithms: tuple[str, ...],
        workers: int,
        progress: Progress | None,
    ) -> None:
        # fork is fast and safe here (the workers touch only os and hashlib); with other
        # threads alive, forkserver avoids inheriting their locks.
        method = "fork" if threading.active_count() == 1 else "forkserver"
        # Two processes per worker: with a cold source this is I/O-bound, and more reads in
        # flight keep the disk busy (50,000 files of 4 KiB: 3,600 files/s with 2, 5,500 with 4,
        # no gain with 8).
        self.pool = ProcessPoolExecutor(
            IO_PROCESSES_PER_WORKER * workers, mp_context=mp.get_context(method)
        )
        self.futures: list[Future[list[tuple[str, CopyResult | None]]]] = []
        for batch in _batches(files):
            fut = self.pool.submit(_copy_batch, str(source), str(bag_dir), batch, algorithms)
            if progress:
                fut.add_done_callback(_advance(progress, sum(s for _, s in batch)))
            self.futures.append(fut)

    def wait(self) -> dict[str, CopyResult]:
        try:
            out: dict[str, CopyResult] = {}
            for fut in self.futures:
                out.update(_checked(fut.result()))
            return out
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _manifest_algorithms(top_level_names: Iterable[str]) -> tuple[str, ...]:
    """sha512 and sha256, plus every algorithm the bag's manifests use that we can compute."""
    extra = []
    for name in top_level_names:
        for prefix in ("manifest-", "tagmanifest-"):
            if name.startswith(prefix) and name.endswith(".txt"):
                alg = name[len(prefix) : -4]
                if alg in KNOWN_ALGORITHMS and alg not in BASE_ALGORITHMS:
                    extra.append(alg)
    return (*BASE_ALGORITHMS, *dict.fromkeys(extra))


# --- archives ------------------------------------------------------------------------------


def _target(root: Path, rel: str) -> Path:
    target = root / rel
    if not os.path.normpath(target).startswith(str(root) + os.sep):
        raise _reject(
            "deposit refused: archive member escapes the extraction folder",
            [Finding("PATH-ESCAPES", "error", "resolves outside the bag", display(rel))],
        )
    return target


def _write_member(
    root: Path,
    rel: str,
    src: Source,
    algorithms: tuple[str, ...],
    size: int,
    files: dict[str, CopyResult],
) -> None:
    target = _target(root, rel)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        files[rel] = copy_with_digests(src, target, algorithms, size_hint=size)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise _reject(
            "deposit refused: archive members conflict",
            [
                Finding(
                    "ARCHIVE-CONFLICT",
                    "error",
                    f"member clashes with another file or folder of the same name ({exc.strerror})",
                    display(rel),
                )
            ],
        ) from exc


def _member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _unpack_zip(
    source: Path, root: Path, limits: Limits, progress: Progress | None
) -> dict[str, CopyResult]:
    """Unpack every member of a zip file, or refuse it with every problem found."""
    findings: list[Finding] = []
    files: dict[str, CopyResult] = {}
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _reject(
            "deposit refused: not a readable zip file",
            [Finding("ARCHIVE-CORRUPT", "error", str(exc), source.name)],
        ) from exc
    with zf:
        members: list[tuple[str, zipfile.ZipInfo]] = []
        seen: set[str] = set()
        budget = _Budget(limits, os.stat(source).st_size)
        for info in zf.infolist():
            name = info.filename
            if not info.flag_bits & 0x800 and not name.isascii():
                raw = name.encode("cp437")
                try:
                    name = raw.decode("utf-8")
                except UnicodeDecodeError:
                    name = raw.decode("utf-8", "surrogateescape")
            name = _member_name(name)
            shown = display(name)
            # Unix file-type bits, when the archiver recorded them (0 on other systems)
            mode = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
            if not name:
                continue
            problems = check_relative_path(name, limits)
            findings.extend(problems)
            if stat.S_ISLNK(mode):
                findings.append(
                    Finding("SOURCE-SYMLINK", "error", "symbolic link member refused", shown)
                )
                continue
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                findings.append(
                    Finding("SOURCE-SPECIAL-FILE", "error", "special file member refused", shown)
                )
                continue
            if info.flag_bits & 0x1:
                findings.append(
                    Finding("ARCHIVE-ENCRYPTED", "error", "encrypted member refused", shown)
                )
                continue
            if info.is_dir():
                continue
            if name in seen:
                findings.append(
                    Finding("ARCHIVE-DUPLICATE-MEMBER", "error", "member appears twice", shown)
                )
                continue
            seen.add(name)
            budget.add_file(shown)
            members.append((name, info))
        declared = _Budget(limits, os.stat(source).st_size)
        for name, info in members:
            declared.add_bytes(info.file_size, display(name))
        if errors_in(findings):
            raise _reject(
                f"deposit refused: {source.name} holds members the archive cannot accept", findings
            )
        # Manifests sit at the top of the archive or of its single folder.
        algorithms = _manifest_algorithms(
            [n.rsplit("/", 1)[-1] for n, _ in members if n.count("/") <= 1]
        )
        for name, info in members:
            try:
                with zf.open(info) as stream:
                    src = _Capped(stream, budget, display(name), info.file_size)
                    _write_member(root, name, src, algorithms, info.file_size, files)
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                OSError,
                EOFError,
                RuntimeError,
            ) as exc:
                raise _reject(
                    "deposit refused: the zip file is damaged",
                    [Finding("ARCHIVE-CORRUPT", "error", str(exc), display(name))],
                ) from exc
            if progress:
                progress(info.file_size)
    return files


def _unpack_tar(
    source: Path, root: Path, limits: Limits, progress: Progress | None
) -> dict[str, CopyResult]:
    """Unpack a tar stream (plain or compressed) in one pass, or refuse it."""
    findings: list[Finding] = []
    files: dict[str, CopyResult] = {}
    budget = _Budget(limits, os.stat(source).st_size)
    seen: set[str] = set()
    try:
        tf = tarfile.open(source, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as exc:
        raise _reject(
            "deposit refused: not a readable tar file",
            [Finding("ARCHIVE-CORRUPT", "error", str(exc), source.name)],
        ) from exc
    try:
        with tf:
            for member in tf:
                name = _member_name(member.name)
                shown = display(name)
                if not name:
                    continue
                findings.extend(check_relative_path(name, limits))
                if member.issym():
                    findings.append(
                        Finding("SOURCE-SYMLINK", "error", "symbolic link member refused", shown)
                    )
                elif member.islnk():
                    findings.append(
                        Finding("SOURCE-HARDLINK", "error", "hard link member refused", shown)
                    )
                elif member.ischr() or member.isblk() or member.isfifo():
                    findings.append(
                        Finding(
                            "SOURCE-SPECIAL-FILE", "error", "device or FIFO member refused", shown
                        )
                    )
                elif member.isdir():
                    continue
                elif not member.isreg():
                    findings.append(
                        Finding("SOURCE-SPECIAL-FILE", "error", "unsupported member type", shown)
                    )
                elif name in seen:
                    findings.append(
                        Finding("ARCHIVE-DUPLICATE-MEMBER", "error", "member appears twice", shown)
                    )
                else:
                    seen.add(name)
                    budget.add_file(shown)
                    if errors_in(findings):
                        continue  # keep reading headers to report every problem
                    raw = tf.extractfile(member)
                    assert raw is not None
                    src = _Capped(raw, budget, shown, member.size)
                    _write_member(root, name, src, BASE_ALGORITHMS, member.size, files)
                    if progress:
                        progress(member.size)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _reject(
            "deposit refused: the tar file is damaged or truncated",
            [*findings, Finding("ARCHIVE-CORRUPT", "error", str(exc), source.name)],
        ) from exc
    if errors_in(findings):
        raise _reject(
            f"deposit refused: {source.name} holds members the archive cannot accept", findings
        )
    return files


def source_size(source: Path) -> int | None:
    """Bytes to receive, for progress: a folder's file sizes, an archive's unpacked size."""
    try:
        if source.is_dir():
            return sum(
                os.stat(os.path.join(d, f)).st_size for d, _, fs in os.walk(source) for f in fs
            )
        if source.name.lower().endswith(".zip"):
            with zipfile.ZipFile(source) as zf:
                return sum(i.file_size for i in zf.infolist())
    except (OSError, zipfile.BadZipFile):
        return None
    return None
