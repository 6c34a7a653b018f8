"""RFC 4998 Evidence Records (DER): one per timestamped document, holding its reduced hash
tree and the batch's RFC 3161 token.

No Python library implements RFC 4998, so the ASN.1 module is declared here with asn1crypto
(IMPLICIT tags, as the RFC's module says). The token is embedded exactly as the TSA sent it.
Renewals (§5.2) append to a record: a timestamp renewal adds an archive timestamp to the last
chain, a hash-tree renewal a new chain under a new digest algorithm; the verifier checks every
chain (not only the last, as BouncyCastle does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms, core

from archive import clock
from archive.errors import ProofError
from archive.proofs import merkle
from archive.proofs.timestamp import (
    TimestampToken,
    require_plain_digest,
    signer_certificate,
    token_from_der,
    verify_token,
)


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


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """What verifying one record established, step by step, for people to read."""

    steps: tuple[str, ...]
    gen_time: datetime  # when the document's existence was first attested
    renewals: int = 0  # archive timestamps after the first


@dataclass(frozen=True, slots=True)
class AtsView:
    """One ArchiveTimeStamp of a record, as stored."""

    algorithm: str
    path: tuple[tuple[bytes, ...], ...]
    token: bytes  # the timeStamp (CMS ContentInfo), exactly as stored


@dataclass(frozen=True, slots=True)
class RecordView:
    """An evidence record taken apart: its chains of archive timestamps, oldest first."""

    algorithms: tuple[str, ...]
    chains: tuple[tuple[AtsView, ...], ...]
    chain_ders: tuple[bytes, ...]  # each ArchiveTimeStampChain's DER, as stored

    def sequence_der(self, chains: int | None = None) -> bytes:
        """DER of the ArchiveTimeStampSequence of the first ``chains`` chains (all: None)."""
        return _tlv(
            0x30, b"".join(self.chain_ders[: len(self.chain_ders) if chains is None else chains])
        )

    @property
    def last(self) -> AtsView:
        return self.chains[-1][-1]


def parse_record(der: bytes) -> RecordView:
    """Read an evidence record. Raises :class:`ProofError` if it is not one."""
    try:
        record = EvidenceRecordASN1.load(der)
        if record["version"].native != 1:
            raise ValueError(f"version {record['version'].native}, not 1")
        for a in record["digest_algorithms"]:
            require_plain_digest(a, "the record's digestAlgorithms")
        algorithms = tuple(a["algorithm"].native for a in record["digest_algorithms"])
        chains = []
        ders = []
        for chain in record["archive_time_stamp_sequence"]:
            views = []
            for ats in chain:
                if not ats["digest_algorithm"]:
                    raise ValueError("an archive timestamp without its digestAlgorithm")
                require_plain_digest(ats["digest_algorithm"], "an archive timestamp")
                views.append(
                    AtsView(
                        algorithm=ats["digest_algorithm"]["algorithm"].native,
                        path=tuple(
                            tuple(v.native for v in partial)
                            for partial in (ats["reduced_hashtree"] or [])
                        ),
                        token=ats["time_stamp"].dump(),
                    )
                )
            if not views:
                raise ValueError("an empty archive timestamp chain")
            chains.append(tuple(views))
            ders.append(chain.dump())
        if not chains:
            raise ValueError("no archive timestamp")
        if record.dump() != der:
            raise ValueError("bytes follow the record")
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ProofError(f"not an RFC 4998 evidence record: {exc}") from exc
    return RecordView(algorithms, tuple(chains), tuple(ders))


def ats_der(algorithm: str, path: Sequence[Sequence[bytes]], token: bytes) -> bytes:
    """DER of an ArchiveTimeStamp: [0] digestAlgorithm, [2] reducedHashtree, the token."""
    alg = algos.DigestAlgorithm({"algorithm": algorithm})
    tree = b""
    if path:
        lists = b"".join(_tlv(0x30, b"".join(_tlv(0x04, v) for v in partial)) for partial in path)
        tree = _tlv(0xA2, lists)
    return _tlv(0x30, _tlv(0xA0, alg.contents) + tree + token)


def _record_prefix(der: bytes, algorithms: Sequence[str]) -> bytes:
    """A record's fields before its ArchiveTimeStampSequence, with ``algorithms``."""
    record = EvidenceRecordASN1.load(der)
    body = record["version"].dump()
    body += _tlv(0x30, b"".join(algos.DigestAlgorithm({"algorithm": a}).dump() for a in algorithms))
    for name in ("crypto_infos", "encryption_info"):
        if record[name]:
            body += record[name].dump()
    return bytes(body)


