"""Protected copies in the age format (age-encryption.org/v1), streamed, never whole in memory.

- :func:`encrypt_copy` encrypts a copy to the tier's recipients with pyrage, reading each
  plain byte once and digesting both the plain bytes (what the bag's manifests and the file
  seals prove) and the stored ones (what the inventory, fixity and replication check).
- :func:`decrypt_chunks` decrypts a stored copy as a stream of chunks (a download, a court
  bundle), authenticating every chunk before it is handed on.
- :func:`rewrap` gives an encrypted copy a new header for new recipients (a new tier key, an
  escrow) without touching its payload: the file key stays, only its wrapping changes.

Debian's ``age -d -i IDENTITY`` decrypts every stored copy, without Custos.

Written here rather than taken from a library, with the reason: pyrage (and the age tools)
neither expose a copy's file key nor re-wrap a header, so :func:`rewrap` follows the age
specification's X25519 recipient stanza and header MAC with the ``cryptography`` package's
X25519, HKDF-SHA-256, ChaCha20-Poly1305 and HMAC; and pyrage makes an identity only from its
Bech32 text, so :func:`identity_text` and :func:`recipient_bytes` carry BIP 173's dozen
lines of Bech32. Debian's ``age`` reading what these write is the independent check (tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from archive.digest import CopyResult

MAGIC = b"age-encryption.org/v1"
SECRET_BYTES = 32
#: A stored copy is decrypted into chunks of about this size, at most this many waiting.
CHUNK = 1024 * 1024
QUEUED = 4
_MAX_HEADER = 64 * 1024  # a header is a few hundred bytes per recipient

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_X25519_INFO = b"age-encryption.org/v1/X25519"


class CryptError(Exception):
    """A stored copy that does not open: not age, a header or chunk that fails its check,
    or no stanza for the key given. The message names no content."""


def _polymod(values: Sequence[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                check ^= g
    return check


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32(hrp: str, data: bytes) -> str:
    bits = "".join(f"{b:08b}" for b in data)
    words = [int(bits[i : i + 5].ljust(5, "0"), 2) for i in range(0, len(bits), 5)]
    mod = _polymod(_expand(hrp) + words + [0] * 6) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in words + checksum)


def _unbech32(text: str, hrp: str) -> bytes:
    text = text.strip().lower()
    head, sep, rest = text.rpartition("1")
    if not sep or head != hrp or len(rest) < 6 or any(c not in _CHARSET for c in rest):
        raise ValueError(f"not a Bech32 string of prefix {hrp!r}")
    words = [_CHARSET.index(c) for c in rest]
    if _polymod(_expand(hrp) + words) != 1:
        raise ValueError("its Bech32 checksum does not match")
    bits = "".join(f"{w:05b}" for w in words[:-6])
    usable = len(bits) - len(bits) % 8
    if "1" in bits[usable:]:
        raise ValueError("its Bech32 padding is not zero")
    return bytes(int(bits[i : i + 8], 2) for i in range(0, usable, 8))


def identity_text(secret: bytes) -> str:
    """The age identity (``AGE-SECRET-KEY-1…``) whose X25519 secret is ``secret``."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"an age X25519 secret is {SECRET_BYTES} bytes, not {len(secret)}")
    return _bech32("age-secret-key-", secret).upper()


def identity_secret(identity: str) -> bytes:
    """The 32 secret bytes of an age identity's text; raises ``ValueError``."""
    secret = _unbech32(identity, "age-secret-key-")
    if len(secret) != SECRET_BYTES:
        raise ValueError("an age identity holds 32 bytes")
    return secret


def recipient_bytes(recipient: str) -> bytes:
    """The 32 bytes of an age X25519 recipient (``age1…``); raises ``ValueError``."""
    key = _unbech32(recipient, "age")
    if len(key) != SECRET_BYTES:
        raise ValueError("an age X25519 recipient holds 32 bytes")
    return key


class _Digesting:
    """A file object that digests (sha512, sha256) and counts what passes through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sha512, self.sha256, self.size = hashlib.sha512(), hashlib.sha256(), 0

    def _see(self, data: bytes | memoryview) -> None:
        self.sha512.update(data)
        self.sha256.update(data)
        self.size += len(data)

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.inner.read(n)
        self._see(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        n = self.inner.readinto(buffer) or 0
        self._see(memoryview(buffer)[:n])
        return int(n)

    def write(self, data: bytes) -> int:
        self._see(data)
        self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    def result(self) -> CopyResult:
        return CopyResult(
            self.size, {"sha512": self.sha512.hexdigest(), "sha256": self.sha256.hexdigest()}
        )


@dataclass(frozen=True, slots=True)
class Encrypted:
    """What encrypting a copy read (``plain``) and wrote (``stored``): sizes and digests."""

    plain: CopyResult
    stored: CopyResult


class _Counting:
    """A file object that counts what is read through it (the digests already known)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.size = inner, 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.inner.read(n)
        self.size += len(data)
        return data


