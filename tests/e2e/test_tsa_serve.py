"""`custos tsa serve`: the embedded timestamp authority as a service that several archives
share. Two archives with no local authority seal through it and verify each other's trust
anchor; a query that is not RFC 3161 is refused; SIGTERM stops it cleanly; a folder that
cannot hold its keys and a port that is taken are refused, naming them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SAMPLE
from tests.functional.test_cli import custos
from tests.servers import free_port

CUSTOS = str(Path(sys.executable).parent / "custos")


def start(folder: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [CUSTOS, "tsa", "serve", "--dir", str(folder), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    deadline = time.monotonic() + 120  # a bound on waiting (the PKI is made at first use)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"custos tsa serve stopped: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"custos tsa serve did not listen: {log.read_text()}")


def archive_using(tsa_url: str, root: Path) -> dict[str, Any]:
    return {
        "CUSTOS_TSA__LOCAL": "false",
        "CUSTOS_TSA__URLS": f'["{tsa_url}"]',
        "CUSTOS_TSA__ROOTS": f'["{root}"]',
    }


def test_two_archives_seal_through_one_shared_authority(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "tsa"
    server = start(folder, port, tmp_path / "tsa.log")
    try:
        url = f"http://127.0.0.1:{port}/"
        env = archive_using(url, folder / "root.pem")
        for name in ("a", "b"):
            code, stored, said = custos(
                tmp_path / name,
                "ingest",
                str(SAMPLE),
                "--depositor",
                "Sample Mechanism",
                "--new-depositor",
                "--json",
                env=env,
            )
            assert code == 0, said
            assert stored["seal"]["status"] == "sealed"
            code, _, said = custos(
                tmp_path / name, "verify", stored["package_id"], "--json", env=env
            )
            assert code == 0, said
        # No local authority was made in either data folder: one authority signed both.
        assert not (tmp_path / "a" / "tsa").exists() and not (tmp_path / "b" / "tsa").exists()
        assert int((folder / "serial").read_text().strip(), 16) > 2
        # Not an RFC 3161 query: refused, and the authority keeps answering.
        assert httpx.post(url, content=b"hello", timeout=10).status_code == 400
        assert httpx.get(url, timeout=10).status_code == 501
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert "stopped" in (tmp_path / "tsa.log").read_text()


def test_a_folder_that_cannot_hold_keys_and_a_taken_port_are_refused(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file\n")
    done = subprocess.run(
        [CUSTOS, "tsa", "serve", "--dir", str(blocked / "tsa"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 74 and str(blocked) in done.stderr.replace("\n", "")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [CUSTOS, "tsa", "serve", "--dir", str(tmp_path / "tsa"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 78 and f"127.0.0.1:{port}" in done.stderr
