"""The archive's trust anchors, as it publishes them (``GET /trust``).

A court bundle carries copies of the anchors its timestamps verify against; whoever checks a
bundle compares their fingerprints with the ones the archive publishes here. Each anchor is
given with two fingerprints: ``sha256`` of its PEM file's bytes (the one a bundle's
``custos-bundle.json`` lists, and ``sha256sum`` prints) and ``certificate_sha256`` of the
certificate's DER (the one ``openssl x509 -noout -fingerprint -sha256`` prints).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from archive.errors import ConfigError
from archive.proofs.verify import trust_anchors
from archive.services import Services


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    """One anchor: its PEM file's text and fingerprint, and its certificate's."""

    sha256: str
    certificate_sha256: str
    subject: str
    not_after: str
    pem: str

    @classmethod
    def from_pem(cls, pem: bytes) -> TrustAnchor:
        """Raises :class:`ValueError` if ``pem`` holds no certificate. Of several, the first
        is described: it is the one a token is verified against."""
        cert = x509.load_pem_x509_certificate(pem)
        return cls(
            sha256=hashlib.sha256(pem).hexdigest(),
            certificate_sha256=cert.fingerprint(hashes.SHA256()).hex(),
            subject=cert.subject.rfc4514_string(),
            not_after=cert.not_valid_after_utc.isoformat(),
            pem=pem.decode("ascii"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "certificate_sha256": self.certificate_sha256,
            "subject": self.subject,
            "not_after": self.not_after,
            "pem": self.pem,
        }


def published_anchors(services: Services) -> list[TrustAnchor]:
    """The archive's trust anchors (:func:`archive.proofs.verify.trust_anchors`), described.

    Raises :class:`ConfigError` if one of them is not a PEM certificate."""
    anchors = []
    for pem in trust_anchors(services):
        try:
            anchors.append(TrustAnchor.from_pem(pem))
        except ValueError as exc:  # UnicodeDecodeError too
            raise ConfigError(
                f"a trust anchor of the archive is not a PEM certificate: {exc}",
                hint="fix tsa.roots in the settings: each file must hold a PEM certificate",
            ) from exc
    return anchors
