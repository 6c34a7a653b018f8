"""Receive a bag from a .zip, .tar or .tar.gz: every member checked before it is written
(links, devices, escapes, non-UTF-8 names, duplicates, encryption, bombs), then unpacked once
while digested. Python's ``zipfile``/``tarfile`` enforce none of this on their own. A write
that staging's filesystem refuses is :class:`~archive.digest.WriteFailed`, passed on as it is:
never taken for a damaged archive.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from archive.config import Limits
from archive.digest import (
    CopyResult,
    Source,
    WriteFailed,
    copy_with_digests,
    writing,
)
from archive.findings import Finding, errors_in
from ingest.checks import check_relative_path, display
from ingest.receipt import BASE_ALGORITHMS, Budget, Capped, Progress, manifest_algorithms, reject

# --- archives ------------------------------------------------------------------------------


def _target(root: Path, rel: str) -> Path:
    target = root / rel
    if not os.path.normpath(target).startswith(str(root) + os.sep):
        raise reject(
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
        with writing(target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
        files[rel] = copy_with_digests(src, target, algorithms, size_hint=size)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise reject(
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


def unpack_zip(
    source: Path, root: Path, limits: Limits, progress: Progress | None
) -> dict[str, CopyResult]:
    """Unpack every member of a zip file, or refuse it with every problem found."""
    findings: list[Finding] = []
    files: dict[str, CopyResult] = {}
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise reject(
            "deposit refused: not a readable zip file",
            [Finding("ARCHIVE-CORRUPT", "error", str(exc), source.name)],
        ) from exc
    with zf:
        members: list[tuple[str, zipfile.ZipInfo]] = []
        folders: list[str] = []
        seen: set[str] = set()
        budget = Budget(limits, os.stat(source).st_size)
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
                folders.append(name)
                continue
            if name in seen:
                findings.append(
                    Finding("ARCHIVE-DUPLICATE-MEMBER", "error", "member appears twice", shown)
                )
                continue
            seen.add(name)
            budget.add_file(shown)
            members.append((name, info))
        declared = Budget(limits, os.stat(source).st_size)
        for name, info in members:
            declared.add_bytes(info.file_size, display(name))
        if errors_in(findings):
            raise reject(
                f"deposit refused: {source.name} holds members the archive cannot accept", findings
            )
        # Manifests sit at the top of the archive or of its single folder.
        algorithms = manifest_algorithms(
            [n.rsplit("/", 1)[-1] for n, _ in members if n.count("/") <= 1]
        )
        for name in folders:  # folders of their own, empty ones included
            with writing(root):
                _target(root, name).mkdir(parents=True, exist_ok=True)
        for name, info in members:
            try:
                with zf.open(info) as stream:
                    src = Capped(stream, budget, display(name), info.file_size)
                    _write_member(root, name, src, algorithms, info.file_size, files)
            except WriteFailed:
                raise
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                OSError,
                EOFError,
                RuntimeError,
            ) as exc:
                raise reject(
                    "deposit refused: the zip file is damaged",
                    [Finding("ARCHIVE-CORRUPT", "error", str(exc), display(name))],
                ) from exc
            if progress:
                progress(info.file_size)
    return files


def unpack_tar(
    source: Path, root: Path, limits: Limits, progress: Progress | None
) -> dict[str, CopyResult]:
    """Unpack a tar stream (plain or compressed) in one pass, or refuse it."""
    findings: list[Finding] = []
    files: dict[str, CopyResult] = {}
    budget = Budget(limits, os.stat(source).st_size)
    seen: set[str] = set()
    try:
        tf = tarfile.open(source, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as exc:
        raise reject(
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
                    if not errors_in(findings):  # folders of their own, empty ones included
                        with writing(root):
                            _target(root, name).mkdir(parents=True, exist_ok=True)
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
                    src = Capped(raw, budget, shown, member.size)
                    _write_member(root, name, src, BASE_ALGORITHMS, member.size, files)
                    if progress:
                        progress(member.size)
    except WriteFailed:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise reject(
            "deposit refused: the tar file is damaged or truncated",
            [*findings, Finding("ARCHIVE-CORRUPT", "error", str(exc), source.name)],
        ) from exc
    if errors_in(findings):
        raise reject(
            f"deposit refused: {source.name} holds members the archive cannot accept", findings
        )
    return files