def _assemble(der: bytes, algorithms: Sequence[str], chain_ders: Sequence[bytes]) -> bytes:
    return _tlv(0x30, _record_prefix(der, algorithms) + _tlv(0x30, b"".join(chain_ders)))


class LeafRecords:
    """Records for the leaves of a tree whose root was one record's document (digest
    ``document``): each leaf's reduced hash tree (up to that root) goes in front of the first
    archive timestamp's own tree, whose first list then keeps only the value beside the old
    document. Timestamp renewals after it are kept as stored: they cover the timestamp before
    them, not the document (RFC 4998 §5.2). The record is parsed once; each leaf's record is
    then only encoded (as :class:`RecordWriter` does for a batch).

    Raises :class:`ProofError` for a record with more than one chain (a hash-tree renewal
    rehashes the document itself, which cannot be carried down to a leaf) or whose first list
    does not hold the document."""

    def __init__(self, der: bytes, document: bytes) -> None:
        view = parse_record(der)
        if len(view.chains) != 1:
            raise ProofError(
                "the record was renewed with another hash algorithm: a record for a leaf below "
                "its document cannot be derived from it"
            )
        first = view.chains[0][0]
        above = first.path
        if above:  # [document, sibling], then one value per level
            mate = [v for v in above[0] if v != document]
            if len(mate) != 1 or document not in above[0]:
                raise ProofError(
                    "the record's first list does not hold the document beside one value"
                )
            above = ((mate[0],), *above[1:])
        self.view = view
        self.algorithm = first.algorithm
        self.above: tuple[tuple[bytes, ...], ...] = above
        self._token = first.token
        chain = ArchiveTimeStampChain.load(view.chain_ders[0])
        self._later = b"".join(chain[k].dump() for k in range(1, len(chain)))
        self._prefix = _record_prefix(der, view.algorithms)
        self._alg_implicit = _tlv(
            0xA0, algos.DigestAlgorithm({"algorithm": self.algorithm}).contents
        )

    def path(self, below: Sequence[Sequence[bytes]]) -> list[Sequence[bytes]]:
        """The leaf's whole reduced hash tree in the first archive timestamp."""
        return [*below, *self.above]

    def record(self, below: Sequence[Sequence[bytes]]) -> bytes:
        """The DER record of the leaf whose tree up to the old document is ``below``."""
        lists = b"".join(
            _tlv(0x30, b"".join(_tlv(0x04, v) for v in partial)) for partial in self.path(below)
        )
        tree = _tlv(0xA2, lists) if lists else b""  # [2] IMPLICIT reducedHashtree
        head = _tlv(0x30, self._alg_implicit + tree + self._token)
        return _tlv(0x30, self._prefix + _tlv(0x30, _tlv(0x30, head + self._later)))


def extend_first_path(der: bytes, document: bytes, below: Sequence[Sequence[bytes]]) -> bytes:
    """The record of one leaf below the record's document (see :class:`LeafRecords`)."""
    return LeafRecords(der, document).record(below)


def renewal_leaf(view: RecordView) -> bytes:
    """What a timestamp renewal covers (RFC 4998 §5.2): the hash of the last timeStamp."""
    return hashlib.new(view.last.algorithm, view.last.token).digest()


def renew_timestamp(
    der: bytes,
    path: Sequence[Sequence[bytes]],
    token: bytes,
    view: RecordView | None = None,
) -> bytes:
    """The record with a timestamp renewal appended to its last chain (RFC 4998 §5.2).

    ``view``: the record already parsed, if the caller has it."""
    view = view or parse_record(der)
    # The last chain's DER is SEQUENCE { ATS… }: keep its content, append one more ATS.
    last = view.chain_ders[-1]
    header = 2 if last[1] < 0x80 else 2 + (last[1] & 0x7F)
    chain = _tlv(0x30, last[header:] + ats_der(view.last.algorithm, path, token))
    return _assemble(der, view.algorithms, [*view.chain_ders[:-1], chain])


def rehash_leaf(view: RecordView, algorithm: str, document_digest: bytes) -> bytes:
    """What a hash-tree renewal with ``algorithm`` covers for a document (RFC 4998 §5.2):
    H(H(document) ‖ H(the ArchiveTimeStampSequence so far, DER))."""
    sequence = hashlib.new(algorithm, view.sequence_der()).digest()
    return hashlib.new(algorithm, document_digest + sequence).digest()


def renew_hash_tree(
    der: bytes, algorithm: str, path: Sequence[Sequence[bytes]], token: bytes
) -> bytes:
    """The record with a new chain under ``algorithm`` (RFC 4998 §5.2 hash-tree renewal)."""
    view = parse_record(der)
    algorithms = list(view.algorithms)
    if algorithm not in algorithms:
        algorithms.append(algorithm)
    chain = _tlv(0x30, ats_der(algorithm, path, token))
    return _assemble(der, algorithms, [*view.chain_ders, chain])


