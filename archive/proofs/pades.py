"""PAdES on the PDF documents the archive makes (its PDF/A copies): each carries its own proof,
viewable in a PDF reader and verifiable without Custos (ETSI EN 319 142-1, baseline B-LTA).

What is added, by incremental updates only (ISO 32000-2 §7.5.6), so the bytes the converter
wrote, and their PDF/A declaration, stay a prefix of the sealed file:

1. a PAdES signature by the archive's own signing key, its *archive seal* (B-B, §5.3), over
   the whole document, with SHA-512;
2. a signature timestamp from the configured timestamp authority (B-T, §5.4);
3. the validation data of both certificate chains, certificates and CRLs, in the document
   security store (B-LT, §5.5);
4. a document timestamp over all of it (B-LTA, §5.6).

Why a signature and not a document timestamp alone: ETSI EN 319 102-1 validation, as
pyhanko's ``ades_lta_validation`` implements it, validates a *signature* and treats the
document timestamps after it as its evidence record. Given a document whose only signature is
a document timestamp, it hands the timestamp's CMS to the signature check with the document's
digest as detached content; a timestamp token encapsulates its TSTInfo, so the check stops at
"detached signatures should not have encapsulated data" (FORMAT_FAILURE). A document
timestamp alone proves when the bytes existed but not who vouched for them; the archive seal
says the archive made this copy, and the timestamps say when.

The embedded default makes the archive seal's key and a CA for it in ``DATA_DIR/pades`` at
first use (like the local TSA); that CA, and the local TSA's, issue fresh CRLs at each seal,
so no network is needed. Production names its own key, certificate, chain and roots
(``[pades]`` settings); revocation data is then fetched from the URLs the certificates name.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleCertificateStore, SimpleTrustManager

from archive import clock
from archive.config import Settings
from archive.errors import ConfigError, ProofError
from archive.proofs.local_tsa import ensure_pki as ensure_tsa_pki
from archive.proofs.seal import Authority, NoAuthorityAnswered, authorities
from archive.proofs.timestamp import post_query

#: The signature field the archive seal goes in.
FIELD_NAME = "CustosArchiveSeal"
LEVEL = "PAdES B-LTA"
DIGEST = "sha512"
#: How long a CRL the local CAs issue stays current (a verifier later relies on the document
#: timestamp's proof that it existed while current, not on its being current then).
CRL_DAYS = 7


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Custos archive"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_pki(folder: Path, *, days: int = 3650) -> None:
    """Make the local archive seal if absent: a root CA (``root.pem``, ``root.key``) and the
    signing certificate it issued (``seal.pem``, ``seal.key``: digital signature and
    non-repudiation, not a CA). Keys are P-384, readable by the owner only."""
    if all((folder / n).is_file() for n in ("root.pem", "root.key", "seal.pem", "seal.key")):
        return
    folder.mkdir(parents=True, exist_ok=True)
    start = clock.now() - timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("Custos archive seal root"))
        .issuer_name(_name("Custos archive seal root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA384())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Custos archive seal"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA384())
    )
    for name, data in (("root.key", _pem_key(root_key)), ("seal.key", _pem_key(key))):
        path = folder / name
        path.touch(mode=0o600)
        path.write_bytes(data)
    (folder / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (folder / "seal.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def issue_crl(ca_pem: bytes, ca_key_pem: bytes, *, days: int = CRL_DAYS) -> bytes:
    """A DER CRL (RFC 5280 §5) from a local CA that revoked nothing, current from now."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    key = serialization.load_pem_private_key(ca_key_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("a local CA's key is not an EC key: cannot issue its CRL")
    issuer_key: CertificateIssuerPrivateKeyTypes = key
    at = clock.now() - timedelta(minutes=1)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(at)
        .next_update(at + timedelta(days=days))
        .add_extension(x509.CRLNumber(int(at.timestamp() * 1000)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA384())
    )
    return crl.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signs the archive seal: key and certificate (PEM), chain and roots, and (local
    PKI only) the CA key that issues its CRLs."""

    key: bytes
    certificate: bytes
    chain: tuple[bytes, ...]
    roots: tuple[bytes, ...]
    ca_key: bytes | None = None

    @property
    def subject(self) -> str:
        return x509.load_pem_x509_certificate(self.certificate).subject.rfc4514_string()


def identity(settings: Settings) -> Identity:
    """The archive seal the settings name (the local one made at first use).

    Raises :class:`ConfigError` naming a file that cannot be read."""
    p = settings.pades
    if p.local:
        folder = settings.pades_path
        ensure_pki(folder)
        root = (folder / "root.pem").read_bytes()
        return Identity(
            (folder / "seal.key").read_bytes(),
            (folder / "seal.pem").read_bytes(),
            (),
            (root,),
            (folder / "root.key").read_bytes(),
        )
    assert p.key is not None and p.certificate is not None  # checked by PadesSettings
    try:
        return Identity(
            p.key.read_bytes(),
            p.certificate.read_bytes(),
            tuple(c.read_bytes() for c in p.chain),
            tuple(r.read_bytes() for r in p.roots),
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot read the archive seal's files (pades.*): {exc}",
            hint="check pades.key, pades.certificate, pades.chain and pades.roots",
        ) from exc


def describe(settings: Settings) -> tuple[bool, str]:
    """Whether PDF/A copies can be sealed as the settings say, and with what (for plans):
    reads the production certificate, makes nothing."""
    p = settings.pades
    if p.local:
        made = (settings.pades_path / "seal.pem").is_file()
        return True, f"local archive seal in {settings.pades_path}" + (
            "" if made else " (made at first use)"
        )
    try:
        who = identity(settings)
        cert = x509.load_pem_x509_certificate(who.certificate)
    except (ConfigError, ValueError) as exc:
        return False, f"archive seal: {exc}"
    until = cert.not_valid_after_utc
    if until <= clock.now():
        return False, f"archive seal {who.subject}: its certificate expired on {until:%Y-%m-%d}"
    return True, f"archive seal {who.subject}, certificate valid until {until:%Y-%m-%d}"


def _asn1_certs(pems: Sequence[bytes]) -> list[asn1_x509.Certificate]:
    out = []
    for pem in pems:
        for cert in x509.load_pem_x509_certificates(pem):
            out.append(asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)))
    return out


class _Timestamper(timestamps.TimeStamper):
    """pyhanko's timestamp client over the archive's own (``timestamp.post_query``): the
    configured authorities in order, the first that answers kept for every later request."""

    def __init__(self, tsas: Sequence[Authority], timeout: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.tsas = list(tsas)
        self.timeout = timeout
        self.used: Authority | None = None
        self.failures: list[str] = []

    def _ask(self, query: bytes) -> bytes:
        order = [self.used] if self.used else self.tsas
        for tsa in order:
            try:
                answer = post_query(tsa.url, query, timeout=self.timeout)
            except ProofError as exc:
                self.failures.append(exc.message)
                continue
            self.used = tsa
            return answer
        raise NoAuthorityAnswered(
            "no timestamp authority answered for the PAdES timestamps: "
            + ("; ".join(self.failures) or "none is configured"),
            hint="configure tsa.local or tsa.urls and check the TSAs are reachable",
        )

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        answer = await asyncio.to_thread(self._ask, req.dump())
        try:
            return tsp.TimeStampResp.load(answer)
        except ValueError as exc:
            raise ProofError(f"the TSA's answer is not a TimeStampResp: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Sealed:
    """What the seal on one document is: level, signer and the authority that timestamped it."""

    level: str
    signer: str
    tsa: str

    def summary(self, signed_at: datetime) -> str:
        """In words, with the signing time a verification established (:class:`SealVerdict`)."""
        return (
            f"{self.level} archive seal (pyhanko {version('pyhanko')}) by {self.signer}, "
            f"timestamped by {self.tsa} at {signed_at.isoformat()}"
        )


class _Outage:
    """When no authority last answered, shared by the threads of one run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None
        self.detail = ""


