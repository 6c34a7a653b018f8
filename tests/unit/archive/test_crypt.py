"""Protected copies in the age format: what `encrypt_copy` writes Debian's `age` decrypts,
with both sides' digests right; `decrypt_chunks` streams the plain bytes and refuses a wrong
key or an altered byte; `rewrap` moves a copy to new recipients with its payload untouched,
which Debian's `age` opens with the new key and not the old."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest

from archive import crypt
from archive.crypt import CryptError, decrypt_chunks, encrypt_copy, identity_text, rewrap


def _key() -> tuple[str, str, pyrage.x25519.Identity]:
    secret = os.urandom(32)
    text = identity_text(secret)
    identity = pyrage.x25519.Identity.from_str(text)
    return text, str(identity.to_public()), identity


def _age_decrypt(tmp: Path, identity: str, sealed: bytes) -> subprocess.CompletedProcess[bytes]:
    assert shutil.which("age"), "Debian's age is absent: `make test` installs it"
    key = tmp / "identity.txt"
    key.write_text(identity + "\n")
    copy = tmp / "copy.age"
    copy.write_bytes(sealed)
    return subprocess.run(["age", "-d", "-i", str(key), str(copy)], capture_output=True)


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 3 * 1024 * 1024 + 17])
def test_an_encrypted_copy_opens_with_debian_age_and_both_digests_are_right(
    tmp_path: Path, size: int
) -> None:
    plain = os.urandom(size)
    text, recipient, _ = _key()
    _, escrow, escrow_identity = _key()
    out = io.BytesIO()
    done = encrypt_copy(io.BytesIO(plain), out, [recipient, escrow])
    sealed = out.getvalue()
    assert done.plain.size == size
    assert done.plain.digests == {
        "sha512": hashlib.sha512(plain).hexdigest(),
        "sha256": hashlib.sha256(plain).hexdigest(),
    }
    assert done.stored.size == len(sealed)
    assert done.stored.digests["sha512"] == hashlib.sha512(sealed).hexdigest()
    assert done.stored.digests["sha256"] == hashlib.sha256(sealed).hexdigest()
    opened = _age_decrypt(tmp_path, text, sealed)
    assert opened.returncode == 0 and opened.stdout == plain
    assert pyrage.decrypt(sealed, [escrow_identity]) == plain  # the escrow opens it too
    if size > 1024:
        assert plain[:1024] not in sealed


def test_decrypt_chunks_streams_the_plain_bytes_in_bounded_chunks() -> None:
    plain = os.urandom(5 * crypt.CHUNK + 3)
    _, recipient, identity = _key()
    out = io.BytesIO()
    encrypt_copy(io.BytesIO(plain), out, [recipient])
    chunks = list(decrypt_chunks(io.BytesIO(out.getvalue()), identity))
    assert b"".join(chunks) == plain
    assert len(chunks) >= 5 and max(len(c) for c in chunks) < 2 * crypt.CHUNK


def test_a_wrong_key_or_an_altered_byte_is_refused_before_its_chunk_is_handed_on() -> None:
    plain = os.urandom(3 * crypt.CHUNK)
    _, recipient, identity = _key()
    _, _, stranger = _key()
    out = io.BytesIO()
    encrypt_copy(io.BytesIO(plain), out, [recipient])
    sealed = bytearray(out.getvalue())

    with pytest.raises(CryptError, match="no key given opens it"):
        list(decrypt_chunks(io.BytesIO(bytes(sealed)), stranger))

    sealed[len(sealed) // 2] ^= 0x01  # a bit flipped in the middle of the payload
    handed: list[bytes] = []
    with pytest.raises(CryptError, match="fails its authentication check"):
        handed.extend(decrypt_chunks(io.BytesIO(bytes(sealed)), identity))
    assert sum(map(len, handed)) < len(plain) // 2 + 64 * 1024  # nothing past the damage
    assert b"".join(handed) == plain[: sum(map(len, handed))]

    with pytest.raises(CryptError, match="not an age file"):
        list(decrypt_chunks(io.BytesIO(b"plain text, never encrypted\n" * 100), identity))


def test_closing_the_stream_early_stops_the_decrypting_thread() -> None:
    plain = os.urandom(20 * crypt.CHUNK)
    _, recipient, identity = _key()
    out = io.BytesIO()
    encrypt_copy(io.BytesIO(plain), out, [recipient])
    stream = decrypt_chunks(io.BytesIO(out.getvalue()), identity)
    assert next(stream) == plain[: crypt.CHUNK]
    stream.close()  # a download cut short
    import threading

    assert not [t for t in threading.enumerate() if t.name == "custos-decrypt"]


def test_rewrap_moves_a_copy_to_new_recipients_with_its_payload_untouched(
    tmp_path: Path,
) -> None:
    plain = os.urandom(2 * 1024 * 1024 + 5)
    old_text, old_recipient, old_identity = _key()
    new_text, new_recipient, _ = _key()
    _, escrow, escrow_identity = _key()
    out = io.BytesIO()
    encrypt_copy(io.BytesIO(plain), out, [old_recipient])
    sealed = out.getvalue()

    moved = io.BytesIO()
    rewrap(io.BytesIO(sealed), moved, old_text, [new_recipient, escrow])
    rewrapped = moved.getvalue()
    payload = sealed[sealed.index(b"\n---") :].split(b"\n", 2)[2]
    assert rewrapped.endswith(payload)  # the payload, byte for byte: only the header changed

    opened = _age_decrypt(tmp_path, new_text, rewrapped)
    assert opened.returncode == 0 and opened.stdout == plain
    assert pyrage.decrypt(rewrapped, [escrow_identity]) == plain
    assert _age_decrypt(tmp_path, old_text, rewrapped).returncode != 0
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(rewrapped, [old_identity])


def test_rewrap_refuses_a_key_that_does_not_open_it_and_an_altered_header() -> None:
    _, recipient, _ = _key()
    stranger_text, _, _ = _key()
    own_text = identity_text(os.urandom(32))
    own_recipient = str(pyrage.x25519.Identity.from_str(own_text).to_public())
    out = io.BytesIO()
    encrypt_copy(io.BytesIO(b"testimony"), out, [recipient, own_recipient])
    sealed = out.getvalue()

    with pytest.raises(CryptError, match="no key given opens it"):
        rewrap(io.BytesIO(sealed), io.BytesIO(), stranger_text, [recipient])

    lines = sealed.split(b"\n")
    lines[1] = lines[1][:-2] + (b"AA" if not lines[1].endswith(b"AA") else b"BB")
    with pytest.raises(CryptError):
        rewrap(io.BytesIO(b"\n".join(lines)), io.BytesIO(), own_text, [recipient])

    with pytest.raises(ValueError):
        rewrap(io.BytesIO(sealed), io.BytesIO(), own_text, ["age1notarecipient"])
    with pytest.raises(CryptError, match="not an age file"):
        rewrap(io.BytesIO(b"hello\n"), io.BytesIO(), own_text, [recipient])


def test_the_bech32_forms_round_trip_and_refuse_a_damaged_checksum() -> None:
    secret = os.urandom(32)
    text = identity_text(secret)
    assert crypt.identity_secret(text) == secret
    recipient = str(pyrage.x25519.Identity.from_str(text).to_public())
    assert len(crypt.recipient_bytes(recipient)) == 32
    damaged = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")
    with pytest.raises(ValueError, match="checksum"):
        crypt.recipient_bytes(damaged)


def test_a_storage_error_while_reading_is_the_storages_not_a_damaged_copy() -> None:
    plain = os.urandom(3 * crypt.CHUNK)
    _, recipient, identity = _key()
    out = io.BytesIO()
    encrypt_copy(io.BytesIO(plain), out, [recipient])

    class Failing(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if self.tell() > crypt.CHUNK:
                raise OSError(5, "Input/output error")
            return super().read(n)

    with pytest.raises(OSError) as caught:
        list(decrypt_chunks(Failing(out.getvalue()), identity))
    assert not isinstance(caught.value, CryptError) and caught.value.errno == 5
