"""Benchmark: a deposit of protected-identity files stored encrypted, beside the same deposit
stored plain; and a full fixity cycle over each.

The bag holds ``--files`` payload files of ``--mib`` MiB of random bytes, every one declared
protected-identity. Each round ingests it twice into fresh data folders (SQLite catalog, no
format identification): once with no tier key (stored plain), once after ``custos keys
init`` (stored encrypted, ingest/sealing.py), then runs a full fixity cycle over each. The
page cache is dropped before every timed run where it can be (results say "warm" if not).
The ratio is plain time over encrypted time (1.0x: encryption costs nothing).

Run (as root, from the project folder)::

    .venv/bin/python bench/sealed_ingest.py                    # 4 x 256 MiB, 3 rounds
    .venv/bin/python bench/sealed_ingest.py --files 2 --mib 32 --repeat 1   # quick check
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import bagit
from common import PageCache, cpu_summary, log, median

from access.keys.service import init_key
from archive.config import load_settings
from archive.services import open_services
from fixity.service import run_cycle
from ingest.service import ingest


def _bag(folder: Path, files: int, mib: int) -> Path:
    data = folder / "bag"
    (data / "testimonies").mkdir(parents=True)
    for i in range(files):
        with open(data / "testimonies" / f"statement-{i}.bin", "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1024 * 1024))
    bagit.make_bag(
        str(data),
        {
            "Access-Tier": "protected-identity",
            "Access-Legal-Basis": "Protective measures order (benchmark)",
        },
        checksums=["sha512"],
    )
    return data


def _round(bag: Path, out: Path, *, sealed: bool, cache: PageCache) -> tuple[float, float]:
    data = Path(tempfile.mkdtemp(prefix="sealed-" if sealed else "plain-", dir=out))
    settings = load_settings(
        data_dir=data, environ={}, overrides={"identify_formats": False, "fsync": False}
    )
    services = open_services(settings)
    try:
        if sealed:
            with services.session_scope() as session:
                init_key(
                    session,
                    tier="protected-identity",
                    shares=3,
                    threshold=2,
                    by="benchmark",
                    hand_out=lambda _: None,
                )
        cache.drop()
        start = time.perf_counter()
        ingest(services, bag, depositor="Benchmark", new_depositor=True)
        ingested = time.perf_counter() - start
        cache.drop()
        start = time.perf_counter()
        report = run_cycle(services, full=True)
        checked = time.perf_counter() - start
        assert report.ok and not report.damage, report
        return ingested, checked
    finally:
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cache = PageCache()
    out = Path(__file__).resolve().parent / "out" / "sealed-ingest"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        bag = _bag(Path(tmp), args.files, args.mib)
        plain: list[tuple[float, float]] = []
        sealed: list[tuple[float, float]] = []
        for n in range(args.repeat):
            log(f"round {n + 1} of {args.repeat}")
            plain.append(_round(bag, Path(tmp), sealed=False, cache=cache))
            sealed.append(_round(bag, Path(tmp), sealed=True, cache=cache))
        mb = args.files * args.mib * 1024 * 1024 / 1e6
        log(f"\n{args.files} x {args.mib} MiB protected-identity files; {cpu_summary()}")
        log(f"  {'case':8} {'plain MB/s':>11} {'encrypted MB/s':>15} {'ratio':>6}  cache")
        for i, case in enumerate(("ingest", "fixity")):
            p = median([r[i] for r in plain])
            s = median([r[i] for r in sealed])
            log(f"  {case:8} {mb / p:11.1f} {mb / s:15.1f} {p / s:5.2f}x  {cache.label}")


if __name__ == "__main__":
    main()
