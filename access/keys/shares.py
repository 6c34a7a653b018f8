"""A tier's key and its shares: an age X25519 identity whose 32 secret bytes are split among
registrars as SLIP-39 share mnemonics (``shamir-mnemonic``).

The age identity ``AGE-SECRET-KEY-1…`` is the Bech32 encoding (BIP 173, in capitals) of 32
bytes, and those 32 bytes are the SLIP-39 master secret (no passphrase). Anyone holding
enough shares therefore recovers the identity without Custos: ``shamir recover`` prints the
master secret in hex, the few lines of Python in the registrars' guide
(``docs/guides/keys.md``) turn it into the identity, and ``age -d -i`` decrypts a stored
copy. :func:`archive.crypt.identity_text` is the same conversion.

Nothing here logs or prints a share, a secret or an identity; an error names the share by
its position (``share 2``), never by its words.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import pyrage
from shamir_mnemonic import MnemonicError, combine_mnemonics, generate_mnemonics
from shamir_mnemonic.share import Share
from shamir_mnemonic.wordlist import WORDLIST

from archive.crypt import SECRET_BYTES, identity_text
from archive.errors import InputRejected
from archive.findings import Finding

#: SLIP-39 allows up to 16 shares in a group; a threshold of 1 would let one person hold
#: the key, which is what splitting it is for.
MAX_SHARES = 16
MIN_THRESHOLD = 2


def identity_of(secret: bytes) -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.from_str(identity_text(secret))


def recipient_of(secret: bytes) -> str:
    """The age recipient (``age1…``, the public key) of the identity made from ``secret``."""
    return str(identity_of(secret).to_public())


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def check_counts(shares: int, threshold: int) -> None:
    """Raises :class:`InputRejected` (``KEY-SHARES``) unless 2 <= threshold <= shares <= 16."""
    if not MIN_THRESHOLD <= threshold <= shares <= MAX_SHARES:
        raise InputRejected(
            f"{shares} shares with a threshold of {threshold} cannot split a key",
            [
                Finding(
                    "KEY-SHARES",
                    "error",
                    f"the threshold must be {MIN_THRESHOLD} or more (one person must never "
                    f"hold the key alone) and no more than the shares, at most {MAX_SHARES}",
                    "--shares/--threshold",
                )
            ],
            hint="e.g. --shares 5 --threshold 2: any two of five registrars open the key",
        )


@dataclass(frozen=True, slots=True)
class ShareSet:
    """New share mnemonics (one per registrar) and what tells their set apart."""

    mnemonics: tuple[str, ...]
    share_set: int  # the SLIP-39 identifier every share of the set begins with
    threshold: int


def split(secret: bytes, *, shares: int, threshold: int) -> ShareSet:
    """Split ``secret`` into ``shares`` SLIP-39 mnemonics, any ``threshold`` of which recover
    it (one group, no passphrase). Each call makes a new set: its shares do not combine with
    another set's, though every set recovers the same secret."""
    check_counts(shares, threshold)
    (group,) = generate_mnemonics(1, [(threshold, shares)], secret)
    return ShareSet(tuple(group), Share.from_mnemonic(group[0]).identifier, threshold)


@dataclass(frozen=True, slots=True)
class Presented:
    """One share, read and checked (its words are not kept)."""

    share_set: int
    index: int  # the share's own number within its set
    threshold: int


def _reject(code: str, message: str, where: str, hint: str) -> InputRejected:
    return InputRejected(message, [Finding(code, "error", message, where)], hint=hint)


def read_share(mnemonic: str, *, where: str) -> Presented:
    """Check one share mnemonic; raises :class:`InputRejected` (``KEY-SHARE-INVALID``) naming
    ``where`` (never the words) when it is not a SLIP-39 share: a word not in the list, a
    word left out, a checksum that fails."""
    try:
        share = Share.from_mnemonic(" ".join(mnemonic.split()))
    except (MnemonicError, ValueError, KeyError) as exc:
        raise _reject(
            "KEY-SHARE-INVALID",
            f"{where} is not a share: {_mnemonic_reason(exc, mnemonic)}",
            where,
            "give the share exactly as it was printed (its words in order, separated by spaces)",
        ) from None
    return Presented(share.identifier, share.index, share.member_threshold)


def _mnemonic_reason(exc: Exception, mnemonic: str = "") -> str:
    """Why a share did not read, in words that quote none of the share's own (the library's
    messages quote the word it stopped at)."""
    text = str(exc).lower()
    words = mnemonic.split()
    if ("word" in text and "invalid" in text) or isinstance(exc, KeyError):
        known = set(WORDLIST)
        wrong = [i for i, w in enumerate(words, 1) if w.lower() not in known]
        at = f" (word {wrong[0]})" if wrong else ""
        return f"a word is not in the SLIP-39 word list{at}"
    if "checksum" in text:
        return "its checksum does not match: a word is wrong or out of place"
    if "length" in text:
        return f"it has {len(words)} words, not the number a share has"
    return "it is not a SLIP-39 share"


def recover(mnemonics: Sequence[tuple[str, str]]) -> bytes:
    """The secret from ``(where, mnemonic)`` pairs of one set. Raises :class:`InputRejected`:
    ``KEY-SHARE-INVALID`` for a share that does not read, ``KEY-SHARE-SET`` for shares of
    different sets, ``KEY-SHARE-DUPLICATE`` for one share given twice, ``KEY-SHARES-TOO-FEW``
    below the threshold."""
    read = [(where, read_share(m, where=where)) for where, m in mnemonics]
    if not read:
        raise _reject(
            "KEY-SHARES-TOO-FEW", "no share given", "shares", "give the shares of the key"
        )
    first_where, first = read[0]
    seen: dict[int, str] = {}
    for where, p in read:
        if p.share_set != first.share_set:
            raise _reject(
                "KEY-SHARE-SET",
                f"{where} belongs to another set of shares than {first_where}",
                where,
                "give shares of one set: the set made last (by custos keys init or reshare)",
            )
        if p.index in seen:
            raise _reject(
                "KEY-SHARE-DUPLICATE",
                f"{where} is the same share as {seen[p.index]}",
                where,
                "each share counts once: give shares held by different registrars",
            )
        seen[p.index] = where
    if len(read) < first.threshold:
        raise _reject(
            "KEY-SHARES-TOO-FEW",
            f"{len(read)} share(s) given, {first.threshold} needed",
            "shares",
            f"give {first.threshold} shares of the set, from different registrars",
        )
    try:
        secret: bytes = combine_mnemonics([" ".join(m.split()) for _, m in mnemonics])
    except MnemonicError as exc:
        raise _reject(
            "KEY-SHARE-INVALID",
            f"the shares do not combine: {_mnemonic_reason(exc)}",
            "shares",
            "check each share against what was printed",
        ) from None
    if len(secret) != SECRET_BYTES:
        raise _reject(
            "KEY-SHARE-SET",
            f"the shares hold a {len(secret)}-byte secret, not an age key",
            "shares",
            "these shares were not made by custos keys init",
        )
    return secret
