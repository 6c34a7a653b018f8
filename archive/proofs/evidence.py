"""RFC 4998 Evidence Records (DER): one per timestamped document, holding its reduced hash
tree and the batch's RFC 3161 token.

No Python library implements RFC 4998, so the ASN.1 module is declared here with asn1crypto
(IMPLICIT tags, as the RFC's module says). The token is embedded exactly as the TSA sent it.
This first part covers records with one chain of one archive timestamp; renewals (§5.2) append
to it later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms, core

from archive.errors import ProofError
from archive.proofs import merkle
from archive.proofs.timestamp import TimestampToken, token_from_der, verify_token


class PartialHashtree(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.OctetString


class ReducedHashtree(core.SequenceOf):  # type: ignore[misc]
    _child_spec = PartialHashtree


class ArchiveTimeStamp(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("digest_algorithm", algos.DigestAlgorithm, {"implicit": 0, "optional": True}),
        ("attributes", cms.CMSAttributes, {"implicit": 1, "optional": True}),
        ("reduced_hashtree", ReducedHashtree, {"implicit": 2, "optional": True}),
        ("time_stamp", cms.ContentInfo),
    ]


class ArchiveTimeStampChain(core.SequenceOf):  # type: ignore[misc]
    _child_spec = ArchiveTimeStamp


class ArchiveTimeStampSequence(core.SequenceOf):  # type: ignore[misc]
    _child_spec = ArchiveTimeStampChain


class DigestAlgorithms(core.SequenceOf):  # type: ignore[misc]
    _child_spec = algos.DigestAlgorithm


class CryptoInfos(core.SequenceOf):  # type: ignore[misc]
    _child_spec = cms.CMSAttribute


class EncryptionInfo(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("encryption_info_type", core.ObjectIdentifier),
        ("encryption_info_value", core.Any),
    ]


class EvidenceRecordASN1(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("digest_algorithms", DigestAlgorithms),
        ("crypto_infos", CryptoInfos, {"implicit": 0, "optional": True}),
        ("encryption_info", EncryptionInfo, {"implicit": 1, "optional": True}),
        ("archive_time_stamp_sequence", ArchiveTimeStampSequence),
    ]


class RecordWriter:
    """Evidence records for every document of one batch, encoded directly in DER.

    Built through asn1crypto's classes a record costs ~0.4 ms (the token is parsed and
    re-serialised each time); a batch of 10,000 shares everything but its hash tree, so the
    shared parts are encoded once and each record only adds its own tree. The tests check the
    bytes are identical to asn1crypto's encoding of the same record.
    """

    def __init__(self, algorithm: str, token: TimestampToken) -> None:
        alg = algos.DigestAlgorithm({"algorithm": algorithm})
        self._alg_implicit = _tlv(0xA0, alg.contents)  # [0] IMPLICIT AlgorithmIdentifier
        self._token = token.token  # exactly as the TSA sent it
        self._head = b"\x02\x01\x01" + _tlv(0x30, alg.dump())  # version 1, digestAlgorithms

    def record(self, path: Sequence[Sequence[bytes]]) -> bytes:
        """The DER EvidenceRecord for a document whose reduced hash tree is ``path``."""
        tree = b""
        if path:
            lists = b"".join(
                _tlv(0x30, b"".join(_tlv(0x04, v) for v in partial)) for partial in path
            )
            tree = _tlv(0xA2, lists)  # [2] IMPLICIT SEQUENCE OF PartialHashtree
        ats = _tlv(0x30, self._alg_implicit + tree + self._token)
        sequence = _tlv(0x30, _tlv(0x30, ats))  # one chain of one archive timestamp
        return _tlv(0x30, self._head + sequence)


def build_record(algorithm: str, path: Sequence[Sequence[bytes]], token: TimestampToken) -> bytes:
    """The DER EvidenceRecord of one document of a batch sealed by ``token``."""
    return RecordWriter(algorithm, token).record(path)


def _tlv(tag: int, body: bytes) -> bytes:
    """A DER tag-length-value (X.690 §8.1), definite length."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def evidence_token(der: bytes) -> bytes:
    """The first (original) timestamp token of a record, as stored.

    Raises :class:`ProofError` if ``der`` is not an evidence record."""
    try:
        token: bytes = EvidenceRecordASN1.load(der)["archive_time_stamp_sequence"][0][0][
            "time_stamp"
        ].dump()
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ProofError(f"not an RFC 4998 evidence record: {exc}") from exc
    return token


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """What verifying one record established, step by step, for people to read."""

    steps: tuple[str, ...]
    gen_time: datetime  # when the document's existence was first attested


def verify_record(der: bytes, document_digest: bytes, *, roots: Sequence[bytes]) -> RecordCheck:
    """Verify an evidence record for a document whose hash is ``document_digest``.

    Raises :class:`ProofError` naming the first step that fails.
    """
    try:
        record = EvidenceRecordASN1.load(der)
        chains = record["archive_time_stamp_sequence"]
        ats = chains[0][0]
        algorithm = ats["digest_algorithm"]["algorithm"].native
        path = [[v.native for v in partial] for partial in (ats["reduced_hashtree"] or [])]
        token_der = ats["time_stamp"].dump()
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ProofError(f"not an RFC 4998 evidence record: {exc}") from exc
    if len(chains) != 1 or len(chains[0]) != 1:
        raise ProofError("renewed evidence records are not verified yet (one chain of one only)")
    steps = [f"1. the record is an RFC 4998 evidence record using {algorithm}"]
    try:
        root = merkle.root_of(algorithm, document_digest, path)
    except ValueError as exc:
        raise ProofError(f"step 2 failed: {exc}") from exc
    steps.append(
        "2. the document's hash leads through the record's hash tree to "
        f"{root.hex()[:16]}… ({len(path)} list(s))"
    )
    token = token_from_der(token_der)
    if token.algorithm != algorithm or token.imprint != root:
        raise ProofError("step 3 failed: the timestamp does not cover the hash tree's root")
    steps.append(f"3. the timestamp covers exactly that value (serial {token.serial_number})")
    verify_token(token, root, roots=roots)
    steps.append(
        f"4. the timestamp's signature and certificate chain verify; it was made at "
        f"{token.gen_time.isoformat()}"
    )
    return RecordCheck(tuple(steps), token.gen_time)
