"""A timestamp authority whose clock and certificates the tests choose: certomancer's RFC 3161
responder behind a real HTTP server on 127.0.0.1.

Its PKI (a root, and TSA certificates with the validity windows a test asks for, each with the
critical timeStamping EKU) is made with ``cryptography``; certomancer signs the tokens at the
time the test sets. It grants whatever it is sent, so it is a test tool only.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from certomancer.services import TimeStamper
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY = "1.3.6.1.4.1.99999.1"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class FakeTimeTSA:
    """``with FakeTimeTSA(folder) as tsa:`` then ``tsa.add("tsa1", not_before, not_after)``,
    ``tsa.use("tsa1")``, ``tsa.clock = datetime(...)`` (None: the real time); ``tsa.url``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        start = datetime(2020, 1, 1, tzinfo=UTC)
        self.root = (
            x509.CertificateBuilder()
            .subject_name(_name("Custos test root"))
            .issuer_name(_name("Custos test root"))
            .public_key(self._root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=365 * 30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._root_key, hashes.SHA256())
        )
        self.root_pem = folder / "root.pem"
        self.root_pem.write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        self._signers: dict[str, TimeStamper] = {}
        self._active = ""
        self.clock: datetime | None = None
        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, label: str, not_before: datetime, not_after: datetime) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"Custos test TSA {label}"))
            .issuer_name(self.root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .sign(self._root_key, hashes.SHA256())
        )
        self._signers[label] = TimeStamper(
            tsa_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
            tsa_key=asn1_keys.PrivateKeyInfo.load(
                key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            ),
            policy=tsp.ObjectIdentifier(POLICY),
        )
        if not self._active:
            self._active = label

    def use(self, label: str) -> None:
        self._active = label

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def _reply(self, body: bytes) -> bytes:
        signer = self._signers[self._active]
        signer.fixed_dt = self.clock
        self.requests += 1
        return bytes(signer.request_tsa_response(tsp.TimeStampReq.load(body)).dump())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = tsa._reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> FakeTimeTSA:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
