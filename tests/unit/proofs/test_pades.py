"""The archive seal on PDF/A copies (PAdES B-LTA through pyhanko, timestamps from the real local
TSA), checked here with pyhanko's own ``ades_lta_validation`` (ETSI EN 319 102-1 §5.6.3), the
trust roots given explicitly and no network: it PASSES; a changed byte or another root does
not; the converter's bytes (and their PDF/A declaration) stay a prefix; a TSA that does not
answer leaves nothing sealed."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import subprocess
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESPassed
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager

from archive.config import Settings, load_settings
from archive.errors import ConfigError, ProofError
from archive.proofs.pades import FIELD_NAME, describe, pdf_sealer, verify_pdf
from archive.proofs.seal import NoAuthorityAnswered
from migration.tools import expand
from policies.load import POLICY_DIR, load_format_policy
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def pdfa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PDF/A-2b made by Ghostscript with the shipped pathway's arguments."""
    out = tmp_path_factory.mktemp("pdfa") / "copy.pdf"
    pathway = load_format_policy().pathways["pdf-to-pdfa-2b"]
    values = {
        "input": str(SAMPLE / "data/documents/site-report.pdf"),
        "output": str(out),
        "policy_dir": str(POLICY_DIR),
    }
    subprocess.run(["gs", *expand(pathway.args, values)], check=True, capture_output=True)
    return out


def settings_in(folder: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=folder, environ={}, overrides={"fsync": False, **overrides})


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, pdfa: Path) -> tuple[bytes, list[bytes]]:
    """The sealed copy, and the roots a verifier is given: the archive seal's, the TSA's."""
    data = tmp_path_factory.mktemp("data")
    settings = settings_in(data)
    target = data / "sealed.pdf"
    with pdf_sealer(settings) as sealer:
        seal = sealer.seal(pdfa, target)
    assert seal.level == "PAdES B-LTA" and seal.tsa == "local"
    roots = [(data / "pades/root.pem").read_bytes(), (data / "tsa/root.pem").read_bytes()]
    return target.read_bytes(), roots


def lta(document: bytes, roots: list[bytes]):  # type: ignore[no-untyped-def]
    """pyhanko's ades_lta_validation of the archive seal, trusting only ``roots``, using only
    what the document carries (no fetching), revocation data required for every certificate."""
    anchors = [
        asn1_x509.Certificate.load(
            x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        )
        for pem in roots
    ]
    spec = PdfSignatureValidationSpec(
        SignatureValidationSpec(
            cert_validation_policy=CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build(trust_roots=anchors),
                revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
            ),
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
            ),
        )
    )
    reader = PdfFileReader(io.BytesIO(document))
    sig = next(s for s in reader.embedded_signatures if s.field_name == FIELD_NAME)
    return asyncio.run(ades_lta_validation(sig, spec))


def test_the_sealed_copy_passes_ades_lta_validation(
    sealed: tuple[bytes, list[bytes]], pdfa: Path
) -> None:
    document, roots = sealed
    result = lta(document, roots)
    assert result.ades_subindic is AdESPassed.OK, result.failure_msg
    # B-T: the signature carries its timestamp, which validated.
    assert result.signature_timestamp_status is not None
    assert result.signature_timestamp_status.ades_subindic is AdESPassed.OK
    # B-LTA: a document timestamp after the signature is its evidence record.
    assert result.oldest_evidence_record_timestamp is not None
    status = result.api_status
    assert status is not None and status.intact and status.valid
    assert "Custos archive seal" in status.signing_cert.subject.human_friendly

    reader = PdfFileReader(io.BytesIO(document))
    kinds = [s.sig_object["/Type"] for s in reader.embedded_signatures]
    assert kinds == ["/Sig", "/DocTimeStamp"]
    dss = reader.root["/DSS"]
    assert len(dss["/Certs"]) >= 2 and len(dss["/CRLs"]) == 2  # both chains' validation data
    # Incremental updates only: Ghostscript's bytes, PDF/A declaration included, are a prefix.
    original = pdfa.read_bytes()
    assert document.startswith(original) and len(document) > len(original)
    assert pdfa_declared(document, pdfa.parent) == "2B"
    # Custos's own check agrees.
    verdict = verify_pdf(document, roots)
    assert verdict.evidence_at is not None


