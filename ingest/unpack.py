"""Receive a bag into staging, whatever it came in: the one place where deposit bytes are read.

:func:`receive` hands a folder to :mod:`ingest.folder` and an archive to
:mod:`ingest.archives`, then finds the bag inside an archive (at its top or in its single
folder). Each byte is copied once while sha512, sha256 and, where known beforehand, the bag's
own manifest algorithms are computed. Everything hostile is refused with the path named.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from archive.config import Limits
from archive.digest import CopyResult
from archive.errors import InputRejected
from archive.findings import Finding
from ingest.archives import unpack_tar, unpack_zip
from ingest.checks import display
from ingest.folder import receive_folder
from ingest.receipt import Progress, Received, received_from, reject


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
        return receive_folder(source, bag_dir, limits, workers, progress)
    unpacked = scratch / "unpacked"
    unpacked.mkdir()
    if kind == "zip":
        files = unpack_zip(source, unpacked, limits, progress)
    else:
        files = unpack_tar(source, unpacked, limits, progress)
    prefix = _bag_root(unpacked, files)
    (unpacked / prefix if prefix else unpacked).rename(bag_dir)
    cut = len(prefix) + 1 if prefix else 0
    return received_from(bag_dir, {rel[cut:]: res for rel, res in files.items()}, kind)


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
        raise reject(
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
    raise reject(
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
