"""PDF/A copies carry the archive seal (PAdES B-LTA) when stored: the stored bytes, their
catalog digests and the migration event are those of the sealed file, which passes the
pathway's validator, is identified as PDF/A-2b and passes pyhanko's ``ades_lta_validation``
with the roots given; when no timestamp authority answers, nothing is stored, the attempt is
recorded as deferred, and the next run makes the copy."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
from pathlib import Path

from archive.services import Services
from migration import service
from migration.probe import Identified
from migration.validate import check_output
from policies.load import load_format_policy
from tests.conftest import SAMPLE, MakeServices
from tests.functional.migrate_helpers import (
    derivatives,
    fido,
    head,
    migration_events,
    object_root,
    pages,
    store,
    stored_payload_digests,
    validate_storage,
)
from tests.functional.test_cli import custos
from tests.helpers import make_bag, staging_debris
from tests.unit.proofs.test_pades import closed_port, lta, pdfa_declared

POLICY = load_format_policy()
OUT = "custos/derivatives/preservation/bag/data/documents/site-report.pdf.pdf"
PDF = (SAMPLE / "data/documents/site-report.pdf").read_bytes()


def roots(data: Path) -> list[bytes]:
    return [(data / "pades/root.pem").read_bytes(), (data / "tsa/root.pem").read_bytes()]


def reader_view(path: Path) -> str:
    """What poppler (the library behind many PDF readers) shows of a file's signatures."""
    return subprocess.run(["pdfsig", str(path)], capture_output=True, text=True).stdout


def test_a_pdfa_copy_is_stored_sealed_and_verifies(services: Services, tmp_path: Path) -> None:
    package_id = store(services, tmp_path / "bag", {"documents/site-report.pdf": PDF})
    before = stored_payload_digests(services, package_id)
    result = service.migrate(services)
    assert [(p.succeeded, p.failed, p.deferred) for p in result.packages] == [(1, 0, 0)]

    row = derivatives(services, package_id)[OUT]
    stored = object_root(services, package_id) / row.content_path
    data = stored.read_bytes()
    # What is stored, and what the catalog and the event record, is the sealed file.
    assert hashlib.sha512(data).hexdigest() == row.sha512
    (event,) = migration_events(services, package_id)
    assert event["outcome"] == "success" and f"output sha512:{row.sha512}" in event["detail"]
    assert "PAdES B-LTA archive seal (pyhanko 0." in event["detail"]
    assert "by CN=Custos archive seal" in event["detail"]
    assert "timestamped by local" in event["detail"]
    # It is a PDF/A-2b: FIDO (run by the test), the XMP as poppler reads it, the pathway's own
    # validator with the source's page count.
    pathway = POLICY.pathways["pdf-to-pdfa-2b"]
    assert fido(stored) == row.puid == "fmt/477"  # PRONOM: PDF/A-2b
    assert pdfa_declared(data, tmp_path) == "2B"
    assert pages(stored) == pages(SAMPLE / "data/documents/site-report.pdf")
    check = check_output(pathway, stored, {"page_count": pages(stored)}, tmp_path)
    assert check.ok, check.summary()
    assert isinstance(check.identified, Identified)
    # Its proof: pyhanko's long-term validation passes with the roots given, no network.
    data_dir = services.settings.data_dir
    verdict = lta(data, roots(data_dir))
    assert str(verdict.ades_subindic) == "AdESPassed.OK", verdict.failure_msg
    assert verdict.oldest_evidence_record_timestamp is not None
    # What a PDF reader shows (poppler's pdfsig): the archive seal, valid, and the document
    # timestamp; one changed byte and the reader reports the mismatch.
    shown = reader_view(stored)
    assert "Signature Field Name: CustosArchiveSeal" in shown
    assert "Signature Type: ETSI.CAdES.detached" in shown
    assert "Signature Validation: Signature is Valid." in shown
    assert "Signer Certificate Common Name: Custos local TSA" in shown  # the document timestamp
    tampered = tmp_path / "tampered.pdf"
    changed = bytearray(data)
    changed[data.index(b"stream") + 20] ^= 0x01
    tampered.write_bytes(changed)
    assert "Signature Validation: Digest Mismatch." in reader_view(tampered)
    # Originals untouched, the object still valid OCFL, staging clean.
    assert stored_payload_digests(services, package_id) == before
    validate_storage(services)
    assert staging_debris(services.store.staging) == []


