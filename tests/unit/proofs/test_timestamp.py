"""RFC 3161 against the real local TSA (OpenSSL's responder over HTTP on 127.0.0.1), checked
with rfc3161-client and independently with `openssl ts -verify`."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive.errors import ProofError
from archive.proofs.local_tsa import DEFAULT_POLICY_OID, LocalTSAServer, ensure_pki
from archive.proofs.timestamp import build_request, check_response, request_token, verify_token


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTSAServer]:
    with LocalTSAServer(tmp_path_factory.mktemp("tsa")) as server:
        yield server


def root_pem(tsa: LocalTSAServer) -> bytes:
    return tsa.tsa.root_certificate.read_bytes()


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_token_over_a_digest_verifies(tsa: LocalTSAServer, algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"manifest-sha512.txt of deposit 1").digest()
    token = request_token(tsa.url, digest, algorithm, policy=DEFAULT_POLICY_OID)
    assert token.imprint == digest and token.policy == DEFAULT_POLICY_OID
    assert token.token in token.response  # the token's bytes are kept as received
    verify_token(token, digest, roots=[root_pem(tsa)], policy=DEFAULT_POLICY_OID)


def test_openssl_verifies_the_same_token(tsa: LocalTSAServer, tmp_path: Path) -> None:
    data = b"bag manifest bytes"
    token = request_token(tsa.url, hashlib.sha512(data).digest(), "sha512")
    (tmp_path / "r.tsr").write_bytes(token.response)
    (tmp_path / "m.txt").write_bytes(data)
    ok = subprocess.run(
        ["openssl", "ts", "-verify", "-in", "r.tsr", "-data", "m.txt",
         "-CAfile", str(tsa.tsa.root_certificate), "-untrusted", str(tsa.tsa.tsa_certificate)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stderr
    (tmp_path / "m.txt").write_bytes(data + b"!")
    bad = subprocess.run(
        ["openssl", "ts", "-verify", "-in", "r.tsr", "-data", "m.txt",
         "-CAfile", str(tsa.tsa.root_certificate), "-untrusted", str(tsa.tsa.tsa_certificate)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0


def test_other_digest_does_not_verify(tsa: LocalTSAServer) -> None:
    token = request_token(tsa.url, hashlib.sha512(b"a").digest(), "sha512")
    with pytest.raises(ProofError, match="does not verify"):
        verify_token(token, hashlib.sha512(b"b").digest(), roots=[root_pem(tsa)])


def test_untrusted_root_does_not_verify(tsa: LocalTSAServer, tmp_path: Path) -> None:
    with LocalTSAServer(tmp_path / "other") as other:
        token = request_token(other.url, hashlib.sha512(b"a").digest(), "sha512")
    with pytest.raises(ProofError, match="does not verify"):
        verify_token(token, hashlib.sha512(b"a").digest(), roots=[root_pem(tsa)])


def test_wrong_policy_is_refused(tsa: LocalTSAServer) -> None:
    token = request_token(tsa.url, hashlib.sha512(b"a").digest(), "sha512")
    with pytest.raises(ProofError, match="does not verify"):
        verify_token(token, hashlib.sha512(b"a").digest(), roots=[root_pem(tsa)], policy="1.2.3.4")


def test_answer_for_another_request_is_refused(tsa: LocalTSAServer) -> None:
    token = request_token(tsa.url, hashlib.sha512(b"a").digest(), "sha512")
    with pytest.raises(ProofError, match="imprint"):
        check_response(
            token.response, hashlib.sha512(b"b").digest(), "sha512", nonce=None, policy=None
        )
    with pytest.raises(ProofError, match="nonce"):
        check_response(
            token.response, hashlib.sha512(b"a").digest(), "sha512", nonce=1, policy=None
        )


def test_sha1_is_refused_by_the_tsa(tsa: LocalTSAServer) -> None:
    from asn1crypto import algos, tsp

    query = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha1"}),
                "hashed_message": hashlib.sha1(b"a").digest(),
            },
            "nonce": 7,
            "cert_req": True,
        }
    ).dump()
    req = urllib.request.Request(
        tsa.url, data=query, headers={"Content-Type": "application/timestamp-query"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = resp.read()
    with pytest.raises(ProofError, match="refused"):
        check_response(answer, hashlib.sha1(b"a").digest(), "sha1", nonce=7, policy=None)


def test_bad_requests(tsa: LocalTSAServer) -> None:
    with pytest.raises(ProofError, match="cannot timestamp"):
        build_request(b"short", "sha512", nonce=1)
    req = urllib.request.Request(tsa.url, data=b"x", headers={"Content-Type": "text/plain"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    err.value.close()
    assert err.value.code == 400


def test_unreachable_tsa_is_a_clear_error() -> None:
    with pytest.raises(ProofError, match="did not answer"):
        request_token("http://127.0.0.1:9/", hashlib.sha512(b"a").digest(), timeout=2)


def test_pki_has_a_critical_timestamping_eku(tsa: LocalTSAServer) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(tsa.tsa.tsa_certificate.read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]


def test_two_processes_on_one_responder_folder_never_share_a_serial(tmp_path: Path) -> None:
    """A worker and a command each run a responder on the same folder: every token still
    gets its own serial number (OpenSSL's serial file is read, increased and written back)."""
    folder = tmp_path / "tsa"
    ensure_pki(folder)
    code = (
        "import hashlib, sys\n"
        "from pathlib import Path\n"
        "from archive.proofs.local_tsa import LocalTSA\n"
        "from archive.proofs.timestamp import build_request, check_response\n"
        "tsa = LocalTSA(Path(sys.argv[1]))\n"
        "for n in range(25):\n"
        "    d = hashlib.sha512(f'{sys.argv[2]}-{n}'.encode()).digest()\n"
        "    q = build_request(d, 'sha512', nonce=n + 1)\n"
        "    t = check_response(tsa.reply(q), d, 'sha512', nonce=n + 1, policy=None)\n"
        "    print(t.serial_number)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(folder), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("worker", "command")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outputs]
    serials = [int(line) for out, _ in outputs for line in out.split()]
    assert len(serials) == 50 and len(set(serials)) == 50
