"""RFC 4998 §5.2 renewals across TSA certificate expiry and across a change of algorithm, with
a TSA whose certificates expire and whose clock the test sets (certomancer behind HTTP)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archive.errors import ProofError
from archive.proofs import merkle
from archive.proofs.evidence import (
    build_record,
    parse_record,
    rehash_leaf,
    renew_hash_tree,
    renew_timestamp,
    renewal_leaf,
    verify_record,
)
from archive.proofs.renew import current_only
from archive.proofs.timestamp import request_token
from tests.fake_tsa import FakeTimeTSA


def at(year: int, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[FakeTimeTSA]:
    """TSA 1's certificate ends on 2026-01-01; TSA 2's runs from mid-2025 to 2040."""
    with FakeTimeTSA(tmp_path / "pki") as server:
        server.add("tsa1", at(2024), at(2026))
        server.add("tsa2", at(2025, 6), at(2040))
        yield server


DOCS = [f"manifest {i}\n".encode() for i in range(3)]


def sealed(tsa: FakeTimeTSA, algorithm: str, when: datetime) -> list[bytes]:
    """Records for DOCS, sealed in one batch by the active TSA at ``when``."""
    leaves = [hashlib.new(algorithm, d).digest() for d in DOCS]
    batch = merkle.build(algorithm, leaves)
    tsa.clock = when
    token = request_token(tsa.url, batch.root, algorithm)
    return [build_record(algorithm, batch.paths[leaf], token) for leaf in leaves]


def renewed_timestamps(tsa: FakeTimeTSA, records: list[bytes], when: datetime) -> list[bytes]:
    views = [parse_record(r) for r in records]
    algorithm = views[0].last.algorithm
    leaves = sorted({renewal_leaf(v) for v in views})
    batch = merkle.build(algorithm, leaves)
    tsa.clock = when
    token = request_token(tsa.url, batch.root, algorithm)
    return [
        renew_timestamp(r, batch.paths[renewal_leaf(v)], token.token)
        for r, v in zip(records, views, strict=True)
    ]


def roots(tsa: FakeTimeTSA) -> list[bytes]:
    return [tsa.root_pem.read_bytes()]


def test_an_unrenewed_record_lapses_when_its_tsa_certificate_expires(tsa: FakeTimeTSA) -> None:
    records = sealed(tsa, "sha512", at(2025, 3))
    digest = hashlib.sha512(DOCS[0]).digest()
    check = verify_record(records[0], digest, roots=roots(tsa), at=at(2025, 12))
    assert check.gen_time == at(2025, 3) and check.renewals == 0
    with pytest.raises(ProofError, match=r"expired on 2026-01-01.*not renewed"):
        verify_record(records[0], digest, roots=roots(tsa), at=at(2030))
    with pytest.raises(ProofError, match="expired"):
        verify_record(records[0], digest, roots=roots(tsa))  # today, after the expiry


def test_a_timestamp_renewal_before_expiry_keeps_the_proof(tsa: FakeTimeTSA) -> None:
    records = sealed(tsa, "sha512", at(2025, 3))
    tsa.use("tsa2")
    before = tsa.requests
    renewed = renewed_timestamps(tsa, records, at(2025, 10))
    assert tsa.requests == before + 1  # one batch, one request, for every record
    for doc, record in zip(DOCS, renewed, strict=True):
        view = parse_record(record)
        assert len(view.chains) == 1 and len(view.chains[0]) == 2
        digest = hashlib.sha512(doc).digest()
        for moment in (None, at(2030), at(2039, 12)):
            check = verify_record(record, digest, roots=roots(tsa), at=moment)
            assert check.gen_time == at(2025, 3) and check.renewals == 1
        with pytest.raises(ProofError, match="expired on 2040"):
            verify_record(record, digest, roots=roots(tsa), at=at(2041))
        with pytest.raises(ProofError, match=r"not in the first list|does not cover"):
            verify_record(record, hashlib.sha512(doc + b"x").digest(), roots=roots(tsa))


def test_a_renewal_after_expiry_does_not_revive_the_proof(tsa: FakeTimeTSA) -> None:
    records = sealed(tsa, "sha512", at(2025, 3))
    tsa.use("tsa2")
    late = renewed_timestamps(tsa, records, at(2026, 3))
    with pytest.raises(ProofError, match=r"expired on 2026-01-01.*before it was renewed"):
        verify_record(late[0], hashlib.sha512(DOCS[0]).digest(), roots=roots(tsa))


def test_a_hash_tree_renewal_moves_the_proof_to_a_new_algorithm(tsa: FakeTimeTSA) -> None:
    records = sealed(tsa, "sha256", at(2025, 3))
    tsa.use("tsa2")
    views = [parse_record(r) for r in records]
    leaves = [
        rehash_leaf(v, "sha512", hashlib.sha512(d).digest())
        for v, d in zip(views, DOCS, strict=True)
    ]
    batch = merkle.build("sha512", leaves)
    tsa.clock = at(2025, 10)
    token = request_token(tsa.url, batch.root, "sha512")
    renewed = [
        renew_hash_tree(r, "sha512", batch.paths[leaf], token.token)
        for r, leaf in zip(records, leaves, strict=True)
    ]
    for doc, record in zip(DOCS, renewed, strict=True):
        view = parse_record(record)
        assert view.algorithms == ("sha256", "sha512") and len(view.chains) == 2
        digests = {a: hashlib.new(a, doc).digest() for a in ("sha256", "sha512")}
        check = verify_record(record, digests, roots=roots(tsa), at=at(2030))
        assert check.gen_time == at(2025, 3) and check.renewals == 1
        with pytest.raises(ProofError, match="needs the document's sha512 digest"):
            verify_record(record, digests["sha256"], roots=roots(tsa))
        wrong = dict(digests, sha512=hashlib.sha512(doc + b"x").digest())
        with pytest.raises(ProofError, match="chain 2"):
            verify_record(record, wrong, roots=roots(tsa))
    # A second chain bound to another document's history does not verify for this one.
    # (A reduced tree also proves its sibling leaf: take one whose first list lacks leaf 1.)
    foreign = next(leaf for leaf in leaves if leaves[1] not in batch.paths[leaf][0])
    swapped = renew_hash_tree(records[1], "sha512", batch.paths[foreign], token.token)
    digests = {a: hashlib.new(a, DOCS[1]).digest() for a in ("sha256", "sha512")}
    with pytest.raises(ProofError):
        verify_record(swapped, digests, roots=roots(tsa), at=at(2030))


def test_every_altered_byte_of_a_renewed_record_is_caught(tsa: FakeTimeTSA) -> None:
    records = sealed(tsa, "sha512", at(2025, 3))
    tsa.use("tsa2")
    record = renewed_timestamps(tsa, records, at(2025, 10))[0]
    digest = hashlib.sha512(DOCS[0]).digest()
    verify_record(record, digest, roots=roots(tsa))
    missed = []
    for i in range(len(record)):
        altered = bytearray(record)
        altered[i] ^= 0x01
        try:
            verify_record(bytes(altered), digest, roots=roots(tsa))
        except ProofError:
            continue
        missed.append(i)
    assert missed == []


def test_only_records_no_other_extends_are_current(tsa: FakeTimeTSA) -> None:
    records = sealed(tsa, "sha512", at(2025, 3))
    tsa.use("tsa2")
    renewed = renewed_timestamps(tsa, records[:1], at(2025, 10))[0]
    views = [("old", parse_record(records[0])), ("new", parse_record(renewed))]
    assert current_only(views) == [1]
    other = [("a", parse_record(records[0])), ("b", parse_record(records[1]))]
    assert current_only(other) == [0, 1]  # different records, neither extends the other