def encrypt_copy(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[str],
    *,
    plain: CopyResult | None = None,
) -> Encrypted:
    """Encrypt ``src`` to every one of ``recipients`` (``age1…``) into ``dst``, one file key
    for this copy, digesting both sides on the way; ``plain``: the plain bytes' digests,
    already known (a deposit's, computed as it was received), then only counted, and a
    different size raises ``ValueError``. Raises ``ValueError`` for no recipient or one that
    is not an age X25519 recipient; errors of ``src`` and ``dst`` propagate."""
    if not recipients:
        raise ValueError("a copy is encrypted to one recipient at least")
    try:
        keys = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    except pyrage.RecipientError as exc:
        raise ValueError(f"not an age X25519 recipient: {exc}") from None
    writer = _Digesting(dst)
    if plain is not None:
        counted = _Counting(src)
        pyrage.encrypt_io(counted, writer, keys)
        writer.flush()
        if counted.size != plain.size:
            raise ValueError(f"{counted.size} bytes read, {plain.size} expected")
        return Encrypted(plain, writer.result())
    reader = _Digesting(src)
    pyrage.encrypt_io(reader, writer, keys)
    writer.flush()
    return Encrypted(reader.result(), writer.result())


class _Chunks(io.RawIOBase):
    """A writable file object handing what pyrage decrypts to a bounded queue as chunks."""

    def __init__(self, out: queue.Queue[bytes | BaseException | None]) -> None:
        self.out, self.buffer = out, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self.out.put(bytes(self.buffer))
            self.buffer.clear()
        return len(data)

    def flush(self) -> None:
        pass


class Readable(Protocol):
    """What a copy is decrypted from: a file, or a location's reader."""

    def read(self, n: int = -1, /) -> bytes: ...


def decrypt_chunks(src: Readable, identity: Any) -> Iterator[bytes]:
    """The plain bytes of the age copy read from ``src``, in chunks of about :data:`CHUNK`,
    decrypted on a thread of its own (at most :data:`QUEUED` chunks ahead). ``identity`` is a
    ``pyrage.x25519.Identity``. Raises :class:`CryptError` for a copy that is not age, a key
    that does not open it, or a chunk that fails its check: its bytes are never handed on,
    though the chunks before it were (a caller streaming to a reader must end the stream as
    failed). Closing the iterator early stops the thread."""
    out: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=QUEUED)
    stop = threading.Event()

    class _Stopped(Exception):
        pass

    failed: list[BaseException] = []  # an error of the source itself (the storage)

    class _Reader:
        def read(self, n: int = -1) -> bytes:
            if stop.is_set():
                raise _Stopped
            try:
                data: bytes = src.read(n)
            except BaseException as exc:
                failed.append(exc)
                raise
            return data

    def run() -> None:
        sink = _Chunks(out)
        try:
            pyrage.decrypt_io(_Reader(), sink, [identity])
            if sink.buffer:
                out.put(bytes(sink.buffer))
            out.put(None)
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer
            if failed:
                out.put(failed[0])  # the storage's own error, unchanged
            elif isinstance(exc, pyrage.DecryptError | OSError | ValueError):
                out.put(CryptError(_reason(exc)))  # pyrage reports a damaged chunk as OSError
            else:
                out.put(exc)

    thread = threading.Thread(target=run, name="custos-decrypt", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class DecryptingReader(io.RawIOBase):
    """A read-only file object over :func:`decrypt_chunks`: for code that copies from a file
    (``copy_with_digests``, a zip being streamed). Raises :class:`CryptError` as that does;
    closing it closes its source."""

    def __init__(self, src: Readable, identity: Any) -> None:
        super().__init__()
        self._src = src
        self._chunks = decrypt_chunks(src, identity)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = memoryview(chunk)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        """Stop decrypting and close the source too."""
        self._chunks.close()  # type: ignore[attr-defined]
        close = getattr(self._src, "close", None)
        if close is not None:
            close()
        super().close()


def _reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "no matching keys" in text or "no identity" in text:
        return "no key given opens it (it was encrypted to other recipients)"
    if "header" in text or "not an age" in text or "parse" in text:
        return "it is not an age file, or its header is damaged"
    return "a part of it fails its authentication check: it was altered or damaged"


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    if b"=" in text or len(text) % 4 == 1:
        raise CryptError("it is not an age file, or its header is damaged")
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True, slots=True)
class _Header:
    stanzas: list[tuple[list[bytes], bytes]]  # (arguments after "->", body)
    signed: bytes  # the header up to and including "---", what its MAC covers
    mac: bytes


