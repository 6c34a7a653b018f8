"""access.export.zipstream: a folder zipped as a stream of bounded chunks that any zip reader
opens."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from access.export.zipstream import BLOCK, zip_chunks


def test_a_folder_zips_as_bounded_chunks_under_one_top_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bag"
    (folder / "data" / "files").mkdir(parents=True)
    big = os.urandom(5 * BLOCK + 123)  # incompressible: deflate cannot shrink it
    (folder / "data" / "files" / "video.bin").write_bytes(big)
    (folder / "bagit.txt").write_bytes(b"BagIt-Version: 1.0\n")
    (folder / "data" / "empty.txt").write_bytes(b"")
    files = ["bagit.txt", "data/empty.txt", "data/files/video.bin"]

    chunks = list(zip_chunks(folder, files, top="custos-bundle-x"))

    # Handed on as written: many chunks, none holding much more than one read block.
    assert len(chunks) >= 5 and all(chunks)
    assert max(len(c) for c in chunks) < BLOCK + BLOCK // 8
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [f"custos-bundle-x/{f}" for f in files]
        for f in files:
            assert archive.read(f"custos-bundle-x/{f}") == (folder / f).read_bytes()
            info = archive.getinfo(f"custos-bundle-x/{f}")
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.flag_bits & 0x08  # sizes and CRC after the data: nothing seeked back


def test_nothing_is_read_before_it_is_asked_for(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a" * 10)
    (tmp_path / "b.txt").write_bytes(b"b" * 10)
    stream = zip_chunks(tmp_path, ["a.txt", "b.txt"], top="t")
    first = next(stream)
    (tmp_path / "b.txt").write_bytes(b"changed")  # read only when its turn comes
    rest = b"".join(stream)
    with zipfile.ZipFile(io.BytesIO(first + rest)) as archive:
        assert archive.read("t/b.txt") == b"changed"
