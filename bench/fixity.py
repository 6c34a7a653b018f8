"""Benchmark: fixity cycles against raw sequential reads of the same files.

Cases, each measured in the same run on the same data (the page cache is dropped before every
cold run; results say "warm" if it cannot be):

1. cold, local: a full fixity cycle over the primary storage root with two worker processes
   (each ``fixity.service.run_cycle(full=True)`` on its own catalog connection; claims split
   the work) against ``cat`` of the same content files to /dev/null. Target >= 0.8x.
2. warm, local: two workers against one worker, same cycle. Target >= 1.6x.
3. the S3 path beside the local path: one worker's cycle over an S3 replica (SeaweedFS on
   127.0.0.1, started and stopped here) and over the local primary, warm.
4. files/s of a two-worker cycle over 100,000 small files (cold), beside ``cat``'s: reported.

Routine cycles recompute sha256 only (policies/fixity.toml): an untimed first cycle, which
reads every copy with sha512 and sha256, runs before the timed ones. The catalog is SQLite
(the embedded default; the archive is made once and reused), or with ``--catalog postgres``
a throwaway PostgreSQL server (the scale-out set-up; the archive is ingested afresh); with
``--catalog both``, each case on each, their runs taking turns within every round, so that
both meet the same disk (whose speed here changes from minute to minute).

Run (as root, from the project folder)::

    .venv/bin/python bench/fixity.py
    .venv/bin/python bench/fixity.py --large-mib 256 --small-files 10000   # quick check
    .venv/bin/python bench/fixity.py --catalog postgres
    .venv/bin/python bench/fixity.py --catalog both --no-s3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    PageCache,
    Row,
    build_once,
    cache_dir,
    cpu_summary,
    fresh_database,
    fresh_dir,
    log,
    median,
    postgres_admin_url,
    print_table,
    run_workers,
    timed,
)
from sqlalchemy import text

from archive.config import Settings, load_settings
from archive.jobs import settle
from archive.services import open_services
from fixity.replication import replicate
from fixity.service import run_cycle
from ingest.service import ingest

MIB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--large-mib", type=int, default=2048, help="MiB in the large bag")
    parser.add_argument("--large-files", type=int, default=8, help="files in the large bag")
    parser.add_argument("--small-files", type=int, default=100_000)
    parser.add_argument("--small-kib", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 case")
    parser.add_argument(
        "--catalog",
        choices=["sqlite", "postgres", "both"],
        default="sqlite",
        help="both: each case on each catalog, their runs taking turns (same disk conditions)",
    )
    return parser.parse_args()


def make_bag(folder: Path, files: int, size: int, per_folder: int = 1000) -> None:
    import bagit

    for i in range(files):
        path = folder / f"d{i // per_folder:04d}" / f"f{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            left = size
            while left:
                n = min(left, 16 * MIB)
                fh.write(os.urandom(n))
                left -= n
    bagit.make_bag(str(folder), checksums=["sha512"], processes=2)


def archive_of(
    stack: ExitStack, out: Path, name: str, bag: Path, admin_url: str | None
) -> Settings:
    """A data folder holding the bag as one package: on SQLite made once and reused; on
    PostgreSQL (``admin_url``) ingested into a fresh folder and database, both removed when
    ``stack`` closes."""

    def build(tmp: Path, overrides: dict[str, Any]) -> None:
        settings = load_settings(data_dir=tmp, environ={}, overrides=overrides)
        services = open_services(settings)
        try:
            log(f"ingesting {bag.name} ...")
            ingest(services, bag, depositor="Custos benchmark", new_depositor=True)
        finally:
            services.close()

    overrides: dict[str, Any] = {"fsync": False, "identify_formats": False}
    if admin_url is None:
        data = build_once(cache_dir(out, name), lambda tmp: build(tmp, overrides))
    else:
        data = stack.enter_context(fresh_dir(out, "pg-"))
        overrides["database_url"] = stack.enter_context(fresh_database(admin_url))
        build(data, overrides)
    return load_settings(data_dir=data, environ={}, overrides=overrides)


def _worker(settings: Settings, name: str, barrier: Any, queue: Any) -> None:
    services = open_services(settings, recover=False)
    settle()  # as `custos worker` does once started
    try:
        # A worker is a long-lived process: its first statements (connection, compiled
        # statement cache) are not timed; after the untimed first cycle nothing is due.
        run_cycle(services, worker=name)
        barrier.wait()  # process start-up and imports are not timed
        start = time.time()
        report = run_cycle(services, full=True, worker=name)
        queue.put((start, time.time(), report.checked, report.bytes_read))
    finally:
        services.close()


def cycle(settings: Settings, workers: int) -> tuple[float, int]:
    """Wall time of a full cycle split between ``workers`` processes (from the moment all are
    ready to the last one's end); copies checked."""
    done = run_workers(_worker, (settings,), workers)
    if workers > 1:  # how the claims shared the work out
        log("    " + "; ".join(f"{d[2]} copies, {d[3] / MIB:.0f} MiB" for d in done))
    return max(d[1] for d in done) - min(d[0] for d in done), sum(d[2] for d in done)


def content_files(settings: Settings) -> list[str]:
    return [
        str(p) for p in settings.storage_path.rglob("*") if p.is_file() and "/content/" in str(p)
    ]


def cat_secs(files: list[str]) -> float:
    secs, _ = timed(
        lambda: subprocess.run(
            ["xargs", "-0", "cat"],
            input="\0".join(files).encode(),
            stdout=subprocess.DEVNULL,
            check=True,
        )
    )
    return secs


Case = tuple[str, Settings, list[str]]  # catalog, archive, its content files
Timer = Callable[[Settings, list[str]], float]


def take_turns(
    cases: list[Case], repeat: int, label: str, first: tuple[str, Timer], then: tuple[str, Timer]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds of ``first`` and of ``then`` on each case, ``repeat`` rounds. With several
    catalogs, their runs take turns within each round: the disk's speed, which changes from
    minute to minute here, is then the same for all."""
    a: dict[str, list[float]] = {c: [] for c, _, _ in cases}
    b: dict[str, list[float]] = {c: [] for c, _, _ in cases}
    for i in range(repeat):
        for catalog, settings, files in cases:
            a[catalog].append(first[1](settings, files))
            b[catalog].append(then[1](settings, files))
            log(f"  {label} run {i + 1}, {catalog}: {first[0]} {a[catalog][-1]:.2f}s, "
                f"{then[0]} {b[catalog][-1]:.2f}s")  # fmt: skip
    return a, b


def main() -> None:
    args = parse_args()
    catalogs = ["sqlite", "postgres"] if args.catalog == "both" else [args.catalog]
    with ExitStack() as stack:
        admin = stack.enter_context(postgres_admin_url(None, "postgres" in catalogs))
        run(args, catalogs, stack, admin)


def archives(
    stack: ExitStack, out: Path, name: str, bag: Path, catalogs: list[str], admin: str | None
) -> list[Case]:
    """Per catalog: the archive holding ``bag`` and its content files."""
    made = []
    for catalog in catalogs:
        settings = archive_of(stack, out, name, bag, admin if catalog == "postgres" else None)
        made.append((catalog, settings, content_files(settings)))
    return made


def run(args: argparse.Namespace, catalogs: list[str], stack: ExitStack, admin: str | None) -> None:
    log(cpu_summary())
    cache = PageCache()
    rows: list[Row] = []
    size = args.large_mib * MIB // args.large_files
    big_bag = build_once(
        cache_dir(args.out, f"fixity-large-{args.large_mib}MiB"),
        lambda tmp: make_bag(tmp, args.large_files, size),
    )
    large = archives(
        stack, args.out, f"fixity-archive-{args.large_mib}MiB", big_bag, catalogs, admin
    )
    for catalog, settings, files in large:
        total = sum(os.path.getsize(f) for f in files)
        log(f"large, {catalog}: {len(files)} content files, {total / MIB:.0f} MiB; first cycle")
        if total <= 2 * settings.fixity.batch_bytes:
            log(f"  WARNING: one claim takes up to {settings.fixity.batch_bytes // MIB} MiB: the "
                f"large bag is too small to share out between two workers, and its two-worker "
                f"rows mean nothing (use --large-mib 1024 or more)")  # fmt: skip
        cycle(settings, 2)

    def cold_cat(settings: Settings, files: list[str]) -> float:
        cache.drop()
        return cat_secs(files)

    def cold_cycle(settings: Settings, files: list[str]) -> float:
        cache.drop()
        return cycle(settings, 2)[0]

    cats, twos = take_turns(
        large, args.repeat, "cold", ("cat", cold_cat), ("two workers", cold_cycle)
    )
    for catalog, _, files in large:
        total = sum(os.path.getsize(f) for f in files)
        base = total / median(cats[catalog]) / 1e6
        ours = total / median(twos[catalog]) / 1e6
        rows.append(Row("cycle, 2 workers, cold", catalog, f"{base:.0f} MB/s (cat)",
                        f"{ours:.0f} MB/s", ours / base))  # fmt: skip

    for _, _, files in large:
        cat_secs(files)  # warm the cache
    ones, twos = take_turns(
        large,
        args.repeat,
        "warm",
        ("one worker", lambda settings, _: cycle(settings, 1)[0]),
        ("two", lambda settings, _: cycle(settings, 2)[0]),
    )
    for catalog, _, files in large:
        total = sum(os.path.getsize(f) for f in files)
        one = total / median(ones[catalog]) / 1e6
        two = total / median(twos[catalog]) / 1e6
        rows.append(Row("cycle, 2 vs 1 worker, warm", catalog, f"{one:.0f} MB/s (1 worker)",
                        f"{two:.0f} MB/s (2 workers)", two / one,
                        target=1.6, warm=True))  # fmt: skip
    total = sum(os.path.getsize(f) for f in large[0][2])

    if not args.no_s3:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.servers import start_seaweedfs
        from tests.unit.fixity.conftest import s3_settings

        server = start_seaweedfs(Path(tempfile.gettempdir()) / "custos-bench")
        try:
            with fresh_dir(args.out, "s3-") as data:
                s3 = load_settings(
                    data_dir=data,
                    environ={},
                    overrides={
                        "fsync": False,
                        "identify_formats": False,
                        "locations": {"offsite": s3_settings(server, read_timeout=120.0)},
                    },
                )
                services = open_services(s3)
                try:
                    ingest(services, big_bag, depositor="Custos benchmark", new_depositor=True)
                    assert replicate(services).ok
                    run_cycle(services, full=True)  # the first, with both digests
                    rates = {}
                    for name in ("primary", "offsite"):
                        # one location at a time: the other's copies are left checked
                        with services.session_scope() as session:
                            session.execute(
                                text(
                                    "UPDATE fixity_coverage SET last_checked_at = CASE "
                                    "WHEN location_id = (SELECT id FROM storage_locations "
                                    "WHERE name = :n) THEN :past ELSE :future END"
                                ),
                                {
                                    "past": datetime.now(UTC) - timedelta(days=1),
                                    "future": datetime.now(UTC) + timedelta(days=1),
                                    "n": name,
                                },
                            )
                        secs, _ = timed(lambda: run_cycle(services, full=True))
                        rates[name] = total / secs / 1e6
                        log(f"  S3 case, {name} copies, 1 worker, warm: {secs:.2f}s")
                finally:
                    services.close()
            rows.append(Row("S3 path beside local, 1 worker, warm", "sqlite",
                            f"{rates['primary']:.0f} MB/s (local)",
                            f"{rates['offsite']:.0f} MB/s (S3)",
                            rates["offsite"] / rates["primary"],
                            warm=True, reported_only=True))  # fmt: skip
        finally:
            server.stop()

    small_bag = build_once(
        cache_dir(args.out, f"fixity-small-{args.small_files}x{args.small_kib}KiB"),
        lambda tmp: make_bag(tmp, args.small_files, args.small_kib * 1024),
    )
    small = archives(
        stack, args.out, f"fixity-small-archive-{args.small_files}", small_bag, catalogs, admin
    )
    for _, settings, _ in small:
        cycle(settings, 2)
    cats, twos = take_turns(
        small, args.repeat, "small", ("cat", cold_cat), ("two workers", cold_cycle)
    )
    for catalog, _, files in small:
        base = len(files) / median(cats[catalog])
        ours = len(files) / median(twos[catalog])
        # Reported: the 0.8x target is one of throughput (large files); this case gives files/s.
        rows.append(Row(f"{len(files)} small files, 2 workers, cold", catalog,
                        f"{base:.0f} files/s (cat)", f"{ours:.0f} files/s",
                        ours / base, reported_only=True))  # fmt: skip
    log("\nfixity cycles (full, sha256), medians")
    print_table(rows, 0.8, cache)
    log("targets: cold 2 workers vs cat >= 0.8x; warm 2 vs 1 worker >= 1.6x; S3 and small files: "
        "reported")  # fmt: skip


if __name__ == "__main__":
    main()
