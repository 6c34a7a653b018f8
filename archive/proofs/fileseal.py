"""A proof for each file on its own, revealing nothing of its siblings (a *file seal*).

A manifest's evidence record proves a whole manifest: a court bundle proving one file that way
must carry the manifest, which names every other file of the package, and the manifest's
reduced hash tree, which hands out the hashes of its sibling manifests. A file seal proves each
content file of a version by itself:

- every content file added in version N gets a secret random salt (32 bytes); its node is the
  standard RFC 4998 pair ``H(min ‖ max)`` of ``H(file)`` and ``H(salt)``, so any RFC 4998
  verifier (BouncyCastle included) checks a file's record against the file itself, its first
  list being ``[H(file), H(salt)]``;
- the nodes, sorted, are padded with dummy nodes to a power of two and the tree is carried up to
  a fixed height (:data:`HEIGHT`) with pad values, so that every file's path has the same
  length: a record tells nothing of how many files the version holds;
- the tree's root is a leaf of a seal batch of file-seal roots only (never beside manifests,
  whose unsalted hashes would then appear in a file's path), timestamped like any seal; the
  stored record is the root's (``vN/files-<alg>.<tsa>-<serial>.ers``);
- the salts, the files' digests, the pad seed and the root are stored beside the records, in
  ``extensions/custos-evidence-records/vN/files-<alg>.json`` (the *sidecar*): with it and the
  root's record, anyone holding the object can recompute each file's own record
  (:meth:`FileSeal.record_for`), as ``custos export`` does.

Why salted: a bundle that proves file X hands out the values beside X's path. Were a node just
``H(Y)`` for a withheld sibling Y, anyone who guesses Y's bytes (a known photo, a standard form
filled in with a name) could confirm that the archive holds Y. Every value a record reveals is
either ``H(salt)`` of the released file itself or a hash over other files' secret salts and
the pad seed, which no one outside the archive holds. The sidecar is as secret as the salts:
it never leaves the archive (bundles carry only the released files' records).

A file seal is made once per version and algorithm, and never rewritten: a crash after its
sidecar is written finds it again (:func:`load_or_make`). Timestamp renewals extend the root's
record like any other (a renewal covers the previous timestamp, not the document, so each
file's derived record stays valid). A hash-tree renewal cannot be derived per file: when the
proof policy retires the algorithm, the version gets a new file seal under the new one (and the
older keeps its own history); the manifests' records carry the original time across.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from archive.errors import ProofError
from archive.proofs import merkle
from archive.proofs.evidence import extend_first_path

FORMAT = "custos-file-seal/1"
#: Levels of every file's path inside its version's tree (after its first pair): room for
#: 2**32 files in one version, and the same length for every file of every version.
HEIGHT = 32
SALT_BYTES = 32
_SUBJECT = re.compile(r"^v(?P<version>[1-9][0-9]*)/files-(?P<alg>sha256|sha384|sha512)$")


def subject_path(version: int, algorithm: str) -> str:
    """The file seal's name among a package's sealed subjects: ``vN/files-<alg>``."""
    return f"v{version}/files-{algorithm}"


def is_subject(path: str) -> bool:
    return _SUBJECT.match(path) is not None


def parse_subject(path: str) -> tuple[int, str]:
    """(version, algorithm) of a file seal's subject path. Raises ValueError otherwise."""
    m = _SUBJECT.match(path)
    if m is None:
        raise ValueError(f"{path!r} is not a file seal")
    return int(m["version"]), m["alg"]


def sidecar_path(subject: str, extension: str) -> str:
    """Where a file seal's sidecar lives, relative to the object root."""
    return f"{extension}/{subject}.json"


def _h(algorithm: str, data: bytes) -> bytes:
    return hashlib.new(algorithm, data).digest()


def _pad(algorithm: str, seed: bytes, kind: bytes, index: int) -> bytes:
    return _h(algorithm, seed + kind + index.to_bytes(8, "big"))


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # the content path (vN/content/…)
    digest: bytes  # H(file) under the seal's algorithm
    salt: bytes  # secret

    def node(self, algorithm: str) -> bytes:
        return merkle.combine(algorithm, self.digest, _h(algorithm, self.salt))


