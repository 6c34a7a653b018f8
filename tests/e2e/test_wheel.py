"""The wheel, installed outside the checkout, runs: a fresh virtual environment holding only the
wheel built from these sources runs `custos ingest`, `custos status` and `custos serve` from
another folder. The dependencies are reached through a path line in a ``.pth`` file naming this
interpreter's site-packages, which does not run that folder's own ``.pth`` files: the editable
install's finder for the checkout is never loaded, so the schema migrations, the reading room's
templates and the policies are found only if the wheel carries them. The server is stopped by
its PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, SAMPLE
from tests.servers import free_port, wait_until_serving

TITLE = "Sample holding (fictional records)"  # the sample's Title, public (custos-access.txt)


def build_wheel(dist: Path, work: Path) -> Path:
    """The wheel of a copy of the sources (pyproject.toml, README.md and the packages it names):
    setuptools builds in the source folder, and a build/ left in the checkout by an earlier
    build would put stale files in the wheel (and two runs at once would share it)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    src = work / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", config["project"]["readme"]):
        shutil.copy2(ROOT / name, src / name)
    for top in sorted({p.split(".")[0] for p in config["tool"]["setuptools"]["packages"]}):
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-index"]
    done = subprocess.run(
        [*pip, "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("custos-*.whl")
    return wheel


def install(wheel: Path, env: Path) -> Path:
    """A new virtual environment holding the wheel alone; the dependencies come from this
    interpreter's site-packages through a path line in a .pth file. Returns its bin folder."""
    venv.create(env, with_pip=False, symlinks=True)
    python = env / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "custos-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return env / "bin"


@pytest.mark.slow
def test_the_wheel_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", tmp_path / "build")
    bin_dir = install(wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bag = shutil.copytree(SAMPLE, elsewhere / "sample-holding")
    data = elsewhere / "data"
    # The settings come from the data folder alone (no catalog URL or TSA of the test run's).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOS_", "PYTHON"))}
    env |= {"CUSTOS_FSYNC": "false", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )

    # Step 1: the packages are the wheel's, never the checkout's.
    where = run(
        str(bin_dir / "python"),
        "-c",
        "import archive, api, policies; print(archive.__file__, api.__file__, policies.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for module in where.stdout.split():
        assert Path(module).is_relative_to(tmp_path / "venv"), where.stdout
        assert not Path(module).is_relative_to(ROOT), where.stdout

    # Step 2: ingest makes the catalog (the migrations), stores and seals (the local TSA).
    custos = str(bin_dir / "custos")
    done = run(
        custos,
        "--data-dir",
        str(data),
        "ingest",
        str(bag),
        "--depositor",
        "X",
        "--new-depositor",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "stored", report
    assert report["payload_files"] == 5
    assert report["identification"]["status"] == "ok"
    assert report["seal"]["status"] == "sealed", report["seal"]
    package_id = report["package_id"]

    done = run(custos, "--data-dir", str(data), "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["holdings"]["packages"] == 1
    assert status["seal_backlog"]["pending"] == 0

    # Step 3: the reading room renders its templates.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [custos, "--data-dir", str(data), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=elsewhere,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(url, server, log)
        page = httpx.get(url + "/search", params={"q": "site report"}, timeout=30)
        assert page.status_code == 200, page.text
        assert 'class="search"' in page.text and "Custos reading room" in page.text
        assert TITLE in page.text
        found = httpx.get(url + "/public/search", params={"q": "site report"}, timeout=30)
        assert found.status_code == 200, found.text
        assert package_id in found.text
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
    assert server.returncode == 0, log.read_text()
