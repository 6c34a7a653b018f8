"""``GET /trust``: the archive's trust anchors for anyone, no credentials, as JSON; the
fingerprints are those a bundle lists (sha256 of the PEM file) and those openssl prints
(sha256 of the certificate's DER)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from access.export.bundle import export
from api.app import create_app
from archive.proofs.local_tsa import ensure_pki
from archive.proofs.seal import seal_now
from tests.api_support import make_users
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import deposit


def openssl_fingerprint(pem: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # sha256 Fingerprint=AB:CD:…
    return out.strip().partition("=")[2].replace(":", "").lower()


def test_trust_lists_the_anchors_with_both_fingerprints(
    make_services: MakeServices, tmp_path: Path
) -> None:
    other = ensure_pki(tmp_path / "external-tsa")  # a configured root, besides the local one
    services = make_services(tsa={"roots": [str(other)]})
    package_id = deposit(services, SAMPLE, depositor="Sample Mechanism").package_id
    seal_now(services)
    local = services.settings.tsa_path / "root.pem"
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        r = client.get("/trust")  # no credentials
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        anchors = r.json()["trust_anchors"]
        # Credentials change nothing: it is the same public answer for a registrar.
        assert client.get("/trust", headers=users.bearer("registrar")).json() == r.json()

    assert [a["pem"].encode() for a in anchors] == [other.read_bytes(), local.read_bytes()]
    for anchor, path in zip(anchors, (other, local), strict=True):
        assert set(anchor) == {"sha256", "certificate_sha256", "subject", "not_after", "pem"}
        assert anchor["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert anchor["certificate_sha256"] == openssl_fingerprint(path)
        assert anchor["certificate_sha256"] != anchor["sha256"]
        assert anchor["not_after"] > "2030"  # ten years ahead (ISO 8601, UTC)
    assert anchors[1]["subject"] == "CN=Custos local TSA root,O=Custos local timestamp authority"

    # A court bundle's anchors are the ones published: compare the fingerprints.
    result = export(
        services, package_id, [], to=tmp_path / "bundle", requester="Tribunal", purpose="public"
    )
    index = json.loads((result.bundle / "data" / "custos-bundle.json").read_text())
    assert [a["sha256"] for a in index["trust_anchors"]] == [a["sha256"] for a in anchors]


def test_an_anchor_that_is_not_a_certificate_is_a_misconfiguration_said_plainly(
    make_services: MakeServices, tmp_path: Path
) -> None:
    broken = tmp_path / "root.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    services = make_services(tsa={"roots": [str(broken)]})
    with TestClient(create_app(services.settings)) as client:
        r = client.get("/trust")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "not a PEM certificate" in r.json()["detail"] and "tsa.roots" in r.json()["hint"]