@dataclass(frozen=True, slots=True)
class FileSeal:
    """One version's file seal: its entries, its pad seed and its root (checked on load)."""

    algorithm: str
    version: int
    pad_seed: bytes
    entries: tuple[Entry, ...]
    root: bytes

    @property
    def subject(self) -> str:
        return subject_path(self.version, self.algorithm)

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "format": FORMAT,
                    "algorithm": self.algorithm,
                    "version": self.version,
                    "height": HEIGHT,
                    "pad_seed": self.pad_seed.hex(),
                    "root": self.root.hex(),
                    "files": [[e.path, e.digest.hex(), e.salt.hex()] for e in self.entries],
                },
                indent=0,
            ).encode()
            + b"\n"
        )

    def entry(self, path: str) -> Entry:
        for e in self.entries:
            if e.path == path:
                return e
        raise ProofError(f"the file seal of v{self.version} does not list {path}")

    def paths(self, wanted: Iterable[str]) -> dict[str, tuple[tuple[bytes, ...], ...]]:
        """Each wanted content path's reduced hash tree up to the root: its first list
        ``[H(file), H(salt)]``, then one value per level (:data:`HEIGHT` of them).
        Raises :class:`ProofError` for a path the seal does not list."""
        want = set(wanted)
        missing = want - {e.path for e in self.entries}
        if missing:
            raise ProofError(
                f"the file seal of v{self.version} does not list {len(missing)} of the files asked"
            )
        tree = _Tree.build(self.algorithm, self.pad_seed, self.entries)
        out = {}
        for i, e in enumerate(self.entries):
            if e.path in want:
                first = (e.digest, _h(self.algorithm, e.salt))
                out[e.path] = (first, *((v,) for v in tree.path(tree.position[i])))
        return out

    def record_for(self, root_record: bytes, path: Sequence[Sequence[bytes]]) -> bytes:
        """A file's own evidence record, from the root's stored record and the file's path
        (:meth:`paths`): the root record's first archive timestamp gets the file's path in
        front of its own; the renewals that follow it are kept as stored.
        Raises :class:`ProofError` if the root record is not one this seal can extend."""
        try:
            if merkle.root_of(self.algorithm, path[0][0], path) != self.root:
                raise ValueError("it leads elsewhere")
        except (ValueError, IndexError) as exc:
            raise ProofError(f"the file's path does not lead to the sealed root: {exc}") from exc
        return extend_first_path(root_record, self.root, path)


class _Tree:
    """A version's padded tree, each level kept as one bytes object (memory: two hashes per
    padded leaf, without a Python object per node)."""

    def __init__(self, algorithm: str, levels: list[bytes], size: int, pads: list[bytes]) -> None:
        self.algorithm = algorithm
        self.levels = levels
        self.size = size
        self.pads = pads
        self.position: dict[int, int] = {}

    @classmethod
    def build(cls, algorithm: str, seed: bytes, entries: Sequence[Entry]) -> _Tree:
        if len(entries) > 2**HEIGHT:
            raise ValueError(f"a version of more than 2**{HEIGHT} files cannot be sealed")
        size = hashlib.new(algorithm).digest_size
        # A power of two, at least 1 (a version that adds no file still gets its seal: one
        # dummy node, so that it is not taken for pending again).
        width = 1 << max(0, len(entries) - 1).bit_length()
        real = [(e.node(algorithm), i) for i, e in enumerate(entries)]
        dummies = [(_pad(algorithm, seed, b"leaf", k), -1) for k in range(width - len(entries))]
        ordered = sorted(real + dummies)
        tree = cls(algorithm, [b"".join(n for n, _ in ordered)], size, [])
        tree.position = {i: pos for pos, (_, i) in enumerate(ordered) if i >= 0}
        level = tree.levels[0]
        while len(level) > size:
            level = b"".join(
                merkle.combine(algorithm, level[j : j + size], level[j + size : j + 2 * size])
                for j in range(0, len(level), 2 * size)
            )
            tree.levels.append(level)
        depth = len(tree.levels) - 1
        tree.pads = [_pad(algorithm, seed, b"up", k) for k in range(HEIGHT - depth)]
        return tree

    @property
    def root(self) -> bytes:
        node = self.levels[-1]
        for pad in self.pads:
            node = merkle.combine(self.algorithm, node, pad)
        return node

    def path(self, position: int) -> list[bytes]:
        """The siblings of the node at ``position``, level by level, then the pads."""
        out = []
        for level in self.levels[:-1]:
            mate = position ^ 1
            out.append(level[mate * self.size : (mate + 1) * self.size])
            position //= 2
        return [*out, *self.pads]


def make(algorithm: str, version: int, files: Iterable[tuple[str, bytes]]) -> FileSeal:
    """A new file seal of ``files`` (content path, H(file)), with fresh salts and seed."""
    entries = tuple(Entry(path, digest, os.urandom(SALT_BYTES)) for path, digest in sorted(files))
    seed = os.urandom(SALT_BYTES)
    try:
        root = _Tree.build(algorithm, seed, entries).root
    except ValueError as exc:
        raise ProofError(f"v{version} cannot be sealed file by file: {exc}") from exc
    return FileSeal(algorithm, version, seed, entries, root)


def load(data: bytes) -> FileSeal:
    """Read a sidecar and recompute its root. Raises :class:`ProofError` if it is not one, or
    if its files, salts and seed do not lead to the root it states."""
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT or doc.get("height") != HEIGHT:
            raise ValueError(f"format {doc.get('format')!r}, height {doc.get('height')!r}")
        algorithm = str(doc["algorithm"])
        hashlib.new(algorithm)
        seal = FileSeal(
            algorithm,
            int(doc["version"]),
            bytes.fromhex(doc["pad_seed"]),
            tuple(Entry(str(p), bytes.fromhex(d), bytes.fromhex(s)) for p, d, s in doc["files"]),
            bytes.fromhex(doc["root"]),
        )
        root = _Tree.build(algorithm, seal.pad_seed, seal.entries).root
    except (ValueError, TypeError, KeyError) as exc:
        raise ProofError(f"not a readable file seal: {exc}") from exc
    if root != seal.root:
        raise ProofError(
            f"the file seal of v{seal.version} does not lead to the root it states: its files, "
            "salts or seed were altered"
        )
    return seal
