"""Helpers written once for every replica location: copy an OCFL object, read a copy back.

- :func:`replicate_object` copies one local OCFL object with its root inventory written last,
  so a replica whose root ``inventory.json`` exists is complete; content files are put against
  known digests, so a file changed since ingest is refused rather than spread.
- :func:`read_back` reads every byte of a copy once, computing sha512 and sha256 in that pass,
  and returns a verdict (:class:`Verdict`): a bad copy is a finding, not an error.
- :func:`prepare_storage_root` declares an OCFL storage root (§4.1) at a location.

Replication policy, fixity sweeps and repair will call these; none of them is wired yet.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from archive.digest import digest_file, digest_stream
from archive.errors import StorageError
from archive.storage import ocfl
from archive.storage.replica import (
    ObjectMissing,
    PutResult,
    ReplicaLocation,
    check_digests,
    check_key,
)

ROOT_INVENTORY = "inventory.json"
ROOT_SIDECAR = f"inventory.json.{ocfl.DIGEST_ALGORITHM}"


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


@dataclass(frozen=True, slots=True)
class ReplicatedObject:
    """The copies written for one OCFL object, in the order they were written."""

    location: str
    object_rel_path: str
    puts: tuple[PutResult, ...]


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


def replicate_object(
    location: ReplicaLocation,
    object_root: Path,
    object_rel_path: str,
    expected: Mapping[str, tuple[str, str]] | None = None,
) -> ReplicatedObject:
    """Copy every file of the local OCFL object at ``object_root`` to ``location``, under
    ``<object_rel_path>/<path in the object>``, and return the copies written.

    Content files are put against known digests, so a local file that changed since ingest is
    refused rather than spread: ``expected`` maps content paths (``v1/content/...``) to
    ``(sha512, sha256)`` from the catalog; without it the object's own inventory (manifest and
    sha256 fixity) is used. Every content file must be known and every known file present.
    Other files (inventories, sidecars, NAMASTE, extensions) are digested first.

    The root ``inventory.json`` goes last, after its sidecar: a replica whose root inventory
    exists is complete. Each run writes every file again (on S3, new versions).

    Raises :class:`KeyRejected`, :class:`ChecksumMismatch`, :class:`LocationUnavailable` or
    :class:`StorageError`; the first failure stops the copy, leaving no root inventory.
    """
    check_key(object_rel_path)
    inventory = ocfl.read_inventory(object_root)  # a damaged inventory is never spread
    known = dict(expected) if expected is not None else _inventory_digests(inventory)
    files = _object_files(object_root)
    content = {p for p in files if _is_content(p)}
    problems = [f"{p} is not in the expected digests" for p in sorted(content - known.keys())]
    problems += [f"{p} is missing from the object" for p in sorted(known.keys() - set(files))]
    if problems:
        raise StorageError(
            f"cannot replicate the object at {object_root}: " + "; ".join(problems),
            hint="run a fixity check on the primary copy before replicating it",
        )
    last = [ROOT_SIDECAR, ROOT_INVENTORY]
    order = [p for p in files if p not in last] + last
    puts: list[PutResult] = []
    for rel in order:
        source = object_root / rel
        if rel in known:
            sha512, sha256 = known[rel]
        else:
            digests = digest_file(source).digests
            sha512, sha256 = digests["sha512"], digests["sha256"]
        puts.append(location.put(f"{object_rel_path}/{rel}", source, sha256=sha256, sha512=sha512))
    return ReplicatedObject(location.name, object_rel_path, tuple(puts))


def _is_content(rel: str) -> bool:
    first, _, rest = rel.partition("/")
    return first.startswith("v") and first[1:].isdigit() and rest.startswith("content/")


def _inventory_digests(inventory: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """Content path -> (sha512, sha256) from an inventory's manifest and sha256 fixity."""
    manifest = inventory.get("manifest")
    fixity = inventory.get("fixity")
    sha256_block = fixity.get("sha256", {}) if isinstance(fixity, dict) else {}
    by_path_256 = {p: d for d, paths in sha256_block.items() for p in paths}
    out: dict[str, tuple[str, str]] = {}
    if isinstance(manifest, dict):
        for sha512, paths in manifest.items():
            for p in paths:
                if p in by_path_256:
                    out[p] = (sha512, by_path_256[p])
    return out


def _object_files(object_root: Path) -> list[str]:
    """Every file of an OCFL object, relative and sorted; refuses links and the unexpected."""
    if not (object_root / ocfl.OBJECT_NAMASTE).is_file():
        raise StorageError(f"{object_root} is not an OCFL object (no {ocfl.OBJECT_NAMASTE})")
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(object_root):
        dirnames.sort()
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise StorageError(f"{path} is not a plain file or folder; not replicating it")
        for name in sorted(filenames):
            files.append((Path(dirpath) / name).relative_to(object_root).as_posix())
    if ROOT_INVENTORY not in files or ROOT_SIDECAR not in files:
        raise StorageError(f"{object_root} has no root inventory and sidecar")
    return sorted(files)


def prepare_storage_root(location: ReplicaLocation) -> list[str]:
    """Write the OCFL storage root declaration (§4.1: NAMASTE, layout description and the
    layout extension's config) to a location that lacks it; return the keys written.

    With it, a location holding replicated objects is a storage root any OCFL tool can read.
    """
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="custos-root-") as tmp:
        for key, data in ocfl.storage_root_files().items():
            if location.stat(key) is not None:
                continue
            source = Path(tmp) / key.replace("/", "_")
            source.write_bytes(data)
            digests = digest_file(source).digests
            location.put(key, source, sha256=digests["sha256"], sha512=digests["sha512"])
            written.append(key)
    return written
