"""A tier key's shares: any THRESHOLD of a set recover the secret, fewer or mixed do not, and
no refusal quotes a word of a share. The age identity made from the secret is the one
Debian's age-keygen reads (an implementation that is not ours checks our Bech32)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest

from access.keys.shares import (
    identity_text,
    new_secret,
    read_share,
    recipient_of,
    recover,
    split,
)
from archive.errors import InputRejected


def _quotes_share(exc: InputRejected, words: str) -> bool:
    """Whether the refusal's words carry two consecutive words of the share (one word alone
    may be an ordinary English word of the message)."""
    text = " ".join([exc.message, exc.hint, *(f.message for f in exc.findings)]).lower()
    w = words.split()
    return any(f"{a} {b}" in text for a, b in itertools.pairwise(w)) or words in text


def test_any_threshold_of_a_set_recovers_the_secret_and_the_identity_opens_age() -> None:
    secret = new_secret()
    made = split(secret, shares=5, threshold=3)
    assert len(made.mnemonics) == 5 and len(set(made.mnemonics)) == 5
    for combo in ((0, 1, 2), (0, 3, 4), (4, 2, 1)):
        assert recover([(f"share {i}", made.mnemonics[i]) for i in combo]) == secret
    identity = pyrage.x25519.Identity.from_str(identity_text(secret))
    sealed = pyrage.encrypt(b"testimony", [pyrage.x25519.Recipient.from_str(recipient_of(secret))])
    assert pyrage.decrypt(sealed, [identity]) == b"testimony"


def test_debian_age_keygen_reads_the_identity_and_names_the_same_recipient(tmp_path: Path) -> None:
    assert shutil.which("age-keygen"), "Debian's age is absent: `make test` installs it"
    for _ in range(5):
        secret = new_secret()
        key = tmp_path / "identity.txt"
        key.write_text(identity_text(secret) + "\n")
        printed = subprocess.run(
            ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
        ).stdout.strip()
        assert printed == recipient_of(secret)


def test_fewer_than_the_threshold_are_refused_naming_how_many_are_needed() -> None:
    made = split(new_secret(), shares=5, threshold=3)
    with pytest.raises(InputRejected) as caught:
        recover([("share 1", made.mnemonics[0]), ("share 2", made.mnemonics[1])])
    assert caught.value.findings[0].code == "KEY-SHARES-TOO-FEW"
    assert "2 share(s) given, 3 needed" in caught.value.message


def test_one_share_given_twice_counts_once() -> None:
    made = split(new_secret(), shares=3, threshold=2)
    with pytest.raises(InputRejected) as caught:
        recover([("alice", made.mnemonics[0]), ("bob", made.mnemonics[0])])
    assert caught.value.findings[0].code == "KEY-SHARE-DUPLICATE"
    assert "bob is the same share as alice" in caught.value.message


def test_shares_of_two_sets_of_one_secret_do_not_combine() -> None:
    secret = new_secret()
    old, new = split(secret, shares=3, threshold=2), split(secret, shares=3, threshold=2)
    assert old.share_set != new.share_set
    with pytest.raises(InputRejected) as caught:
        recover([("old", old.mnemonics[0]), ("new", new.mnemonics[1])])
    assert caught.value.findings[0].code == "KEY-SHARE-SET"
    assert recover([("new 1", new.mnemonics[0]), ("new 3", new.mnemonics[2])]) == secret


def test_a_damaged_share_is_refused_by_position_without_quoting_its_words() -> None:
    made = split(new_secret(), shares=3, threshold=2)
    words = made.mnemonics[0].split()
    damaged = {
        "a word not in the list": [*words[:4], "zzzz", *words[5:]],
        "two words swapped": [*words[:4], words[5], words[4], *words[6:]],
        "a word left out": words[:-1],
    }
    for why, bad in damaged.items():
        with pytest.raises(InputRejected) as caught:
            read_share(" ".join(bad), where="share 1")
        exc = caught.value
        assert exc.findings[0].code == "KEY-SHARE-INVALID", why
        assert exc.findings[0].path == "share 1"
        assert not _quotes_share(exc, made.mnemonics[0]), (why, exc.message)
    with pytest.raises(InputRejected) as caught:
        read_share(" ".join([*words[:4], "zzzz", *words[5:]]), where="share 1")
    assert "(word 5)" in caught.value.message


@pytest.mark.parametrize(("shares", "threshold"), [(5, 1), (2, 3), (17, 2), (1, 1)])
def test_counts_that_do_not_split_a_key_are_refused(shares: int, threshold: int) -> None:
    with pytest.raises(InputRejected) as caught:
        split(new_secret(), shares=shares, threshold=threshold)
    assert caught.value.findings[0].code == "KEY-SHARES"


def test_identity_text_is_refused_for_anything_but_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        identity_text(b"\x00" * 31)