@dataclass(frozen=True)
class PdfSealer:
    """Seals PDF documents with one identity and the authorities of one run.

    After no authority answered, :meth:`outage` says so for ``quiet_for`` seconds, so that a
    run does not convert (and wait on the TSAs for) every PDF of a package in turn while they
    are down; the next successful seal ends it."""

    who: Identity
    tsas: tuple[Authority, ...]
    tsa_crls: tuple[bytes, ...]
    timeout: float
    fetch: bool  # fetch revocation data online (external CAs or TSAs)
    quiet_for: float = 30.0
    _outage: _Outage = field(default_factory=_Outage, compare=False, repr=False)

    def outage(self) -> str | None:
        """Why no seal can be had now (no authority answered within ``quiet_for`` seconds),
        or None."""
        with self._outage.lock:
            since = self._outage.since
            if since is None or time.monotonic() - since >= self.quiet_for:
                return None
            return self._outage.detail

    @property
    def roots(self) -> tuple[bytes, ...]:
        """Every trust anchor a verifier of these seals needs: the archive seal's, the TSAs'."""
        return (*self.who.roots, *(r for t in self.tsas for r in t.roots))

    def seal(self, source: Path, target: Path) -> Sealed:
        """Write ``source`` with the archive seal, PAdES B-LTA, to ``target``.

        Raises :class:`NoAuthorityAnswered` when no TSA answered (nothing is written then
        that counts: the caller discards ``target``), :class:`ProofError` when the document
        cannot be signed."""
        crls = list(self.tsa_crls)
        if self.who.ca_key is not None:
            crls += [issue_crl(root, self.who.ca_key) for root in self.who.roots]
        try:
            key = serialization.load_pem_private_key(self.who.key, None)
            signer = signers.SimpleSigner(
                signing_cert=_asn1_certs([self.who.certificate])[0],
                signing_key=asn1_keys.PrivateKeyInfo.load(
                    key.private_bytes(
                        serialization.Encoding.DER,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                ),
                cert_registry=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
                    _asn1_certs(self.who.chain)
                ),
            )
        except (ValueError, TypeError, IndexError) as exc:
            raise ConfigError(
                f"the archive seal's key or certificate cannot be read: {exc}",
                hint="pades.key and pades.certificate must be PEM files of one key pair",
            ) from exc
        context = ValidationContext(
            trust_roots=_asn1_certs(self.roots),
            other_certs=_asn1_certs(self.who.chain),
            crls=crls,
            allow_fetching=self.fetch,
            revocation_mode="require",
        )
        meta = signers.PdfSignatureMetadata(
            field_name=FIELD_NAME,
            reason="Preservation copy made and sealed by the archive",
            subfilter=fields.SigSeedSubFilter.PADES,
            md_algorithm=DIGEST,
            embed_validation_info=True,
            use_pades_lta=True,
            validation_context=context,
        )
        stamper = _Timestamper(self.tsas, self.timeout)
        pdf = signers.PdfSigner(meta, signer=signer, timestamper=stamper)
        try:
            with source.open("rb") as inp, target.open("wb") as out:
                pdf.sign_pdf(IncrementalPdfFileWriter(inp, strict=False), output=out)
        except NoAuthorityAnswered as exc:
            target.unlink(missing_ok=True)
            with self._outage.lock:
                self._outage.since, self._outage.detail = time.monotonic(), exc.message
            raise
        except (PdfError, SigningError, OSError, ValueError) as exc:
            target.unlink(missing_ok=True)
            raise ProofError(
                f"the PDF could not be sealed: {exc}",
                hint="the archive seal's certificate chain must lead to pades.roots and name "
                "where its revocation status is published (CRL or OCSP), reachable from here",
            ) from exc
        assert stamper.used is not None
        with self._outage.lock:
            self._outage.since = None
        return Sealed(LEVEL, self.who.subject, stamper.used.name)


