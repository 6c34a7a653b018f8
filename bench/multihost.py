"""Benchmark: a deposit made on one host and kept by another, against the same work on one host.

Two hosts are two data folders that share nothing but PostgreSQL, a SeaweedFS S3 primary
(with Object Lock), Redis and one ``custos tsa serve`` (all started here on 127.0.0.1, as the
tests start them). Host A deposits a bag (``custos ingest --no-identify --no-seal``: the
deposit an API upload makes); host B's ``custos worker --until-idle`` identifies its formats,
seals it and replicates it to a second bucket; host B then runs ``custos fixity run --all``.
Every step is a real command, start-up included. The figure is the wall time of each step and
of the whole, with the check that nothing of the object lies in either host's folder.

The baseline, measured in the same run on the same bag: the same three commands on one host
with the embedded default's storage (a local storage root, a local replica folder, the same
PostgreSQL and timestamp authority): what sharing the primary through S3 costs.

Run (from the project folder)::

    .venv/bin/python bench/multihost.py                   # 2,000 files of 4 KiB + 8 of 4 MiB
    .venv/bin/python bench/multihost.py --files 200       # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import PROJECT_DIR, cpu_summary, log

sys.path.insert(0, str(PROJECT_DIR))

from tests.servers import (
    free_port,
    start_postgres,
    start_redis,
    start_seaweedfs,
)

CUSTOS = str(Path(sys.executable).parent / "custos")
ENV = {**os.environ, "CUSTOS_FSYNC": "false"}
DEPOSITOR = "Benchmark Mechanism"


def make_bag(folder: Path, files: int, large: int) -> Path:
    import bagit

    data = folder / "bag"
    data.mkdir(parents=True)
    for i in range(files):
        sub = data / f"d{i // 100:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
    for i in range(large):
        (data / f"large{i}.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    bagit.make_bag(str(data), {"Source-Organization": DEPOSITOR}, checksums=["sha512"])
    return data


def toml(values: dict[str, Any]) -> str:
    def v(x: Any) -> str:
        return str(x).lower() if isinstance(x, bool) else json.dumps(x)

    lines = [f"{k} = {v(x)}" for k, x in values.items() if not isinstance(x, dict)]
    for k, x in values.items():
        if isinstance(x, dict):
            if all(isinstance(t, dict) for t in x.values()):
                for name, table in x.items():
                    lines.append(f"[{k}.{name}]")
                    lines += [f"{a} = {v(b)}" for a, b in table.items()]
            else:
                lines.append(f"[{k}]")
                lines += [f"{a} = {v(b)}" for a, b in x.items()]
    return "\n".join(lines) + "\n"


def custos(data: Path, config: Path, *args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [CUSTOS, "--data-dir", str(data), "--config", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=3600,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"custos {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return took, json.loads(done.stdout)


def steps(deposit: tuple[Path, Path], keep: tuple[Path, Path], bag: Path) -> dict[str, float]:
    times: dict[str, float] = {}
    custos(*deposit, "depositors", "add", DEPOSITOR)
    times["deposit"], stored = custos(
        *deposit, "ingest", str(bag), "--depositor", DEPOSITOR, "--no-identify", "--no-seal"
    )
    assert stored["status"] == "stored", stored
    times["worker"], ran = custos(*keep, "worker", "--until-idle")
    assert ran["failed"] == [], ran
    times["fixity"], checked = custos(*keep, "fixity", "run", "--all")
    assert checked["damage"] == [], checked
    _, st = custos(*keep, "status")
    assert st["replication"]["safely_stored"] == 1 and st["seal_backlog"]["pending"] == 0, st
    times["total"] = times["deposit"] + times["worker"] + times["fixity"]
    return times


def s3(server: Any, bucket: str) -> dict[str, Any]:
    return {
        "kind": "s3",
        "endpoint_url": server.endpoint_url,
        "bucket": bucket,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "retention_days": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="small files in the bag")
    parser.add_argument("--large", type=int, default=8, help="files of 4 MiB in the bag")
    args = parser.parse_args()
    log(cpu_summary())
    base = Path(tempfile.mkdtemp(prefix="custos-multihost-"))
    pg = start_postgres(base / "pg")
    weed = start_seaweedfs(base / "weed")
    redis = start_redis(base / "redis")
    port = free_port()
    tsa_log = open(base / "tsa.log", "wb")  # noqa: SIM115
    tsa = subprocess.Popen(
        [CUSTOS, "tsa", "serve", "--dir", str(base / "tsa"), "--port", str(port)],
        stdout=tsa_log,
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while not (base / "tsa" / "root.pem").exists():
            if time.monotonic() > deadline or tsa.poll() is not None:
                raise SystemExit(
                    f"custos tsa serve did not start: {(base / 'tsa.log').read_text()}"
                )
            time.sleep(0.2)
        time.sleep(1.0)
        bag = make_bag(base / "source", args.files, args.large)
        tsa_settings = {
            "local": False,
            "urls": [f"http://127.0.0.1:{port}/"],
            "roots": [str(base / "tsa" / "root.pem")],
        }
        # Baseline: one host, a local storage root and a local replica folder.
        one = base / "one"
        one.mkdir()
        (one / "custos.toml").write_text(
            toml(
                {
                    "database_url": pg.url(pg.create_database()),
                    "fsync": False,
                    "tsa": tsa_settings,
                    "locations": {"second": {"kind": "local", "path": str(one / "replica")}},
                }
            )
        )
        single = (one / "data", one / "custos.toml")
        # Two hosts: an S3 primary, an S3 replica, Redis.
        database = pg.create_database()
        shared = {
            "database_url": pg.url(database),
            "fsync": False,
            "primary_location": "shared",
            "queue": {"backend": "redis", "redis_url": redis.url, "name": database},
            "tsa": tsa_settings,
            "locations": {"shared": s3(weed, "bench-primary"), "offsite": s3(weed, "bench-copy")},
        }
        hosts = []
        for name in ("a", "b"):
            folder = base / f"host-{name}"
            folder.mkdir()
            (folder / "custos.toml").write_text(toml(shared))
            hosts.append((folder / "data", folder / "custos.toml"))

        payload = sum(p.stat().st_size for p in (bag / "data").rglob("*") if p.is_file())
        log(f"bag: {args.files} x 4 KiB + {args.large} x 4 MiB ({payload / 2**20:.1f} MiB)")
        base_times = steps(single, single, bag)
        two_times = steps(hosts[0], hosts[1], bag)
        for data, _ in hosts:
            storage = data / "storage"
            left = [p for p in storage.rglob("*") if p.is_file()] if storage.exists() else []
            assert left == [], f"object files in a host's folder: {left[:3]}"
        log("")
        log(f"{'step':<10} {'one host (s)':>14} {'two hosts, S3 primary (s)':>27} {'ratio':>7}")
        for step in ("deposit", "worker", "fixity", "total"):
            b, t = base_times[step], two_times[step]
            log(f"{step:<10} {b:>14.2f} {t:>27.2f} {t / b:>6.2f}x")
        log("(ratio: two hosts' time / one host's; each step a whole command, start-up included)")
    finally:
        tsa.send_signal(signal.SIGTERM)
        tsa.wait(timeout=30)
        tsa_log.close()
        redis.stop()
        weed.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
