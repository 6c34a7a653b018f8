"""The Makefile's demo: the Debian tools its main job runs are installed first (only the missing
ones, apt-get update before, sudo unless root), and ``make demo PORT=N`` serves on port N; a
port already taken ends ``custos serve`` with a hint naming ``--port``.

``make`` runs with stand-ins for dpkg-query, apt-get, sudo and id first on PATH, so nothing
is installed and the machine's packages do not matter.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tests.functional.test_cli import custos


def stubs(folder: Path, *, installed: set[str], uid: int) -> Path:
    """Stand-ins that log their calls to ``folder/calls``; returns that log."""
    log = folder / "calls"
    known = " ".join(sorted(installed))
    scripts = {
        # dpkg-query -W -f=FORMAT PACKAGE: "installed" for the packages said installed.
        "dpkg-query": f'for p in {known}; do [ "$p" = "$3" ] && echo installed && exit 0; done\n'
        "exit 1\n",
        "apt-get": f'echo "apt-get $*" >> {log}\n',
        "sudo": f'echo "sudo" >> {log}\nexec "$@"\n',
        "id": f"echo {uid}\n",
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return log


def make(*args: str, path: Path | None = None) -> str:
    env = {**os.environ}
    if path is not None:
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_deps_installs_the_missing_tools_of_the_main_job(tmp_path: Path) -> None:
    log = stubs(tmp_path, installed={"openssl"}, uid=1000)
    said = make("demo-deps", path=tmp_path)
    assert "installing Debian packages: poppler-utils" in said
    assert log.read_text().splitlines() == [
        "sudo",
        "apt-get update -qq",
        "sudo",
        "apt-get install -y -qq poppler-utils",
    ]


def test_demo_deps_as_root_without_sudo_and_nothing_when_all_are_there(tmp_path: Path) -> None:
    log = stubs(tmp_path, installed=set(), uid=0)
    make("demo-deps", path=tmp_path)
    assert log.read_text().splitlines() == [
        "apt-get update -qq",
        "apt-get install -y -qq openssl poppler-utils",
    ]
    log.unlink()
    stubs(tmp_path, installed={"openssl", "poppler-utils"}, uid=0)
    assert make("demo-deps", path=tmp_path) == ""
    assert not log.exists()


def test_demo_installs_its_tools_and_serves_on_the_port_asked() -> None:
    default = make("-n", "demo", "DATA=/nonexistent")
    assert "dpkg-query" in default and "openssl poppler-utils" in default
    assert "serve --port 8000" in default
    other = make("-n", "demo", "PORT=8010", "DATA=/nonexistent")
    assert "serve --port 8010" in other and "http://127.0.0.1:8010/search" in other


def test_serve_on_a_taken_port_says_how_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, said = custos(tmp_path / "data", "serve", "--port", str(port))
    assert code == 1
    assert f"cannot serve on 127.0.0.1:{port}" in said
    assert "choose another with --port N" in said