def test_a_changed_byte_fails_validation(sealed: tuple[bytes, list[bytes]], pdfa: Path) -> None:
    document, roots = sealed
    original = pdfa.read_bytes()
    at = original.index(b"stream") + 20  # inside the page content the seal covers
    tampered = bytearray(document)
    tampered[at] ^= 0x01
    result = lta(bytes(tampered), roots)
    assert result.ades_subindic is AdESFailure.HASH_FAILURE
    with pytest.raises(ProofError, match="does not hold"):
        verify_pdf(bytes(tampered), roots)


def test_only_the_given_roots_are_trusted(sealed: tuple[bytes, list[bytes]]) -> None:
    document, roots = sealed
    result = lta(document, roots[1:])  # the TSA's root alone: the seal has no chain
    assert result.ades_subindic is AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND
    with pytest.raises(ProofError, match="NO_CERTIFICATE_CHAIN_FOUND"):
        verify_pdf(document, roots[1:])


def test_a_pdf_without_the_seal_is_refused(pdfa: Path) -> None:
    with pytest.raises(ProofError, match="no archive seal"):
        verify_pdf(pdfa, [])


def pdfa_declared(document: bytes, folder: Path) -> str:
    """The PDF/A part and conformance the document's XMP declares, as poppler reads it."""
    path = folder / "check.pdf"
    path.write_bytes(document)
    xmp = subprocess.run(
        ["pdfinfo", "-meta", str(path)], capture_output=True, text=True, check=True
    ).stdout
    found = dict(re.findall(r"pdfaid:(part|conformance)(?:>|\s*=\s*['\"])([0-9A-Za-z]+)", xmp))
    return f"{found.get('part', '')}{found.get('conformance', '').upper()}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_timestamp_authority_answering_seals_nothing(tmp_path: Path, pdfa: Path) -> None:
    settings = settings_in(
        tmp_path / "data",
        tsa={"local": False, "urls": [f"http://127.0.0.1:{closed_port()}/"], "timeout": 5},
    )
    target = tmp_path / "sealed.pdf"
    with pdf_sealer(settings) as sealer, pytest.raises(NoAuthorityAnswered) as info:
        sealer.seal(pdfa, target)
    assert "did not answer" in info.value.message
    assert not target.exists()


def test_a_production_identity_needs_its_files_and_revocation_data(
    tmp_path: Path, pdfa: Path, sealed: tuple[bytes, list[bytes]]
) -> None:
    with pytest.raises(ConfigError, match=r"pades\.key, pades\.certificate and pades\.roots"):
        settings_in(tmp_path / "a", pades={"local": False})
    # A key and certificate of its own that name no revocation service: refused, not sealed
    # without the validation data a verifier would need.
    local = settings_in(tmp_path / "b")
    with pdf_sealer(local):
        pass  # makes a key pair and CA to stand for an operator's
    folder = local.pades_path
    own = settings_in(
        tmp_path / "c",
        pades={
            "local": False,
            "key": str(folder / "seal.key"),
            "certificate": str(folder / "seal.pem"),
            "roots": [str(folder / "root.pem")],
        },
    )
    target = tmp_path / "sealed.pdf"
    with pdf_sealer(own) as sealer, pytest.raises(ProofError, match="could not be sealed") as info:
        sealer.seal(pdfa, target)
    assert "revocation" in (info.value.hint or "")
    assert not target.exists()


def test_plans_say_whether_pdfa_copies_can_be_sealed(tmp_path: Path) -> None:
    local = settings_in(tmp_path / "a")
    ok, detail = describe(local)
    assert ok and "made at first use" in detail
    with pdf_sealer(local):
        pass
    assert describe(local) == (True, f"local archive seal in {local.pades_path}")
    folder = local.pades_path
    own = {
        "local": False,
        "key": str(folder / "seal.key"),
        "certificate": str(folder / "seal.pem"),
        "roots": [str(folder / "root.pem")],
    }
    ok, detail = describe(settings_in(tmp_path / "b", pades=own))
    assert (
        ok and detail.startswith("archive seal CN=Custos archive seal") and "valid until" in detail
    )
    gone = {**own, "certificate": str(tmp_path / "missing.pem")}
    ok, detail = describe(settings_in(tmp_path / "c", pades=gone))
    assert not ok and "missing.pem" in detail
