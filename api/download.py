"""A payload file's bytes as an HTTP response, read from the primary copy.

A local primary answers with :class:`FileResponse` (the kernel's ``sendfile``, byte ranges,
``Last-Modified`` and ``ETag`` from the file), as it always did. A primary reached through a
location (an S3 bucket several hosts share) is streamed in bounded chunks, never held whole:
the same ``Content-Length``, ``Content-Type``, ``Content-Disposition`` and ``X-Custos-SHA512``
(no byte ranges). The stream is checked as it goes: its last chunk is sent only once every
byte read has matched the catalog's size and sha512, so a copy that changed in the bucket
ends the response short of its ``Content-Length`` (the client sees a broken transfer, never
a complete wrong file). The error names the package and the file's sha512, never its path
(paths may name people).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from urllib.parse import quote

from fastapi.responses import FileResponse, Response, StreamingResponse

from access.decisions.reads import Download
from archive.crypt import CryptError, decrypt_chunks
from archive.errors import StorageError
from archive.storage.primary import Primary
from archive.storage.replica import ObjectReader

#: Bytes read from the primary per chunk sent.
CHUNK = 256 * 1024
SHA512_HEADER = "X-Custos-SHA512"


def file_response(primary: Primary, download: Download) -> Response:
    """The response for ``download``. Raises :class:`~archive.storage.replica.ObjectMissing`
    or :class:`StorageError` (before anything is sent) when the primary cannot open it.

    A copy stored encrypted is decrypted as it streams (its identity is in ``download``),
    checked against the plain size and sha512 the same way, one chunk behind; a chunk that
    fails its authentication ends the response short."""
    local = primary.local_path(download.key)
    if download.identity is not None:
        reader = primary.open(download.key)
        return StreamingResponse(
            _checked_chunks(_decrypted(reader, download), download),
            media_type=download.media_type,
            headers={
                "Content-Length": str(download.size),
                "Content-Disposition": _disposition(download.name),
                SHA512_HEADER: download.sha512,
            },
        )
    if local is not None:
        return FileResponse(
            local,
            media_type=download.media_type,
            filename=download.name,
            headers={SHA512_HEADER: download.sha512},
        )
    reader = primary.open(download.key)  # opened here, so that a refusal is an error answer
    return StreamingResponse(
        _checked_chunks(reader, download),
        media_type=download.media_type,
        headers={
            "Content-Length": str(download.size),
            "Content-Disposition": _disposition(download.name),
            SHA512_HEADER: download.sha512,
        },
    )


def _disposition(name: str) -> str:
    """As :class:`FileResponse` writes it (RFC 6266; RFC 5987 for names beyond ASCII)."""
    quoted = quote(name)
    return (
        f"attachment; filename*=utf-8''{quoted}"
        if quoted != name
        else f'attachment; filename="{name}"'
    )


class _Decrypted:
    """The plain bytes of an encrypted copy, read as ``_checked_chunks`` reads a copy."""

    def __init__(self, chunks: Iterator[bytes], reader: ObjectReader) -> None:
        self.chunks, self.reader = chunks, reader

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
        self.reader.close()


def _decrypted(reader: ObjectReader, download: Download) -> _Decrypted:
    def chunks() -> Iterator[bytes]:
        try:
            yield from decrypt_chunks(reader, download.identity)
        except CryptError as exc:
            raise StorageError(
                f"the primary's copy of file sha512:{download.sha512} of "
                f"{download.package_id} does not decrypt: {exc}; the download was stopped "
                "short",
                hint="if the tier's key was rotated, finish the rotation (`custos keys rotate "
                "--resume`); otherwise run a fixity check of the package (`custos fixity "
                "run`), which repairs the primary's copy from an intact replica",
            ) from None

    return _Decrypted(chunks(), reader)


def _read_chunks(reader: ObjectReader) -> Iterator[bytes]:
    while chunk := reader.read(CHUNK):
        yield chunk


def _checked_chunks(reader: ObjectReader | _Decrypted, download: Download) -> Iterator[bytes]:
    """The bytes of ``reader``, one chunk behind: the last is yielded only after the whole
    has matched ``download``'s size and sha512; otherwise :class:`StorageError` is raised
    instead (the response stops short)."""
    sha512 = hashlib.sha512()
    size = 0
    held = b""
    source = iter(reader) if isinstance(reader, _Decrypted) else _read_chunks(reader)
    try:
        for chunk in source:
            size += len(chunk)
            if size > download.size:
                break
            sha512.update(chunk)
            if held:
                yield held
            held = chunk
    finally:
        reader.close()
    if size != download.size or sha512.hexdigest() != download.sha512:
        read = f"more than {download.size}" if size > download.size else str(size)
        raise StorageError(
            f"the primary's copy of file sha512:{download.sha512} of {download.package_id} "
            f"does not match the catalog ({read} bytes read, {download.size} expected, or "
            "another sha512); the download was stopped short",
            hint="run a fixity check of the package (`custos fixity run`), which repairs the "
            "primary's copy from an intact replica",
        )
    if held:
        yield held
