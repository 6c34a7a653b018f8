"""A local RFC 3161 timestamp authority: OpenSSL's responder behind a small HTTP handler.

For the embedded default, tests and air-gapped sites. Its PKI (a root CA and a TSA certificate
whose only extended key usage is a critical timeStamping, RFC 3161 §2.3) is made with the
``openssl`` command at first use and kept in its folder; the root certificate is what a verifier
trusts. The responder is ``openssl ts -reply``: no Python library implements the TSA side, and
OpenSSL's is the reference court experts already use to verify. Calls into it are serialised
(its serial file is not safe under concurrency), between threads and between processes (a
worker and a command each run their own responder on the same folder): two tokens with one
serial number would break RFC 3161 §2.4.2. The server binds to 127.0.0.1 unless told
otherwise: ``custos tsa serve --host H`` runs it as a service for several hosts, which then
name it in their ``[tsa] urls`` and trust its ``root.pem``.
"""

from __future__ import annotations

import fcntl
import re
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from archive.errors import ConfigError, CustosError, StorageError

#: The archive's timestamp policy (a private arc under the UUID-derived OID 2.25).
DEFAULT_POLICY_OID = "2.25.245013771342513620467128478226337937410"
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_QUERY_BYTES = 64 * 1024

_TSA_CNF = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = .
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha512
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""

_TSA_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class TSAError(CustosError):
    """The timestamp authority could not be set up or did not answer as RFC 3161 requires."""

    exit_code = 75


def _openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)
    except FileNotFoundError as exc:
        raise ConfigError(
            "the openssl command is not installed", hint="install Debian's openssl package"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise TSAError(
            f"openssl {args[0]} failed: {exc.stderr.decode('utf-8', 'replace').strip()[-400:]}"
        ) from exc


def ensure_pki(folder: Path, *, policy: str = DEFAULT_POLICY_OID, days: int = 3650) -> Path:
    """Create the local TSA's root CA, TSA certificate and OpenSSL configuration if absent.

    Returns the root certificate's path (the trust anchor to export with every proof).
    """
    folder.mkdir(parents=True, exist_ok=True)
    root = folder / "root.pem"
    cnf = folder / "tsa.cnf"
    if root.is_file() and (folder / "tsa.pem").is_file() and cnf.is_file():
        # The responder runs in the folder itself (`dir = .`), so a data folder moved or
        # restored elsewhere signs with its own key and serial. Configurations written before
        # named the folder's absolute path: they are brought to the relative form.
        text = cnf.read_text()
        relative = re.sub(r"(?m)^dir = .*$", "dir = .", text)
        if relative != text:
            cnf.write_text(relative)
        return root
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
        "-keyout", "root.key", "-out", "root.pem", "-days", str(days), "-sha384",
        "-subj", "/O=Custos local timestamp authority/CN=Custos local TSA root",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    (folder / "tsa-ext.cnf").write_text(_TSA_EXT)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
        "-keyout", "tsa.key", "-out", "tsa.csr",
        "-subj", "/O=Custos local timestamp authority/CN=Custos local TSA",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "root.pem", "-CAkey", "root.key",
        "-CAcreateserial", "-out", "tsa.pem", "-days", str(days), "-sha384",
        "-extfile", "tsa-ext.cnf",
        cwd=folder,
    )  # fmt: skip
    (folder / "serial").write_text("01\n")
    cnf.write_text(_TSA_CNF.format(policy=policy))
    for key in ("root.key", "tsa.key"):
        (folder / key).chmod(0o600)
    return root


@dataclass
class LocalTSA:
    """OpenSSL's responder for the PKI in ``folder``; :meth:`reply` answers one query."""

    folder: Path

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def root_certificate(self) -> Path:
        return self.folder / "root.pem"

    @property
    def tsa_certificate(self) -> Path:
        return self.folder / "tsa.pem"

    def reply(self, query: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq (a rejection for a bad query)."""
        with (
            self._lock,
            open(self.folder / "serial.lock", "a") as lock,
            tempfile.TemporaryDirectory(prefix="custos-tsa-") as tmp,
        ):
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            q.write_bytes(query)
            _openssl(
                "ts", "-reply", "-config", str(self.folder / "tsa.cnf"),
                "-queryfile", str(q), "-out", str(r),
                cwd=self.folder,
            )  # fmt: skip
            return r.read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get_content_type() != QUERY_TYPE or not 0 < length <= MAX_QUERY_BYTES:
            self.send_error(400, f"send a DER TimeStampReq as {QUERY_TYPE}")
            return
        try:
            body = self.server.tsa.reply(self.rfile.read(length))
        except CustosError:
            self.send_error(500, "the timestamp responder failed")
            return
        self.send_response(200)
        self.send_header("Content-Type", REPLY_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # requests carry only digests; nothing worth a log line


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tsa: LocalTSA, host: str, port: int) -> None:
        self.tsa = tsa
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)


class LocalTSAServer:
    """The local TSA over HTTP (on 127.0.0.1 unless ``host`` says otherwise), in a background
    thread (``with`` or start/stop).

    Raises :class:`StorageError` when the folder cannot hold the PKI, :class:`TSAError` when
    openssl cannot make it, and :class:`ConfigError` when the address cannot be listened on."""

    def __init__(
        self,
        folder: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        policy: str = DEFAULT_POLICY_OID,
    ) -> None:
        try:
            ensure_pki(folder, policy=policy)
        except OSError as exc:
            raise StorageError(
                f"the timestamp authority's folder {folder} cannot hold its keys: {exc}",
                hint="give a folder this account can create and write (--dir)",
            ) from exc
        self.tsa = LocalTSA(folder)
        try:
            self._server = _Server(self.tsa, host, port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose a free port (--port) and an address of this machine (--host)",
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="custos-tsa", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"

    def serve_forever(self) -> None:
        """Answer in this thread until :meth:`stop` is called from another."""
        self._server.serve_forever()

    def start(self) -> LocalTSAServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalTSAServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
