"""Check one stored copy: read every byte once, recompute the digests the policy asks for
(:func:`read_copy`, in the run or in its helper process: see :mod:`fixity.reader`), and
compare them and the length with the catalog's (:func:`judge`). A bad copy is a verdict, not
an error."""

from __future__ import annotations

from dataclasses import dataclass

from archive.digest import CopyResult, digest_stream
from archive.storage.readback import Verdict
from archive.storage.replica import ObjectMissing, ReplicaLocation


@dataclass(frozen=True, slots=True)
class Expected:
    """What a file is, by the catalog."""

    package_id: str
    object_path: str
    content_path: str
    size: int
    sha512: str
    sha256: str
    version: int
    #: Where another copy of the same bytes is read from when repairing, if not the same
    #: path: a root inventory (or sidecar) is repaired from ``vN/inventory.json`` (``…sha512``)
    #: of the version it must equal, which every copy of that version holds.
    source_path: str = ""

    @property
    def key(self) -> str:
        """Its key at a location: in the object's folder; a file at the storage root's
        level (``object_path`` empty: the custody log's) under its own path."""
        return "/".join(p for p in (self.object_path, self.content_path) if p)

    @property
    def source_key(self) -> str:
        return "/".join(p for p in (self.object_path, self.source_path or self.content_path) if p)


@dataclass(frozen=True, slots=True)
class CheckResult:
    location: str
    expected: Expected
    verdict: Verdict
    algorithms: tuple[str, ...]
    size: int  # bytes read
    found: dict[str, str]  # algorithm -> digest recomputed

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def describe(self) -> str:
        """One line for the event and the operator (paths and digests only)."""
        e = self.expected
        where = f"{self.location}: {e.content_path}"
        algs = " and ".join(self.algorithms)
        if self.verdict is Verdict.OK:
            return f"{where}: intact ({self.size} bytes; {algs} match the catalog)"
        if self.verdict is Verdict.MISSING:
            return f"{where}: MISSING (nothing stored under {e.key})"
        if self.verdict is Verdict.TRUNCATED:
            return f"{where}: TRUNCATED ({self.size} of {e.size} bytes)"
        differs = [
            f"{alg} {self.found[alg]} instead of {getattr(e, alg)}"
            for alg in self.algorithms
            if self.found.get(alg) != getattr(e, alg)
        ]
        size = f"{self.size} bytes" + (f" instead of {e.size}" if self.size != e.size else "")
        return f"{where}: DOES NOT MATCH ({size}; " + "; ".join(differs or ["length"]) + ")"


#: What reading a copy found: its size and digests, or ``None`` when nothing is stored there.
Read = CopyResult | None


def read_copy(location: ReplicaLocation, key: str, algorithms: tuple[str, ...], size: int) -> Read:
    """Read every byte stored under ``key`` once and digest it (``size``: what the catalog
    expects, to choose how to read; never taken as the size).

    Raises :class:`StorageError` (:class:`LocationUnavailable`) only when the location could
    not be read; a missing, short or different copy is a verdict (:func:`judge`)."""
    try:
        reader = location.open(key)
    except ObjectMissing:
        return None
    with reader:
        return digest_stream(reader, algorithms, size_hint=size)


def judge(location: str, expected: Expected, algs: tuple[str, ...], got: Read) -> CheckResult:
    """The verdict on what :func:`read_copy` found of ``expected`` at ``location``."""
    if got is None:
        return CheckResult(location, expected, Verdict.MISSING, algs, 0, {})
    matches = got.size == expected.size and all(
        got.digests[a] == getattr(expected, a) for a in algs
    )
    if matches:
        verdict = Verdict.OK
    elif got.size < expected.size:
        verdict = Verdict.TRUNCATED
    else:
        verdict = Verdict.MISMATCH
    return CheckResult(location, expected, verdict, algs, got.size, dict(got.digests))
