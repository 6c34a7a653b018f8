"""RFC 3161 timestamps over a precomputed digest (a manifest's, or a Merkle root).

Requests are built with asn1crypto, because rfc3161-client's request builder hashes raw data
and a Merkle root is already a digest. Responses are checked on receipt (status, nonce,
imprint) and verified with rfc3161-client (signature, chain to the trust anchors at the
token's genTime, critical timeStamping EKU, policy). The token's bytes are kept exactly as
received: re-encoding would change what the signature covers.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asn1crypto.tsp  # noqa: F401 - registers TSTInfo with asn1crypto.cms
from asn1crypto import algos, cms, core, tsp
from cryptography import x509
from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

from archive.errors import ProofError

#: Digest lengths (bytes) of the algorithms a timestamp may cover.
ALGORITHMS = {"sha256": 32, "sha384": 48, "sha512": 64}
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """TimeStampResp (RFC 3161 §2.4.2) with its token optional, as the RFC has it: a refusal
    carries none (asn1crypto's own class requires it, so a refusal would not even parse)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@dataclass(frozen=True, slots=True)
class TimestampToken:
    """A granted RFC 3161 token, with what it says, its bytes exactly as received."""

    response: bytes  # DER TimeStampResp
    token: bytes  # DER TimeStampToken (CMS ContentInfo), a slice of ``response``
    algorithm: str
    imprint: bytes
    gen_time: datetime
    serial_number: int
    policy: str
    nonce: int | None = None


def build_request(digest: bytes, algorithm: str, *, nonce: int, policy: str | None = None) -> bytes:
    """A DER TimeStampReq (RFC 3161 §2.4.1) for ``digest``, asking for the TSA certificate."""
    if ALGORITHMS.get(algorithm) != len(digest):
        raise ProofError(
            f"cannot timestamp a {len(digest)}-byte value as {algorithm}",
            hint=f"use one of {', '.join(ALGORITHMS)} with a digest of its length",
        )
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": tsp.MessageImprint(
            {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
                "hashed_message": digest,
            }
        ),
        "nonce": nonce,
        "cert_req": True,
    }
    if policy:
        fields["req_policy"] = policy
    request: bytes = tsp.TimeStampReq(fields).dump()
    return request


def request_token(
    url: str,
    digest: bytes,
    algorithm: str = "sha512",
    *,
    policy: str | None = None,
    timeout: float = 30.0,
) -> TimestampToken:
    """Ask the TSA at ``url`` for a token over ``digest`` and check the answer.

    Raises :class:`ProofError` if the TSA cannot be reached, refuses, or answers a token that
    does not match the request (status, nonce, imprint, policy).
    """
    nonce = secrets.randbits(63)
    body = build_request(digest, algorithm, nonce=nonce, policy=policy)
    answer = post_query(url, body, timeout=timeout)
    return check_response(answer, digest, algorithm, nonce=nonce, policy=policy)


