"""Hash trees and RFC 4998 evidence records over a batch, sealed by the real local TSA."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive.errors import ProofError
from archive.proofs import merkle
from archive.proofs.evidence import EvidenceRecordASN1, RecordWriter, build_record, verify_record
from archive.proofs.local_tsa import LocalTSAServer
from archive.proofs.timestamp import request_token


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTSAServer]:
    with LocalTSAServer(tmp_path_factory.mktemp("tsa")) as server:
        yield server


def docs(n: int) -> list[bytes]:
    return [f"manifest of deposit {i}\n".encode() for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_every_path_leads_to_the_root(n: int) -> None:
    leaves = [hashlib.sha512(d).digest() for d in docs(n)]
    batch = merkle.build("sha512", leaves)
    for leaf in leaves:
        assert merkle.root_of("sha512", leaf, batch.paths[leaf]) == batch.root
    if n == 1:
        assert batch.root == leaves[0] and batch.paths[leaves[0]] == ()
    # binary: the first list holds two values, every later list one
    for path in batch.paths.values():
        assert all(len(p) == 2 for p in path[:1]) and all(len(p) == 1 for p in path[1:])


def test_tree_rules_match_rfc_4998() -> None:
    a, b, c = sorted(hashlib.sha256(x).digest() for x in (b"a", b"b", b"c"))
    batch = merkle.build("sha256", [c, a, b])
    ab = hashlib.sha256(min(a, b) + max(a, b)).digest()
    expected = hashlib.sha256(min(ab, c) + max(ab, c)).digest()  # c carried up unchanged
    assert batch.root == expected
    assert batch.paths[c] == ((c, ab),)


def test_bad_batches() -> None:
    leaf = hashlib.sha512(b"x").digest()
    with pytest.raises(ValueError, match="at least one"):
        merkle.build("sha512", [])
    with pytest.raises(ValueError, match="twice"):
        merkle.build("sha512", [leaf, leaf])
    with pytest.raises(ValueError, match="64 bytes"):
        merkle.build("sha512", [b"short"])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_records_verify_and_catch_tampering(tsa: LocalTSAServer, tmp_path: Path, n: int) -> None:
    documents = docs(n)
    leaves = [hashlib.sha512(d).digest() for d in documents]
    batch = merkle.build("sha512", leaves)
    token = request_token(tsa.url, batch.root, "sha512")
    roots = [tsa.tsa.root_certificate.read_bytes()]
    for doc, leaf in zip(documents, leaves, strict=True):
        der = build_record("sha512", batch.paths[leaf], token)
        parsed = EvidenceRecordASN1.load(der)
        assert parsed["version"].native == 1
        assert parsed["archive_time_stamp_sequence"][0][0]["time_stamp"].dump() == token.token
        check = verify_record(der, hashlib.sha512(doc).digest(), roots=roots)
        assert len(check.steps) == 3 and "certificate chain verify" in check.steps[1]
        with pytest.raises(ProofError, match=r"does not cover|not in the first list"):
            verify_record(der, hashlib.sha512(doc + b"altered").digest(), roots=roots)
    # an outside expert checks the batch token over the root with OpenSSL alone
    (tmp_path / "r.tsr").write_bytes(token.response)
    ok = subprocess.run(
        ["openssl", "ts", "-verify", "-in", "r.tsr", "-digest", batch.root.hex(),
         "-CAfile", str(tsa.tsa.root_certificate), "-untrusted", str(tsa.tsa.tsa_certificate)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stderr


def test_record_from_another_authority_does_not_verify(tsa: LocalTSAServer, tmp_path: Path) -> None:
    leaf = hashlib.sha512(b"doc").digest()
    with LocalTSAServer(tmp_path / "other") as other:
        token = request_token(other.url, leaf, "sha512")
    der = build_record("sha512", (), token)
    with pytest.raises(ProofError, match="does not verify"):
        verify_record(der, leaf, roots=[tsa.tsa.root_certificate.read_bytes()])


def test_garbage_is_not_a_record() -> None:
    with pytest.raises(ProofError, match="not an RFC 4998"):
        verify_record(b"\x30\x03\x02\x01\x01", b"x" * 64, roots=[])


@pytest.mark.parametrize("n", [1, 2, 5])
def test_bouncycastle_validates_our_records(
    tsa: LocalTSAServer, tmp_path: Path, bouncycastle: list[str], n: int
) -> None:
    documents = docs(n)
    leaves = [hashlib.sha512(d).digest() for d in documents]
    batch = merkle.build("sha512", leaves)
    token = request_token(tsa.url, batch.root, "sha512")
    for i, (doc, leaf) in enumerate(zip(documents, leaves, strict=True)):
        (tmp_path / f"{i}.ers").write_bytes(build_record("sha512", batch.paths[leaf], token))
        (tmp_path / f"{i}.txt").write_bytes(doc)
        ok = subprocess.run(
            [*bouncycastle, f"{i}.ers", f"{i}.txt"], cwd=tmp_path, capture_output=True, text=True
        )
        assert ok.returncode == 0 and "ERS OK" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "0.txt").write_bytes(documents[0] + b"altered")
    bad = subprocess.run(
        [*bouncycastle, "0.ers", "0.txt"], cwd=tmp_path, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "ERS FAILED" in bad.stdout


@pytest.mark.parametrize("n", [1, 2, 3, 200])
def test_direct_der_equals_asn1crypto_encoding(tsa: LocalTSAServer, n: int) -> None:
    """RecordWriter's hand-made DER is byte for byte what asn1crypto encodes."""
    from asn1crypto import algos, cms

    from archive.proofs.evidence import (
        ArchiveTimeStamp,
        ArchiveTimeStampChain,
        ArchiveTimeStampSequence,
        DigestAlgorithms,
        PartialHashtree,
        RecordWriter,
        ReducedHashtree,
    )

    leaves = [hashlib.sha512(d).digest() for d in docs(n)]
    batch = merkle.build("sha512", leaves)
    token = request_token(tsa.url, batch.root, "sha512")
    writer = RecordWriter("sha512", token)
    for leaf in leaves:
        path = batch.paths[leaf]
        ats: dict[str, object] = {
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha512"}),
            "time_stamp": cms.ContentInfo.load(token.token),
        }
        if path:
            ats["reduced_hashtree"] = ReducedHashtree([PartialHashtree(list(p)) for p in path])
        expected = EvidenceRecordASN1(
            {
                "version": 1,
                "digest_algorithms": DigestAlgorithms(
                    [algos.DigestAlgorithm({"algorithm": "sha512"})]
                ),
                "archive_time_stamp_sequence": ArchiveTimeStampSequence(
                    [ArchiveTimeStampChain([ArchiveTimeStamp(ats)])]
                ),
            }
        ).dump()
        assert writer.record(path) == expected


def test_a_thousand_records_verify(tsa: LocalTSAServer) -> None:
    leaves = [hashlib.sha512(f"manifest {i}".encode()).digest() for i in range(1000)]
    batch = merkle.build("sha512", leaves)
    token = request_token(tsa.url, batch.root, "sha512")
    writer = RecordWriter("sha512", token)
    roots = [tsa.tsa.root_certificate.read_bytes()]
    for leaf in leaves:
        verify_record(writer.record(batch.paths[leaf]), leaf, roots=roots)
    with pytest.raises(ProofError):
        verify_record(writer.record(batch.paths[leaves[0]]), leaves[1], roots=roots)
