"""File seals: salted leaves in a tree of fixed height, each file's own record derived from the
root's record (renewals kept), and what a derived record does not reveal."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from archive.errors import ProofError
from archive.proofs import fileseal, merkle
from archive.proofs.evidence import (
    LeafRecords,
    build_record,
    parse_record,
    rehash_leaf,
    renew_hash_tree,
    renew_timestamp,
    renewal_leaf,
    verify_record,
)
from archive.proofs.local_tsa import LocalTSAServer
from archive.proofs.timestamp import request_token


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTSAServer]:
    with LocalTSAServer(tmp_path_factory.mktemp("tsa")) as server:
        yield server


def files(n: int, version: int = 1) -> dict[str, bytes]:
    return {
        f"v{version}/content/bag/data/{i}.txt": f"file {version}.{i}\n".encode() for i in range(n)
    }


def seal_of(contents: dict[str, bytes], version: int = 1) -> fileseal.FileSeal:
    return fileseal.make(
        "sha512", version, [(p, hashlib.sha512(c).digest()) for p, c in contents.items()]
    )


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 33])
def test_every_file_has_a_path_of_the_same_length_to_the_root(n: int) -> None:
    contents = files(n)
    seal = seal_of(contents)
    again = fileseal.load(seal.to_json())
    assert again == seal
    paths = seal.paths(contents)
    assert set(paths) == set(contents)
    for path, tree in paths.items():
        assert len(tree) == 1 + fileseal.HEIGHT  # the same for 1 file or 33: no count shown
        assert merkle.root_of("sha512", hashlib.sha512(contents[path]).digest(), tree) == seal.root
        salt = seal.entry(path).salt
        assert tree[0] == (hashlib.sha512(contents[path]).digest(), hashlib.sha512(salt).digest())
    with pytest.raises(ProofError, match="does not list"):
        seal.paths(["v1/content/bag/data/other.txt"])


def test_the_same_files_get_other_salts_and_another_root() -> None:
    contents = files(3)
    assert seal_of(contents).root != seal_of(contents).root


def test_an_altered_sidecar_is_refused() -> None:
    seal = seal_of(files(4))
    doc = json.loads(seal.to_json())
    doc["files"][1][2] = "00" * fileseal.SALT_BYTES  # another salt
    with pytest.raises(ProofError, match="does not lead to the root"):
        fileseal.load(json.dumps(doc).encode())
    doc = json.loads(seal.to_json())
    doc["height"] = 8
    with pytest.raises(ProofError, match="not a readable file seal"):
        fileseal.load(json.dumps(doc).encode())


def test_each_files_record_verifies_and_reveals_no_sibling(tsa: LocalTSAServer) -> None:
    """Two versions sealed in one batch; each file's record verifies against the file alone,
    through a timestamp renewal too; no record holds another file's hash."""
    roots = [tsa.tsa.root_certificate.read_bytes()]
    first, second = files(5, 1), files(2, 2)
    seals = [seal_of(first, 1), seal_of(second, 2)]
    batch = merkle.build("sha512", sorted(s.root for s in seals))
    token = request_token(tsa.url, batch.root, "sha512")
    root_record = build_record("sha512", batch.paths[seals[0].root], token)
    renewed = renew_timestamp(
        root_record,
        (),
        request_token(tsa.url, renewal_leaf(parse_record(root_record)), "sha512").token,
    )
    every_digest = {hashlib.sha512(c).digest() for c in (*first.values(), *second.values())}
    for record in (root_record, renewed):
        leaves = LeafRecords(record, seals[0].root)
        for path, tree in seals[0].paths(first).items():
            own = leaves.record(tree)
            assert own == seals[0].record_for(record, tree)
            digest = hashlib.sha512(first[path]).digest()
            check = verify_record(own, digest, roots=roots)
            assert check.renewals == (record is renewed)
            with pytest.raises(ProofError):
                verify_record(own, hashlib.sha512(first[path] + b"!").digest(), roots=roots)
            assert not any(d in own for d in every_digest - {digest})


def test_a_record_rehashed_with_another_algorithm_cannot_be_carried_to_a_file(
    tsa: LocalTSAServer,
) -> None:
    seal = seal_of(files(2))
    token = request_token(tsa.url, seal.root, "sha512")
    record = build_record("sha512", (), token)
    leaf = rehash_leaf(parse_record(record), "sha256", hashlib.sha256(b"the root").digest())
    rehashed = renew_hash_tree(record, "sha256", (), request_token(tsa.url, leaf, "sha256").token)
    with pytest.raises(ProofError, match="renewed with another hash algorithm"):
        LeafRecords(rehashed, seal.root)
    with pytest.raises(ProofError, match="first list"):
        other = merkle.build("sha512", sorted([seal.root, hashlib.sha512(b"x").digest()]))
        LeafRecords(
            build_record(
                "sha512", other.paths[seal.root], request_token(tsa.url, other.root, "sha512")
            ),
            hashlib.sha512(b"not the root").digest(),
        )