def post_query(url: str, query: bytes, *, timeout: float = 30.0) -> bytes:
    """POST a DER TimeStampReq to the TSA at ``url`` (RFC 3161 §3.4) and return the body of
    its answer, unchecked. Raises :class:`ProofError` if it cannot be reached or does not
    answer a timestamp reply."""
    req = urllib.request.Request(  # noqa: S310 - the URL is the operator's configured TSA
        url, data=query, headers={"Content-Type": QUERY_TYPE}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            content_type = resp.headers.get_content_type()
            answer: bytes = resp.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ProofError(
            f"the timestamp authority at {url} did not answer: {exc}",
            hint="check the TSA URL and that it is reachable; sealing will retry",
        ) from exc
    if content_type != REPLY_TYPE:
        raise ProofError(f"{url} answered {content_type!r}, not {REPLY_TYPE}")
    return answer


def check_response(
    answer: bytes, digest: bytes, algorithm: str, *, nonce: int | None, policy: str | None
) -> TimestampToken:
    """Parse a TimeStampResp and check it answers this request (RFC 3161 §2.4.2)."""
    try:
        parsed = _TimeStampResp.load(answer)
        status = parsed["status"]["status"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise ProofError(f"not an RFC 3161 TimeStampResp: {exc}") from exc
    if status not in ("granted", "granted_with_mods"):
        text = parsed["status"]["status_string"].native or []
        raise ProofError(f"the timestamp authority refused: {status} {' '.join(text)}".strip())
    token = token_from_der(parsed["time_stamp_token"].dump(), response=answer)
    if token.algorithm != algorithm:
        raise ProofError("the token covers another digest algorithm than the one requested")
    if token.imprint != digest:
        raise ProofError("the token's message imprint is not the digest that was sent")
    if nonce is not None and token.nonce != nonce:
        raise ProofError("the token's nonce is not the request's (a replayed or wrong answer)")
    if policy and token.policy != policy:
        raise ProofError(f"the token's policy {token.policy} is not {policy}")
    return token


def token_from_der(token_der: bytes, *, response: bytes | None = None) -> TimestampToken:
    """Read a stored TimeStampToken (CMS ContentInfo). ``response`` is the TimeStampResp it
    came in, if kept; otherwise a granted one is built around the unchanged token bytes."""
    try:
        content = cms.ContentInfo.load(token_der)
        info = content["content"]["encap_content_info"]["content"].parsed
        imprint = info["message_imprint"]
        token = TimestampToken(
            response=response
            or tsp.TimeStampResp(
                {"status": {"status": "granted"}, "time_stamp_token": content}
            ).dump(),
            token=token_der,
            algorithm=imprint["hash_algorithm"]["algorithm"].native,
            imprint=imprint["hashed_message"].native,
            gen_time=info["gen_time"].native,
            serial_number=int(info["serial_number"].native),
            policy=info["policy"].dotted,
            nonce=info["nonce"].native,
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProofError(f"not an RFC 3161 timestamp token: {exc}") from exc
    return token


def verify_token(
    token: TimestampToken,
    digest: bytes,
    *,
    roots: Sequence[bytes],
    policy: str | None = None,
) -> None:
    """Verify a token over ``digest`` against PEM trust anchors (RFC 3161 §2.4.2, RFC 5816).

    Checks the signature, the chain to a root at the token's genTime, the critical
    timeStamping EKU of the TSA certificate, the imprint and, if given, the policy.
    Raises :class:`ProofError` naming what failed.
    """
    _check_signer_info(token)
    builder = VerifierBuilder()
    for pem in roots:
        builder = builder.add_root_certificate(x509.load_pem_x509_certificate(pem))
    if policy:
        builder = builder.policy_id(x509.ObjectIdentifier(policy))
    try:
        response = decode_timestamp_response(token.response)
        builder.build().verify(response, digest)
    except VerificationError as exc:
        raise ProofError(f"the timestamp does not verify: {exc}") from exc
    except ValueError as exc:
        raise ProofError(f"the timestamp cannot be read: {exc}") from exc


def signer_certificate(token: TimestampToken) -> x509.Certificate:
    """The TSA certificate that signed ``token``, from the certificates the token embeds.

    Raises :class:`ProofError` if the token embeds none that matches its signer."""
    try:
        signed = cms.ContentInfo.load(token.token)["content"]
        sid = signed["signer_infos"][0]["sid"]
        for choice in signed["certificates"] or []:
            if choice.name != "certificate":
                continue
            cert = choice.chosen
            if sid.name == "issuer_and_serial_number":
                ias = sid.chosen
                # Names compared as DER: asn1crypto's Name equality runs LDAP string
                # preparation and costs more than the signature check itself.
                if (
                    cert.serial_number == ias["serial_number"].native
                    and cert["tbs_certificate"]["issuer"].dump() == ias["issuer"].dump()
                ):
                    return x509.load_der_x509_certificate(cert.dump())
            elif cert.key_identifier == sid.chosen.native:
                return x509.load_der_x509_certificate(cert.dump())
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ProofError(f"the timestamp's signer cannot be read: {exc}") from exc
    raise ProofError(
        f"timestamp {token.serial_number} does not carry the certificate of the TSA that "
        "signed it, so when that certificate expires cannot be told"
    )


_SIGNATURES = {"rsassa_pkcs1v15", "rsassa_pss", "ecdsa", "ed25519", "ed448"}


def _check_signer_info(token: TimestampToken) -> None:
    """The parts of the SignerInfo the signature does not cover, held to what they must say.

    rfc3161-client verifies by the certificate's key type and ignores the stated signature
    algorithm, so a token whose signatureAlgorithm (or the signature's encoding) was altered
    would still verify. Such a token is not the one the TSA issued: refuse it."""
    try:
        signed = cms.ContentInfo.load(token.token)["content"]
        info = signed["signer_infos"][0]
        signature = info["signature_algorithm"]
        name = signature["algorithm"].native
        digest = info["digest_algorithm"]["algorithm"].native
        info["signature"].native  # noqa: B018 - parsing it checks its tag
        # RFC 5652 §5.1, §5.3: SignedData is v3 for a TSTInfo; a SignerInfo v1 names its
        # signer by issuer and serial, v3 by key identifier.
        expected = 1 if info["sid"].name == "issuer_and_serial_number" else 3
        versions = (signed["version"].native, info["version"].native)
        digests = [*signed["digest_algorithms"], info["digest_algorithm"]]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ProofError(f"the timestamp's signer information cannot be read: {exc}") from exc
    if versions != ("v3", f"v{expected}"):
        raise ProofError(
            f"the timestamp's CMS versions {versions[0]}/{versions[1]} are not v3/v{expected} "
            "(RFC 5652): the token was altered"
        )
    for algorithm in digests:
        require_plain_digest(algorithm, "the timestamp")
    hash_name, _, scheme = name.partition("_")
    if name in _SIGNATURES:
        return
    if scheme in ("rsa", "ecdsa") and hash_name == digest:
        return
    raise ProofError(
        f"the timestamp's stated signature algorithm {name} does not fit its digest "
        f"algorithm {digest}: the token was altered"
    )


def require_plain_digest(algorithm: algos.DigestAlgorithm, where: str) -> None:
    """A SHA-2 AlgorithmIdentifier has absent or NULL parameters (RFC 5754 §2); anything else
    is not what a signer or archive wrote. Raises :class:`ProofError`."""
    try:
        name = algorithm["algorithm"].native
        params = algorithm["parameters"]
        plain = params.native is None and params.__class__.__name__ in ("Void", "Null")
    except (ValueError, TypeError, KeyError) as exc:
        raise ProofError(f"{where} names a digest algorithm that cannot be read: {exc}") from exc
    if not plain:
        raise ProofError(f"{where} names {name} with unexpected parameters: altered")
