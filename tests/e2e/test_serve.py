"""`custos serve` for real, on 127.0.0.1: Artefactual's `fixity scanall` against it, the
reading room in Debian's headless Chromium (Playwright), a large upload that must not be held
in memory, and a clean exit on SIGTERM. The server is stopped by its PID."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from access.accounts.users import NewUser, add_user
from access.decisions.rules import access_policy
from archive.config import load_settings
from archive.proofs.seal import seal_now
from archive.services import open_services
from ingest.service import identify_package
from tests.conftest import SAMPLE
from tests.helpers import deposit, make_bag, make_pdf, staging_debris, zip_folder
from tests.servers import free_port, wait_until_serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FIXITY_VERSION = "0.8.0"
RESTRICTED_TITLE = "Closed holding qx7restricted"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    data: Path
    archivist: NewUser
    depositor: NewUser
    public_id: str
    restricted_id: str
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def peak_memory_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


def custos_bin() -> Path:
    return Path(sys.executable).parent / "custos"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    data = tmp / "data"
    settings = load_settings(data_dir=data, environ={}, overrides={"fsync": False})
    services = open_services(settings)
    public = deposit(services, SAMPLE, depositor="Sample Mechanism")
    identify_package(services, public.package_id)
    closed = make_bag(
        tmp / "closed",
        {"witness-list.txt": b"names\n"},
        info={"Title": RESTRICTED_TITLE},  # undeclared: restricted (fail closed)
    )
    restricted = deposit(services, closed, depositor="Sample Mechanism")
    seal_now(services)
    policy = access_policy(settings)
    with services.session_scope() as session:
        archivist = add_user(session, "arno", role="archivist", policy=policy)
        depositor = add_user(
            session, "dora", role="depositor", policy=policy, organisation="Sample Mechanism"
        )
    services.close()
    port = free_port()
    log = tmp / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(custos_bin()),
                "--data-dir",
                str(data),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CUSTOS_FSYNC": "false"},
        )
    srv = Server(
        f"http://127.0.0.1:{port}",
        process,
        data,
        archivist,
        depositor,
        public.package_id,
        restricted.package_id,
        log,
    )
    try:
        wait_until_serving(srv.url, process, log)
    except RuntimeError:
        srv.stop()
        raise
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def fixity_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artefactual's fixity tool in its own virtual environment (its module name `fixity`
    collides with ours)."""
    folder = tmp_path_factory.mktemp("fixity-venv")
    venv.create(folder, with_pip=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    done = subprocess.run([*pip, f"fixity=={FIXITY_VERSION}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return folder / "bin" / "fixity"


def scanall(tool: Path, server: Server) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "STORAGE_SERVICE_URL": server.url + "/",
        "STORAGE_SERVICE_USER": server.archivist.name,
        "STORAGE_SERVICE_KEY": server.archivist.token,
    }
    return subprocess.run(
        [str(tool), "scanall"], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_reading_room_in_headless_chromium(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(java_script_enabled=False, accept_downloads=True)
            page.goto(server.url + "/")
            assert page.url.endswith("/search")
            assert RESTRICTED_TITLE not in page.content()
            page.fill("#q", "site report")
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert "q=site+report" in page.url
            assert RESTRICTED_TITLE not in page.content()
            results = page.locator("li.result a")
            assert results.count() >= 1
            results.first.click()
            page.wait_for_load_state()
            assert page.locator("#title").inner_text() == "Sample holding (fictional records)"
            rows = page.locator("tr.file").all_inner_texts()
            assert any("site-report.pdf" in r and "sealed" in r for r in rows)
            assert not any("transfer-letter" in r for r in rows)  # restricted file
            with page.expect_download() as info:
                page.click("text=site-report.pdf")
            target = tmp_path / "site-report.pdf"
            info.value.save_as(target)
            expected = (SAMPLE / "data/documents/site-report.pdf").read_bytes()
            assert hashlib.sha512(target.read_bytes()).digest() == hashlib.sha512(expected).digest()
            # The restricted package's page answers like a missing one; its title never shows.
            page.goto(server.url + "/packages/" + server.restricted_id.removeprefix("urn:uuid:"))
            closed = page.content()
            page.goto(server.url + "/packages/00000000-0000-4000-8000-000000000000")
            assert page.content() == closed and RESTRICTED_TITLE not in closed
            page.goto(server.url + "/search?q=qx7restricted")
            assert RESTRICTED_TITLE not in page.content()
            assert "0 results" in page.locator("#total").inner_text()
        finally:
            browser.close()


@pytest.mark.slow
def test_a_large_upload_is_never_held_in_memory(server: Server, tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    before = server.peak_memory_kib()

    def body() -> Iterator[bytes]:
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            yield block

    r = httpx.put(
        server.url + "/deposits",
        params={"filename": "big.zip"},
        content=body(),
        headers={
            "Authorization": f"Bearer {server.depositor.token}",
            "X-Custos-Checksum": "sha256:" + "0" * 64,
        },
        timeout=300,
    )
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "UPLOAD-CHECKSUM-MISMATCH"
    assert f"{size} bytes" in r.json()["detail"]
    grown_mib = (server.peak_memory_kib() - before) / 1024
    assert grown_mib < 64, f"the server's peak memory grew by {grown_mib:.0f} MiB"
    assert staging_debris(server.data / "staging") == []


@pytest.mark.slow
def test_fixity_scanall_succeeds_then_reports_the_altered_package(
    server: Server, fixity_tool: Path
) -> None:
    done = scanall(fixity_tool, server)
    assert done.returncode == 0, done.stdout + done.stderr
    for package_id in (server.public_id, server.restricted_id):
        uuid = package_id.removeprefix("urn:uuid:")
        assert f"Fixity scan succeeded for AIP: {uuid}" in done.stderr
    assert "Successfully scanned 2 AIPs" in done.stderr
    # Alter one stored file of the restricted package, behind the archive's back.
    objects = sorted(p for p in (server.data / "storage").rglob("witness-list.txt"))
    (stored,) = objects
    stored.write_bytes(b"altered\n")
    done = scanall(fixity_tool, server)
    assert done.returncode == 1, done.stdout + done.stderr
    bad = server.restricted_id.removeprefix("urn:uuid:")
    good = server.public_id.removeprefix("urn:uuid:")
    assert f"Fixity scan failed for AIP: {bad}" in done.stderr
    assert f"Fixity scan succeeded for AIP: {good}" in done.stderr


def test_serve_alone_identifies_an_uploaded_deposit(server: Server, tmp_path: Path) -> None:
    """No worker runs: the server's own thread identifies what the upload left pending.
    (After the scanall test, which counts the packages held.)"""
    bag = make_bag(
        tmp_path / "bag",
        {"memo.pdf": make_pdf("a memo about the bridge"), "list.txt": b"one\ntwo\n"},
        info={"Title": "Served deposit"},
    )
    archive = zip_folder(bag, tmp_path / "bag.zip")
    headers = {"Authorization": f"Bearer {server.depositor.token}"}
    r = httpx.put(
        server.url + "/deposits",
        params={"filename": "bag.zip"},
        content=archive.read_bytes(),
        headers={
            **headers,
            "X-Custos-Checksum": "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest(),
        },
        timeout=120,
    )
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 120  # a bound on waiting, not a timing assertion
    status = r.json()
    while status["identification"] != "done" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = httpx.get(
            f"{server.url}/deposits/{status['upload_id']}", headers=headers, timeout=10
        ).json()
    assert status["identification"] == "done" and status["files_awaiting_identification"] == 0


def test_openapi_is_published_and_the_server_exits_cleanly(server: Server) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["info"]["title"] == "Custos"
    for path in (
        "/public/search",
        "/deposits",
        "/registrar/packages/{package}/tier",
        "/api/v2/file/",
    ):
        assert path in spec["paths"]
    assert server.stop() == 0


def test_several_processes_serve_one_port_and_stop_cleanly(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [str(custos_bin()), "--data-dir", str(tmp_path / "data"), "serve", "--port", str(port),
         "--workers", "2", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process)
        with httpx.Client() as client:  # one connection, kept alive
            for _ in range(20):
                assert client.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    assert b"stopped" in out


def test_connections_to_the_serving_sockets_have_tcp_nodelay() -> None:
    """Each answer leaves at once, not after the client's delayed ACK (~40 ms): asyncio sets
    TCP_NODELAY on the connections of a socket made as TCP proper (``api.cli._listen``), which
    uvicorn's own worker mode lost. Checked on the accepted connection itself, not by timing."""
    import asyncio

    from api.cli import _listen

    sock = _listen("127.0.0.1", free_port(), reuse_port=True)
    seen: list[int] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            port = sock.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            while not seen:
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert seen and seen[0] != 0