@contextmanager
def pdf_sealer(settings: Settings) -> Iterator[PdfSealer]:
    """The archive seal and the configured authorities (the local TSA runs meanwhile)."""
    # pyhanko warns, through logging, that it embeds validation data without fetching: that
    # is the point with the local PKI. Its other messages are left as they are.
    logging.getLogger("pyhanko.sign.signers.pdf_signer").setLevel(logging.ERROR)
    who = identity(settings)
    tsa_crls: tuple[bytes, ...] = ()
    if settings.tsa.local:
        ensure_tsa_pki(settings.tsa_path)
        folder = settings.tsa_path
        tsa_crls = (
            issue_crl((folder / "root.pem").read_bytes(), (folder / "root.key").read_bytes()),
        )
    fetch = not settings.pades.local or bool(settings.tsa.urls)
    with authorities(settings) as tsas:
        yield PdfSealer(
            who, tuple(tsas), tsa_crls, settings.tsa.timeout, fetch, settings.tsa.retry_base
        )


@dataclass(frozen=True, slots=True)
class SealVerdict:
    """A seal that held: ETSI EN 319 102-1 §5.6.3 (validation with long-term data) PASSED."""

    signer: str
    signed_at: datetime  # the best signature time the proofs establish
    evidence_at: datetime | None  # the oldest document timestamp after the signature


def verify_pdf(document: bytes | Path, roots: Sequence[bytes]) -> SealVerdict:
    """Verify the archive seal of a PDF with ``ades_lta_validation``, trusting only ``roots``
    (PEM) and only the validation data the document carries (no fetching: a sealed copy
    must hold its whole proof).

    Raises :class:`ProofError` naming the ETSI indication when it does not PASS."""
    from pyhanko.sign.ades.report import AdESPassed
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    anchors = _asn1_certs(roots)
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=anchors),
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
    )
    spec = PdfSignatureValidationSpec(
        SignatureValidationSpec(
            cert_validation_policy=policy,
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
            ),
        )
    )
    with ExitStack() as stack:
        stream = (
            io.BytesIO(document)
            if isinstance(document, bytes)
            else stack.enter_context(document.open("rb"))
        )
        try:
            reader = PdfFileReader(stream, strict=False)
            sigs = [s for s in reader.embedded_signatures if s.field_name == FIELD_NAME]
        except (PdfError, ValueError) as exc:
            raise ProofError(f"the PDF cannot be read to verify its seal: {exc}") from exc
        if not sigs:
            raise ProofError(f"the PDF carries no archive seal (no signature field {FIELD_NAME})")
        try:
            result = asyncio.run(ades_lta_validation(sigs[0], spec))
        except (PdfError, ValueError) as exc:
            raise ProofError(f"the archive seal cannot be validated: {exc}") from exc
    if result.ades_subindic is not AdESPassed.OK:
        raise ProofError(
            f"the archive seal does not hold: {result.ades_subindic} "
            f"({result.failure_msg or 'no detail'})"
        )
    status = result.api_status
    if status is None or not (status.intact and status.valid and status.coverage is not None):
        raise ProofError("the archive seal does not hold: the signature is not intact")
    if status.coverage != SignatureCoverageLevel.ENTIRE_REVISION:
        raise ProofError("the archive seal does not cover the document's revision it signed")
    return SealVerdict(
        status.signing_cert.subject.human_friendly,
        result.best_signature_time,
        result.oldest_evidence_record_timestamp,
    )
