"""Repair: replace a damaged, truncated or missing copy from a copy that still verifies.

Sources are tried in turn (the primary storage root first, then each replica location):
a copy in a folder is put straight from its file, and the put itself proves the bytes (the
folder location digests what it writes, S3 checks the sha256 sent with them), so a bad
source is refused and the next one tried; a copy in S3 is first downloaded into the staging
folder while both digests are computed. The repaired copy is then read back in full. On S3
the put writes a new object version: the damaged, locked version stays, never deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from archive.digest import copy_with_digests
from archive.errors import StorageError
from archive.journal import scratch
from archive.storage.readback import read_back
from archive.storage.replica import (
    ChecksumMismatch,
    LocalFolderLocation,
    ObjectMissing,
    ReplicaLocation,
)
from fixity.check import Expected


@dataclass(frozen=True, slots=True)
class RepairResult:
    """``source`` is the location the good copy came from; None when no copy verified."""

    location: str
    expected: Expected
    source: str | None
    version_id: str | None
    tried: tuple[str, ...]  # what each source said, in order
    error: str = ""  # the target refused the new copy (e.g. an Object Lock refusal)

    @property
    def repaired(self) -> bool:
        return self.source is not None and not self.error


def repair_copy(
    target: ReplicaLocation,
    expected: Expected,
    sources: Sequence[ReplicaLocation],
    staging: Path,
) -> RepairResult:
    """Write a verified copy of ``expected`` to ``target`` from the first source that has one.

    Never raises for a bad source or a refusal by the target: the result says what happened.
    """
    tried: list[str] = []
    for source in sources:
        if source.name == target.name:
            continue
        try:
            if isinstance(source, LocalFolderLocation):
                path = source.root.joinpath(*expected.source_key.split("/"))
                if not path.is_file():
                    tried.append(f"{source.name}: missing")
                    continue
                result = _put_and_read_back(target, expected, path)
            else:
                with scratch(staging, "repair-") as tmp:
                    local = Path(tmp) / "copy"
                    if not _download(source, expected, local):
                        tried.append(f"{source.name}: does not verify")
                        continue
                    result = _put_and_read_back(target, expected, local)
        except ChecksumMismatch:
            tried.append(f"{source.name}: does not verify")
            continue
        except ObjectMissing:
            tried.append(f"{source.name}: missing")
            continue
        except _TargetError as exc:  # reported, never retried in a loop
            return RepairResult(target.name, expected, source.name, None, (*tried,), exc.message)
        except StorageError as exc:
            tried.append(f"{source.name}: unreadable ({exc.message})")
            continue
        if result is None:
            return RepairResult(
                target.name,
                expected,
                source.name,
                None,
                (*tried,),
                error="the new copy did not read back intact",
            )
        return RepairResult(target.name, expected, source.name, result, (*tried, source.name))
    return RepairResult(target.name, expected, None, None, tuple(tried))


class _TargetError(StorageError):
    """The target location refused or failed the write (not the source's fault), e.g. an
    Object Lock or permission refusal."""


def _download(source: ReplicaLocation, expected: Expected, local: Path) -> bool:
    """Copy the source's bytes to ``local``, digesting them; whether they verify."""
    with source.open(expected.source_key) as reader:
        got = copy_with_digests(reader, local, ("sha512", "sha256"), size_hint=expected.size)
    return (
        got.size == expected.size
        and got.digests["sha512"] == expected.sha512
        and got.digests["sha256"] == expected.sha256
    )


def _put_and_read_back(target: ReplicaLocation, expected: Expected, source: Path) -> str | None:
    """Put ``source`` at the target and read it back; the new version id ("" for a folder),
    or None if it did not read back intact. ChecksumMismatch: the source is bad."""
    try:
        put = target.put(expected.key, source, sha256=expected.sha256, sha512=expected.sha512)
    except ChecksumMismatch:
        raise
    except StorageError as exc:
        raise _TargetError(exc.message, hint=exc.hint) from exc
    check = read_back(
        target,
        expected.key,
        sha512=expected.sha512,
        sha256=expected.sha256,
        size=expected.size,
        version_id=put.version_id,
    )
    if not check.ok:
        return None
    return put.version_id or ""
