"""Benchmark: ingest of a bag of a few large files, against ``sha512sum`` over its payload.

Measures the wall time of ``ingest.service.ingest()`` (receive with sha512 + sha256, bag
validation, OCFL object, catalog commit; format identification is not part of it) for a bag
of 4 payload files of 512 MiB of random bytes, as payload MB/s (10**6 bytes). The baseline,
measured in the same run, is ``sha512sum`` over the same 4 payload files (one process, wall
time). The page cache is dropped before every timed run (results say "warm" if it cannot be).
Each run uses a fresh data folder and catalog; both catalogs are measured: SQLite (the
embedded default) and PostgreSQL. The median of ``--repeat`` runs is reported.

Target: custos MB/s / sha512sum MB/s >= 1.0x.

Run (as root, from the project folder; the first run writes the random payload once into
``bench/out/cache``, which later runs reuse)::

    .venv/bin/python bench/ingest_large.py
    .venv/bin/python bench/ingest_large.py --files 4 --mib 16 --repeat 2   # quick check
    .venv/bin/python bench/ingest_large.py --postgres-url postgresql+psycopg://custos@HOST/postgres
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import bagit
from common import (
    PageCache,
    Row,
    add_common_args,
    build_once,
    cache_dir,
    cpu_summary,
    fmt_secs,
    ingest_once,
    interleave,
    log,
    median,
    print_table,
    run_catalogs,
    timed,
)

MIB = 1024 * 1024
WRITE_CHUNK = 16 * MIB
TARGET = 1.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=4, help="payload files")
    parser.add_argument("--mib", type=int, default=512, help="MiB per payload file")
    add_common_args(parser)
    return parser.parse_args()


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(WRITE_CHUNK, left))
            fh.write(chunk)
            left -= len(chunk)


def make_bag(folder: Path, files: int, size: int) -> None:
    for i in range(files):
        write_random(folder / f"payload-{i:03d}.bin", size)
    log(f"hashing {files} x {size // MIB} MiB into a BagIt bag (sha512) ...")
    bagit.make_bag(str(folder), checksums=["sha512"], processes=min(files, os.cpu_count() or 1))


def prepare_bag(out: Path, files: int, mib: int) -> Path:
    name = f"large-{files}x{mib}MiB"
    log(f"bag {name}: making it if it is not cached yet")
    return build_once(cache_dir(out, name), lambda tmp: make_bag(tmp, files, mib * MIB))


def payload_files(bag: Path) -> list[Path]:
    return sorted(p for p in (bag / "data").rglob("*") if p.is_file())


def sha512sum_secs(paths: list[Path], cache: PageCache) -> float:
    cache.drop()
    cmd = ["sha512sum", *map(str, paths)]
    secs, _ = timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))
    return secs


def mbps(nbytes: int, secs: float) -> float:
    return nbytes / secs / 1e6


def main() -> None:
    args = parse_args()
    log(cpu_summary())
    bag = prepare_bag(args.out, args.files, args.mib)
    paths = payload_files(bag)
    nbytes = sum(p.stat().st_size for p in paths)
    assert len(paths) == args.files and nbytes == args.files * args.mib * MIB, "stale cache?"
    case = f"{args.files} x {args.mib} MiB"
    cache = PageCache()

    def measure(catalog: str, admin_url: str | None) -> Row:
        def custos() -> float:
            secs, result = ingest_once(args.out, catalog, admin_url, bag, cache)
            assert result.payload_bytes == nbytes, result.as_dict()
            return secs

        samples = interleave(args.repeat, lambda: sha512sum_secs(paths, cache), custos, catalog)
        log(f"  [{catalog}] sha512sum: {fmt_secs(samples.baseline)}")
        log(f"  [{catalog}] custos:    {fmt_secs(samples.custos)}")
        base = mbps(nbytes, median(samples.baseline))
        ours = mbps(nbytes, median(samples.custos))
        return Row(case, catalog, f"{base:.0f} MB/s (sha512sum)", f"{ours:.0f} MB/s", ours / base)

    rows = run_catalogs(args, case, measure)
    log(f"\ningest of {case} ({nbytes / 1e6:.0f} MB payload), median of {args.repeat} runs")
    log(cpu_summary())
    print_table(rows, TARGET, cache)


if __name__ == "__main__":
    main()
