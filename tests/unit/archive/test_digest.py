from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest

from archive.digest import (
    PARALLEL_THRESHOLD,
    Digest,
    copy_with_digests,
    digest_file,
    digest_stream,
)


@pytest.mark.parametrize("size", [0, 1, 4096, PARALLEL_THRESHOLD - 1, PARALLEL_THRESHOLD * 3 + 17])
def test_copy_matches_hashlib_and_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    target = tmp_path / "copy"
    result = copy_with_digests(
        io.BytesIO(data), target, ("sha512", "sha256", "md5"), size_hint=size
    )
    assert target.read_bytes() == data
    assert result.size == size
    assert result.digests == {
        "sha512": hashlib.sha512(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }
    assert digest_file(target, ("sha512",)).digests["sha512"] == result.digests["sha512"]


def test_copy_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        copy_with_digests(io.BytesIO(b"new"), tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == b"old"


def test_unknown_algorithm(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whirlpool"):
        copy_with_digests(io.BytesIO(b""), tmp_path / "x", ("whirlpool",))


def test_digest_value() -> None:
    d = Digest.parse("sha256:" + "A" * 64)
    assert str(d) == "sha256:" + "a" * 64
    with pytest.raises(ValueError):
        Digest("sha256", "abc")
    with pytest.raises(ValueError):
        Digest("crc32", "00000000")


class _Trickle(io.RawIOBase):
    """A network-like stream: short reads, never more than 1000 bytes at a time."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._data), 1000)
        view[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("size", [0, 4096, PARALLEL_THRESHOLD * 2 + 5])
@pytest.mark.parametrize("hint", [0, PARALLEL_THRESHOLD * 2])
def test_digest_stream_counts_what_it_reads(size: int, hint: int) -> None:
    """The size hint chooses the strategy, never the size: short reads are all counted."""
    data = os.urandom(size)
    got = digest_stream(_Trickle(data), ("sha512", "sha256"), size_hint=hint)
    assert got.size == size
    assert got.digests == {
        "sha512": hashlib.sha512(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