def test_no_timestamp_authority_defers_the_copy_and_the_next_run_makes_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    bag = make_bag(tmp_path / "bag", {"documents/site-report.pdf": PDF})
    code, body, _ = custos(
        data, "ingest", str(bag), "--depositor", "PAdES Tests", "--new-depositor", "--json"
    )
    assert code == 0, body
    package_id = body["package_id"]
    down = {
        "CUSTOS_TSA__LOCAL": "false",
        "CUSTOS_TSA__URLS": f'["http://127.0.0.1:{closed_port()}/"]',
        "CUSTOS_TSA__TIMEOUT": "5",
    }
    code, ran, err = custos(data, "migrate", "run", "--json", env=down)
    assert code == 75, err  # try again later
    assert ran["status"] == "deferred" and ran["deferred"] == 1 and ran["failed"] == 0
    (attempt,) = ran["packages"][0]["attempts"]
    assert attempt["outcome"] == "deferred" and attempt["output"] is None
    assert "no timestamp authority answered" in attempt["reason"]
    assert ran["packages"][0]["version"] is None

    code, shown, _ = custos(data, "show", package_id, "--json")
    assert code == 0 and shown["head"] == 2  # ingest and identification: no version added
    assert not any(f["logical_path"].startswith("custos/derivatives/") for f in shown["files"])
    deferrals = [e for e in shown["events"] if e["type"] == "migration"]
    assert [e["outcome"] for e in deferrals] == ["warning"]
    assert (
        "pdf-to-pdfa-2b (formats v2): no preservation copy yet, deferred"
        in (deferrals[0]["detail"])
    )

    # Deferred is not failed: the plan still counts it to do, the next run makes it.
    code, plan, _ = custos(data, "migrate", "plan", "--json")
    row = next(r for r in plan["formats"] if r["migrate"] == "pdf-to-pdfa-2b")
    assert (row["to_do"], row["failed"]) == (1, 0)
    seal = next(t for t in plan["tools"] if t["name"] == "pades")
    assert seal["available"] and "local archive seal" in seal["detail"]
    code, ran, err = custos(data, "migrate", "run", "--json")
    assert code == 0, err
    assert (ran["succeeded"], ran["deferred"]) == (1, 0) and ran["packages"][0]["version"] == 3
    code, shown, _ = custos(data, "show", package_id, "--json")
    stored = next(f for f in shown["files"] if f["logical_path"] == OUT)
    path = data / "storage"
    files = [p for p in path.rglob("site-report.pdf.pdf") if p.is_file()]
    assert len(files) == 1
    assert stored["sha512"] == hashlib.sha512(files[0].read_bytes()).hexdigest()
    verdict = lta(files[0].read_bytes(), roots(data))
    assert str(verdict.ades_subindic) == "AdESPassed.OK", verdict.failure_msg


class Hangup:
    """A TCP listener on 127.0.0.1 that closes every connection at once (a TSA that is down
    without refusing connections), counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def test_once_no_tsa_answered_the_other_pdfa_copies_are_deferred_unmade(
    make_services: MakeServices, tmp_path: Path
) -> None:
    tsa = Hangup()
    try:
        services = make_services(workers=1, tsa={"local": False, "urls": [tsa.url]})
        package_id = store(services, tmp_path / "bag", {"a/report.pdf": PDF, "b/report.pdf": PDF})
        result = service.migrate(services)
        (run,) = result.packages
        assert (run.succeeded, run.failed, run.deferred, run.version) == (0, 0, 2, None)
        first, second = run.attempts
        assert "was made but not stored" in first.reason
        assert "was not made" in second.reason  # not converted, the TSA not asked again
        assert tsa.connections == 1
        assert [e["outcome"] for e in migration_events(services, package_id)] == [
            "warning",
            "warning",
        ]
        assert derivatives(services, package_id) == {}
        assert head(services, package_id) == 2
        assert staging_debris(services.store.staging) == []
    finally:
        tsa.close()


def test_head_is_unchanged_by_a_run_with_nothing_to_do(services: Services, tmp_path: Path) -> None:
    package_id = store(services, tmp_path / "bag", {"documents/site-report.pdf": PDF})
    service.migrate(services)
    assert head(services, package_id) == 3
    assert service.migrate(services).packages == () and head(services, package_id) == 3