def verify_record(
    der: bytes,
    document_digest: bytes | Mapping[str, bytes],
    *,
    roots: Sequence[bytes],
    at: datetime | None = None,
) -> RecordCheck:
    """Verify an evidence record for a document, every chain and every renewal (RFC 4998 §5.3).

    ``document_digest`` is the document's hash under the first chain's algorithm, or a
    mapping from algorithm to hash when the record was renewed with other algorithms. Each
    archive timestamp's TSA certificate must still have been valid when the next one was made
    (``at``, default now, for the last): a record not renewed in time fails.
    Raises :class:`ProofError` naming the first step that fails.
    """
    view = parse_record(der)
    digests = (
        {view.chains[0][0].algorithm: document_digest}
        if isinstance(document_digest, bytes)
        else dict(document_digest)
    )
    steps = [
        f"1. the record is an RFC 4998 evidence record ({len(view.chains)} chain(s), "
        f"{sum(len(c) for c in view.chains)} archive timestamp(s), "
        f"{', '.join(view.algorithms)})"
    ]
    used = {chain[0].algorithm for chain in view.chains}
    if used != set(view.algorithms) or len(view.algorithms) != len(used):
        raise ProofError(
            f"the record lists the digest algorithms {', '.join(view.algorithms)}, but its "
            f"chains use {', '.join(sorted(used))} (RFC 4998 §4.1 wants them to agree)"
        )
    tokens: list[TimestampToken] = []
    for i, chain in enumerate(view.chains):
        algorithm = chain[0].algorithm
        if any(ats.algorithm != algorithm for ats in chain):
            raise ProofError(f"chain {i + 1} mixes digest algorithms (RFC 4998 §5.2 forbids it)")
        if algorithm not in digests:
            raise ProofError(
                f"chain {i + 1} uses {algorithm}: checking it needs the document's {algorithm} "
                "digest"
            )
        leaf = digests[algorithm]
        if i > 0:
            sequence = hashlib.new(algorithm, view.sequence_der(i)).digest()
            leaf = hashlib.new(algorithm, leaf + sequence).digest()
        for j, ats in enumerate(chain):
            where = f"archive timestamp {j + 1} of chain {i + 1}"
            if j > 0:
                leaf = hashlib.new(algorithm, chain[j - 1].token).digest()
            try:
                root = merkle.root_of(algorithm, leaf, ats.path)
            except ValueError as exc:
                raise ProofError(f"{where}: {exc}") from exc
            token = token_from_der(ats.token)
            if token.algorithm != algorithm or token.imprint != root:
                raise ProofError(
                    f"{where}: the timestamp does not cover "
                    + ("the hash tree's root" if j == 0 else "the timestamp before it")
                )
            try:
                verify_token(token, root, roots=roots)
            except ProofError as exc:
                raise ProofError(f"{where}: {exc.message}") from exc
            covered = (
                "the document's hash, through the record's hash tree"
                if i == 0 and j == 0
                else "the document and every earlier chain, rehashed with " + algorithm
                if j == 0
                else "the timestamp before it (a renewal)"
            )
            steps.append(
                f"{len(steps) + 1}. {where} covers {covered}; its signature and certificate "
                f"chain verify; made at {token.gen_time.isoformat()} (serial "
                f"{token.serial_number})"
            )
            tokens.append(token)
    moment = at or clock.now()
    for k, token in enumerate(tokens):
        following = tokens[k + 1].gen_time if k + 1 < len(tokens) else moment
        if following < token.gen_time:
            raise ProofError(
                f"timestamp {token.serial_number} is followed by one made earlier "
                f"({following.isoformat()}): the record's order is wrong"
            )
        not_after = signer_certificate(token).not_valid_after_utc
        if not_after < following:
            what = (
                f"before it was renewed at {following.isoformat()}"
                if k + 1 < len(tokens)
                else f"and the record was not renewed before then (checked at {moment.isoformat()})"
            )
            raise ProofError(
                f"the certificate of the TSA that made timestamp {token.serial_number} "
                f"expired on {not_after.isoformat()} {what}",
                hint="renew evidence records before their TSA certificates expire "
                "(`custos seal renew`)",
            )
    steps.append(
        f"{len(steps) + 1}. each TSA certificate was still valid when the next timestamp was "
        f"made, the last one at {moment.isoformat()}"
    )
    return RecordCheck(tuple(steps), tokens[0].gen_time, len(tokens) - 1)