def _read_header(src: BinaryIO) -> _Header:
    def line() -> bytes:
        data = src.readline(_MAX_HEADER)
        if not data.endswith(b"\n"):
            raise CryptError("it is not an age file, or its header is damaged")
        return data

    first = line()
    if first != MAGIC + b"\n":
        raise CryptError("it is not an age file (age-encryption.org/v1)")
    signed, stanzas = first, list[tuple[list[bytes], bytes]]()
    while True:
        current = line()
        if current.startswith(b"--- "):
            signed += b"---"
            return _Header(stanzas, signed, _unb64(current[4:-1]))
        if not current.startswith(b"-> "):
            raise CryptError("it is not an age file, or its header is damaged")
        signed += current
        args = current[3:-1].split(b" ")
        body = b""
        while True:
            piece = line()
            signed += piece
            body += piece[:-1]
            if len(piece) - 1 < 64:
                break
        stanzas.append((args, _unb64(body)))
        if len(signed) > _MAX_HEADER:
            raise CryptError("its header is larger than any age header Custos writes")


def _file_key(header: _Header, secret: bytes) -> bytes:
    own = X25519PrivateKey.from_private_bytes(secret)
    ours = own.public_key().public_bytes_raw()
    for args, body in header.stanzas:
        if len(args) != 2 or args[0] != b"X25519":
            continue
        share = _unb64(args[1])
        if len(share) != 32 or len(body) != 32:
            continue
        shared = own.exchange(X25519PublicKey.from_public_bytes(share))
        key = _hkdf(shared, share + ours, _X25519_INFO)
        try:
            file_key = ChaCha20Poly1305(key).decrypt(b"\x00" * 12, body, None)
        except InvalidTag:
            continue
        expected = hmac.new(_hkdf(file_key, b"", b"header"), header.signed, "sha256").digest()
        if not hmac.compare_digest(expected, header.mac):
            raise CryptError("its header fails its authentication check: it was altered")
        return file_key
    raise CryptError("no key given opens it (it was encrypted to other recipients)")


def _stanza(file_key: bytes, recipient: str) -> bytes:
    them = recipient_bytes(recipient)
    ephemeral = X25519PrivateKey.from_private_bytes(os.urandom(32))
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(them))
    key = _hkdf(shared, share + them, _X25519_INFO)
    body = _b64(ChaCha20Poly1305(key).encrypt(b"\x00" * 12, file_key, None))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"-> X25519 " + _b64(share) + b"\n" + b"".join(ln + b"\n" for ln in lines)


def rewrap(src: Readable, dst: BinaryIO, identity: str, recipients: Sequence[str]) -> CopyResult:
    """Copy the age file ``src`` to ``dst`` with a new header wrapping its file key to
    ``recipients`` alone, the payload copied byte for byte (never decrypted); return the size
    and digests of what was written. ``identity`` (``AGE-SECRET-KEY-1…``) must open it.
    Raises :class:`CryptError` when it does not, or when the header fails its check;
    ``ValueError`` for a recipient that is not one."""
    if not recipients:
        raise ValueError("a copy is encrypted to one recipient at least")
    for r in recipients:
        recipient_bytes(r)  # every recipient checked before a byte is written
    # A location's reader is raw: buffered here, so that the header's lines are not read a
    # byte at a time.
    reader: Any = io.BufferedReader(src, CHUNK) if isinstance(src, io.RawIOBase) else src
    header = _read_header(reader)
    file_key = _file_key(header, identity_secret(identity))
    signed = MAGIC + b"\n" + b"".join(_stanza(file_key, r) for r in recipients) + b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), signed, "sha256").digest()
    out = _Digesting(dst)
    out.write(signed + b" " + _b64(mac) + b"\n")
    while chunk := reader.read(CHUNK):
        out.write(chunk)
    out.flush()
    return out.result()
