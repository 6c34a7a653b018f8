"""Reading a stored copy back: every byte once, sha512 and sha256 computed in that pass, and
the copy judged against the digests the catalog holds (sizes, ETags and server checksums are
never trusted).

:func:`read_back` returns a verdict (:class:`Verdict`, in a :class:`ReadBack`): a missing,
truncated or different copy is a finding, not an error. Replication reads every copy it writes
back with it before recording it, and repair every copy it replaces; a fixity check judges
what it reads with the same verdicts (:mod:`fixity.check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from archive.digest import digest_stream
from archive.storage.replica import ObjectMissing, ReplicaLocation, check_digests, check_key


class Verdict(StrEnum):
    """What reading a copy back found."""

    OK = "ok"
    MISMATCH = "mismatch"  # bytes differ from the expected digests
    TRUNCATED = "truncated"  # fewer bytes than the expected size
    MISSING = "missing"  # nothing stored under the key (or version)


@dataclass(frozen=True, slots=True)
class ReadBack:
    """The verdict on one copy, with what was expected and what was read."""

    location: str
    key: str
    verdict: Verdict
    expected_sha512: str
    expected_sha256: str
    expected_size: int | None = None
    version_id: str | None = None
    size: int | None = None  # bytes actually read
    sha512: str | None = None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def describe(self) -> str:
        """One line for an operator."""
        where = f"{self.location}:{self.key}"
        if self.version_id:
            where += f" (version {self.version_id})"
        if self.verdict is Verdict.OK:
            return f"{where}: intact ({self.size} bytes, sha512 and sha256 match)"
        if self.verdict is Verdict.MISSING:
            return f"{where}: missing"
        if self.verdict is Verdict.TRUNCATED:
            return f"{where}: truncated: {self.size} of {self.expected_size} bytes"
        return (
            f"{where}: does not match: read {self.size} bytes with sha512 {self.sha512}, "
            f"expected sha512 {self.expected_sha512}"
        )


def read_back(
    location: ReplicaLocation,
    key: str,
    *,
    sha512: str,
    sha256: str,
    size: int | None = None,
    version_id: str | None = None,
) -> ReadBack:
    """Read every byte stored under ``key`` once, computing sha512 and sha256 in that pass,
    and judge the copy against the expected digests (and size, if given).

    A missing, truncated or different copy is a verdict, not an error. Raises
    :class:`KeyRejected` for a bad key, ``ValueError`` for a malformed digest, and
    :class:`StorageError` (:class:`LocationUnavailable` when unreachable) only when the
    location could not be read.
    """
    check_key(key)
    check_digests(sha256, sha512)

    try:
        reader = location.open(key, version_id=version_id)
    except ObjectMissing:
        return ReadBack(location.name, key, Verdict.MISSING, sha512, sha256, size, version_id)
    with reader:
        got = digest_stream(reader, ("sha512", "sha256"), size_hint=size or 0)
    if (
        got.digests["sha512"] == sha512
        and got.digests["sha256"] == sha256
        and (size is None or got.size == size)
    ):
        found = Verdict.OK
    elif size is not None and got.size < size:
        found = Verdict.TRUNCATED
    else:
        found = Verdict.MISMATCH
    return ReadBack(
        location.name,
        key,
        found,
        expected_sha512=sha512,
        expected_sha256=sha256,
        expected_size=size,
        version_id=reader.version_id,
        size=got.size,
        sha512=got.digests["sha512"],
        sha256=got.digests["sha256"],
    )
