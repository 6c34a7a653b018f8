"""Benchmark: ingest of a bag of many small files, against bagit-python's own validation.

Measures the files per second of ``ingest.service.ingest()`` with ``workers=2`` (the default;
receive with sha512 + sha256, bag validation, OCFL object, catalog commit; format
identification is not part of it) for a bag of 50,000 payload files of 4 KiB of random bytes,
100 files per folder in nested folders. The baseline, measured in the same run on the same
bag, is ``bagit.Bag(path).validate(processes=2)`` (bagit-python, two processes), also in
files per second. The page cache is dropped before every timed run (results say "warm" if it
cannot be). Each run uses a fresh data folder and catalog; both catalogs are measured: SQLite
(the embedded default) and PostgreSQL. The median of ``--repeat`` runs is reported.

Target: custos files/s / bagit validate files/s >= 2.0x.

Run (as root, from the project folder; the first run makes the bag once into
``bench/out/cache``, which later runs reuse)::

    .venv/bin/python bench/ingest_small.py
    .venv/bin/python bench/ingest_small.py --files 2000 --repeat 2   # quick check
    .venv/bin/python bench/ingest_small.py --postgres-url postgresql+psycopg://custos@HOST/postgres
"""

from __future__ import annotations

import argparse
import os
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

PER_FOLDER = 100
WORKERS = 2
TARGET = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=50_000, help="payload files")
    parser.add_argument("--kib", type=int, default=4, help="KiB per payload file")
    add_common_args(parser)
    return parser.parse_args()


def relative_path(i: int) -> Path:
    """100 files per folder, 100 folders per group: g00/d00/f000000.bin."""
    folder = i // PER_FOLDER
    return Path(f"g{folder // 100:02d}", f"d{folder % 100:02d}", f"f{i:06d}.bin")


def make_bag(folder: Path, files: int, size: int) -> None:
    made: set[Path] = set()
    for i in range(files):
        path = folder / relative_path(i)
        if path.parent not in made:
            path.parent.mkdir(parents=True)
            made.add(path.parent)
        path.write_bytes(os.urandom(size))
    log(f"hashing {files} files into a BagIt bag (sha512) ...")
    bagit.make_bag(str(folder), checksums=["sha512"], processes=os.cpu_count() or 1)


def prepare_bag(out: Path, files: int, kib: int) -> Path:
    name = f"small-{files}x{kib}KiB"
    log(f"bag {name}: making it if it is not cached yet")
    return build_once(cache_dir(out, name), lambda tmp: make_bag(tmp, files, kib * 1024))


def count_payload(bag: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(bag / "data"))


def bagit_validate_secs(bag: Path, cache: PageCache) -> float:
    cache.drop()
    secs, _ = timed(lambda: bagit.Bag(str(bag)).validate(processes=2))
    return secs


def main() -> None:
    args = parse_args()
    log(cpu_summary())
    bag = prepare_bag(args.out, args.files, args.kib)
    assert count_payload(bag) == args.files, "stale cache?"
    case = f"{args.files} x {args.kib} KiB"
    cache = PageCache()

    def measure(catalog: str, admin_url: str | None) -> Row:
        def custos() -> float:
            secs, result = ingest_once(args.out, catalog, admin_url, bag, cache, workers=WORKERS)
            assert result.payload_files == args.files, result.as_dict()
            return secs

        samples = interleave(args.repeat, lambda: bagit_validate_secs(bag, cache), custos, catalog)
        log(f"  [{catalog}] bagit validate: {fmt_secs(samples.baseline)}")
        log(f"  [{catalog}] custos:         {fmt_secs(samples.custos)}")
        base = args.files / median(samples.baseline)
        ours = args.files / median(samples.custos)
        return Row(
            case,
            catalog,
            f"{base:.0f} files/s (bagit validate, 2 processes)",
            f"{ours:.0f} files/s (workers={WORKERS})",
            ours / base,
        )

    rows = run_catalogs(args, case, measure)
    log(f"\ningest of {case} in nested folders, median of {args.repeat} runs")
    log(cpu_summary())
    print_table(rows, TARGET, cache)


if __name__ == "__main__":
    main()
