"""Profile a fixity cycle over many small files: CPU time per copy (one worker, in-process,
under cProfile), and one worker against two on the same SQLite catalog (CPU time of each
process, and the wall time each spent in catalog transactions, where two workers wait for
SQLite's single write lock).

CPU time, not wall time, is the measure: the machine these figures come from is shared, so
wall time mostly says how busy the neighbours were. The baseline, measured in the same run,
is reading and digesting the same files with sha256 in one Python loop (the least any cycle
must do).

Run (from the project folder)::

    .venv/bin/python bench/fixity_profile.py --small-files 5000
    .venv/bin/python bench/fixity_profile.py --small-files 5000 --top 30   # more of the profile
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import time
from pathlib import Path
from typing import Any

from common import Row, build_once, cache_dir, cpu_summary, log, median, run_workers
from sqlalchemy import text

from archive.config import Settings, load_settings
from archive.jobs import settle
from archive.services import open_services
from fixity.service import run_cycle
from ingest.service import ingest


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small-files", type=int, default=5000)
    parser.add_argument("--small-kib", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="profile lines to print")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    return parser.parse_args()


def make_bag(folder: Path, files: int, size: int, per_folder: int = 1000) -> None:
    """As bench/fixity.py makes its bags (that file's name shadows the package here)."""
    import bagit

    for i in range(files):
        path = folder / f"d{i // per_folder:04d}" / f"f{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    bagit.make_bag(str(folder), checksums=["sha512"], processes=2)


def archive_of(out: Path, bag: Path, files: int) -> Settings:
    def build(tmp: Path) -> None:
        settings = load_settings(
            data_dir=tmp, environ={}, overrides={"fsync": False, "identify_formats": False}
        )
        services = open_services(settings)
        try:
            ingest(services, bag, depositor="Custos benchmark", new_depositor=True)
        finally:
            services.close()

    data = build_once(cache_dir(out, f"fixity-profile-archive-{files}"), build)
    return load_settings(
        data_dir=data, environ={}, overrides={"fsync": False, "identify_formats": False}
    )


def reset(settings: Settings) -> None:
    """Make every copy due again, without touching anything else."""
    services = open_services(settings, recover=False)
    try:
        with services.session_scope() as session:
            session.execute(text("UPDATE fixity_coverage SET due_at = NULL"))
    finally:
        services.close()


def baseline_cpu(settings: Settings) -> tuple[float, int]:
    """CPU seconds to read and sha256 every content file in one loop; files read."""
    files = [p for p in settings.storage_path.rglob("*") if p.is_file() and "/content/" in str(p)]
    start = time.process_time()
    for p in files:
        with open(p, "rb") as fh:
            hashlib.sha256(fh.read()).hexdigest()
    return time.process_time() - start, len(files)


def profiled_cycle(settings: Settings, top: int) -> tuple[float, int, str]:
    """CPU seconds of one in-process cycle (the profiler's own overhead excluded by timing a
    second, unprofiled cycle), copies checked, and the profile's top lines."""
    services = open_services(settings, recover=False)
    settle()  # as `custos worker` does once started
    try:
        reset(settings)
        start = time.process_time()
        checked = run_cycle(services, full=False).checked
        cpu = time.process_time() - start
        reset(settings)
        prof = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
        prof.enable()
        run_cycle(services, full=False)
        prof.disable()
    finally:
        services.close()
    buffer = io.StringIO()
    stats = pstats.Stats(prof, stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return cpu, checked, buffer.getvalue()


def _worker(settings: Settings, name: str, barrier: Any, queue: Any) -> None:
    from sqlalchemy import event

    services = open_services(settings, recover=False)
    settle()
    in_tx = [0.0]
    began: list[float] = []

    @event.listens_for(services.engine, "begin")
    def _begin(conn: Any) -> None:
        began.append(time.perf_counter())

    @event.listens_for(services.engine, "commit")
    def _commit(conn: Any) -> None:
        if began:
            in_tx[0] += time.perf_counter() - began.pop()

    try:
        barrier.wait()
        cpu0 = time.process_time()
        checked = run_cycle(services, full=False, worker=name).checked
        queue.put((time.process_time() - cpu0, in_tx[0], checked))
    finally:
        services.close()


def workers_cycle(settings: Settings, workers: int) -> tuple[float, float, int]:
    """Summed CPU seconds of the workers' cycles, summed wall seconds inside catalog
    transactions, copies checked."""
    reset(settings)
    done = run_workers(_worker, (settings,), workers)
    return sum(d[0] for d in done), sum(d[1] for d in done), sum(d[2] for d in done)


def main() -> None:
    args = parse_args()
    log(cpu_summary())
    log("load average at start: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    bag = build_once(
        cache_dir(args.out, f"fixity-small-{args.small_files}x{args.small_kib}KiB"),
        lambda tmp: make_bag(tmp, args.small_files, args.small_kib * 1024),
    )
    settings = archive_of(args.out, bag, args.small_files)
    workers_cycle(settings, 1)  # the first cycle (both digests), untimed
    base_runs, one_runs = [], []
    profile = ""
    checked = 0
    for _ in range(args.repeat):
        base_runs.append(baseline_cpu(settings)[0])
        cpu, checked, profile = profiled_cycle(settings, args.top)
        one_runs.append(cpu)
    log(profile)
    base = median(base_runs)
    one = median(one_runs)
    log(f"one worker, in-process: {checked} copies, {one:.2f} s CPU "
        f"({one / checked * 1e6:.0f} us per copy); baseline {base:.2f} s CPU")  # fmt: skip
    pairs = []
    for _ in range(args.repeat):
        c1, t1, n1 = workers_cycle(settings, 1)
        c2, t2, n2 = workers_cycle(settings, 2)
        assert n1 == n2 == checked, (n1, n2, checked)
        pairs.append((c1, t1, c2, t2))
        log(f"  1 worker: {c1:.2f} s CPU, {t1:.2f} s in transactions; "
            f"2 workers: {c2:.2f} s CPU, {t2:.2f} s in transactions")  # fmt: skip
    rows = [
        Row(f"{checked} copies, 1 worker, CPU", "sqlite", f"{base:.2f} s (read + sha256 loop)",
            f"{one:.2f} s", base / one),
        Row(f"{checked} copies, 2 workers vs 1, CPU", "sqlite",
            f"{median([p[0] for p in pairs]):.2f} s (1 worker)",
            f"{median([p[2] for p in pairs]):.2f} s (2 workers, summed)",
            median([p[0] for p in pairs]) / median([p[2] for p in pairs])),
        Row(f"{checked} copies, 2 workers vs 1, in transactions", "sqlite",
            f"{median([p[1] for p in pairs]):.2f} s (1 worker)",
            f"{median([p[3] for p in pairs]):.2f} s (2 workers, summed)",
            median([p[1] for p in pairs]) / median([p[3] for p in pairs])),
    ]  # fmt: skip
    log("\ncase | catalog | baseline | Custos | ratio (baseline / Custos: higher is better)")
    for r in rows:
        log(f"{r.case} | {r.catalog} | {r.baseline} | {r.custos} | {r.ratio:.2f}x")


if __name__ == "__main__":
    main()
