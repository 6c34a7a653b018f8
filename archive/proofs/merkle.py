"""Binary hash trees for batch timestamps, as RFC 4998 §4.2-4.3 reads them (and BouncyCastle 1.72
agrees): leaves sorted, pairs hashed as H(min ‖ max), an odd node carried up unchanged.

One RFC 3161 token then covers a whole batch: its message imprint is the root itself, and each
document's reduced hash tree (its path to the root) proves it was in the batch. A batch of
one has no path: the imprint is the document's own hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

#: The named constructors: ``hashlib.new`` looks the name up on every call (a third of the
#: time of hashing a 128-byte pair).
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _h(algorithm: str, data: bytes) -> bytes:
    make = _HASHES.get(algorithm)
    return make(data).digest() if make else hashlib.new(algorithm, data).digest()


def combine(algorithm: str, a: bytes, b: bytes) -> bytes:
    """The parent of two nodes (RFC 4998 §4.2 step 3: concatenate in binary ascending order)."""
    lo, hi = sorted((a, b))
    return _h(algorithm, lo + hi)


@dataclass(frozen=True, slots=True)
class Batch:
    """A built tree: its root and, for each leaf, the reduced hash tree leading to the root."""

    algorithm: str
    root: bytes
    paths: dict[bytes, tuple[tuple[bytes, ...], ...]]  # leaf -> partial hash trees


def build(algorithm: str, leaves: Sequence[bytes]) -> Batch:
    """Build the tree over ``leaves`` (document hashes). Raises ``ValueError`` if empty,
    duplicated, or of the wrong length for ``algorithm``."""
    size = hashlib.new(algorithm).digest_size
    if not leaves:
        raise ValueError("a hash tree needs at least one leaf")
    if any(len(leaf) != size for leaf in leaves):
        raise ValueError(f"every leaf must be a {algorithm} digest ({size} bytes)")
    if len(set(leaves)) != len(leaves):
        raise ValueError("the same document hash appears twice in one batch")
    level = sorted(leaves)
    # For each leaf: the nodes met on the way up (its own position in each level), and the
    # siblings recorded so far.
    position = {leaf: i for i, leaf in enumerate(level)}
    siblings: dict[bytes, list[bytes]] = {leaf: [] for leaf in level}
    while len(level) > 1:
        parents: list[bytes] = []
        for i in range(0, len(level), 2):
            if i + 1 < len(level):
                parents.append(combine(algorithm, level[i], level[i + 1]))
            else:
                parents.append(level[i])  # odd node: carried up unchanged, no list recorded
        for leaf, pos in position.items():
            mate = pos ^ 1
            if mate < len(level):
                siblings[leaf].append(level[mate])
            position[leaf] = pos // 2
        level = parents
    root = level[0]
    paths: dict[bytes, tuple[tuple[bytes, ...], ...]] = {}
    for leaf, sibs in siblings.items():
        if not sibs:
            paths[leaf] = ()  # a batch of one: the imprint is the leaf itself
        else:
            paths[leaf] = ((leaf, sibs[0]), *((s,) for s in sibs[1:]))
    return Batch(algorithm, root, paths)


def root_of(algorithm: str, leaf: bytes, path: Sequence[Sequence[bytes]]) -> bytes:
    """Recompute the root from a leaf and its reduced hash tree (RFC 4998 §4.3, steps 2-4).

    Raises ``ValueError`` if the leaf is not in the first list or a list is malformed.
    """
    if not path:
        return leaf
    first = list(path[0])
    if leaf not in first:
        raise ValueError("the document's hash is not in the first list of its hash tree")
    current = _h(algorithm, b"".join(sorted(first)))
    for values in path[1:]:
        if len(values) != 1:
            raise ValueError("each later list of a binary hash tree holds exactly one value")
        current = combine(algorithm, current, values[0])
    return current
