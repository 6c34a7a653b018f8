"""A folder as a zip file, written as a stream of chunks: never whole in memory or on disk.

:func:`zip_chunks` writes each file into a :class:`zipfile.ZipFile` whose target cannot seek,
so the standard library writes every entry's sizes and CRC after its data (a data
descriptor, APPNOTE 4.3.9) and the central directory at the end; the chunks are handed on as
soon as they are written. Entries are deflated at the fastest level: every zip reader accepts
deflated entries with data descriptors, and most of a bundle's bytes (PDFs, images, video)
are compressed already. Large entries are written as ZIP64 (each file's size is known
beforehand), and so is the end of an archive with many or large entries. Memory held: one
read block and what deflate keeps of it.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 20


class _Chunks(io.RawIOBase):
    """A write-only, non-seekable file that keeps what is written until it is taken."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def zip_chunks(folder: Path, files: Iterable[str], *, top: str) -> Iterator[bytes]:
    """The zip of ``files`` (POSIX paths relative to ``folder``), each entry named
    ``<top>/<path>``, as chunks of bytes (see :func:`zip_stream`).

    Raises :class:`OSError` if a file cannot be read (after the chunks before it were
    given: the caller checks the files first)."""

    def entry(rel: str) -> tuple[str, Callable[[], BinaryIO], int]:
        path = folder / rel
        return rel, lambda: open(path, "rb"), os.stat(path).st_size

    return zip_stream((entry(rel) for rel in files), top=top)


def zip_stream(
    entries: Iterable[tuple[str, Callable[[], BinaryIO], int]], *, top: str
) -> Iterator[bytes]:
    """The zip of ``entries`` (each a POSIX path, how to open it and its size in bytes), each
    entry named ``<top>/<path>``, as chunks of bytes. Reads each file once, as the chunks are
    consumed, from wherever its opener reads (a local file, a stored object).

    Raises what an opener or a read raises (after the chunks before it were given: the
    caller checks the files first)."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for rel, opener, size in entries:
            with opener() as src:
                # As zipfile decides for an entry whose size it knows (deflate may grow it).
                large = size * 1.05 > zipfile.ZIP64_LIMIT
                entry = archive.open(f"{top}/{rel}", "w", force_zip64=large)
                with entry:
                    while block := src.read(BLOCK):
                        entry.write(block)
                        if chunk := sink.take():
                            yield chunk
            if chunk := sink.take():
                yield chunk
    if chunk := sink.take():  # the central directory
        yield chunk
