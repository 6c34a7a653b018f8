"""What receiving a bag produces, and the limits every way of receiving enforces.

Shared by :mod:`ingest.folder` and :mod:`ingest.archives`: the :class:`Received` result, the
running :class:`Budget` of files and bytes against the configured limits (compression bombs,
floods), the :class:`Capped` reader that charges every byte to it, and :func:`reject`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from archive.config import Limits
from archive.digest import KNOWN_ALGORITHMS, CopyResult
from archive.errors import InputRejected
from archive.findings import Finding

Progress = Callable[[int], None]
BASE_ALGORITHMS = ("sha512", "sha256")


class PendingCopy(Protocol):
    """A copy still running in the background."""

    def wait(self) -> dict[str, CopyResult]: ...
    def cancel(self) -> None: ...


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
    _pending: PendingCopy | None = None
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


def received_from(bag_dir: Path, files: dict[str, CopyResult], kind: str) -> Received:
    return Received(bag_dir, {rel: r.size for rel, r in files.items()}, files, kind=kind)


def reject(message: str, findings: list[Finding]) -> InputRejected:
    return InputRejected(message, findings, hint="fix the bag at its source and deposit it again")


class Budget:
    """Running totals against the configured limits; raises as soon as one is exceeded."""

    def __init__(self, limits: Limits, compressed_size: int | None) -> None:
        self.limits = limits
        self.compressed = compressed_size
        self.files = 0
        self.bytes = 0

    def add_file(self, where: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise reject(
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
            raise reject(
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
            raise reject(
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


class Capped:
    """A reader that charges every byte to the budget (for streams whose size may lie)."""

    def __init__(self, raw: IO[bytes], budget: Budget, where: str, declared: int) -> None:
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
            raise reject(
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


def manifest_algorithms(top_level_names: Iterable[str]) -> tuple[str, ...]:
    """sha512 and sha256, plus every algorithm the bag's manifests use that we can compute."""
    extra = []
    for name in top_level_names:
        for prefix in ("manifest-", "tagmanifest-"):
            if name.startswith(prefix) and name.endswith(".txt"):
                alg = name[len(prefix) : -4]
                if alg in KNOWN_ALGORITHMS and alg not in BASE_ALGORITHMS:
                    extra.append(alg)
    return (*BASE_ALGORITHMS, *dict.fromkeys(extra))
