"""Benchmark: the fixity seed's memory and time as the archive grows (issue 17: 50 million files).

A catalog of N copies is made with bulk SQL, rows only (no object is stored): packages of 45
content files each, with an inventory, its sidecar and the object declaration registered
(``stored_files``) and the root inventory and sidecar, all held at the primary and at one
replica location (``offsite``, version 1, read back), every package with an access assignment
(every other one a protected-identity folder too) and a replication plan by tier, and 100 of
the custody log's files: 100 copies a package. It runs on PostgreSQL 15 started as
``tests/servers.py`` starts the tests' server (fsync off: the figures are the seed's, not the
disk's), in a fresh database.

Measured, each in a new process (``fixity.seed.seed`` in one transaction, committed, as a
cycle's start runs it):

1. the first seed: every copy's coverage row is missing and inserted;
2. a seed when every row is there (every cycle's start after the first): nothing to add,
   every row read and compared; the coverage table is vacuumed and analysed first, as
   autovacuum soon does after the first seed (the statistics change the plans);
3. with ``--former`` (the default up to 2,000,000 copies), the seed as it was before it read
   the catalog a page at a time (the reference kept in ``tests/unit/fixity/test_seed.py``),
   in case 2's state.

Memory is the process's peak resident set size during the call less its resident size just
before it (Linux: the peak is reset through ``/proc/self/clear_refs`` and read as ``VmHWM``),
so it counts everything the call made the process hold: Python objects and the driver's
buffers alike (``tracemalloc`` would miss libpq's result buffers).

Baselines, measured in the same run on the same catalog, each in a new process:

- memory: holding the ids of the N coverage rows in a Python list (``SELECT id``, fetched):
  the least any seed that holds one thing per copy needs. A seed whose memory is bounded
  falls further below it as N grows (the ratio falls); one that holds every row keeps a
  ratio above 1 (the former seed, about 20 times it).
- time: streaming every row a seed must read (the files, the stored files, the packages and
  the coverage rows, the columns the seed reads) through a server-side cursor, doing nothing
  with them: a seed reads each of those rows at least once, so no seed in Python is faster
  than that. The ratio says what the seed's comparisons and writes cost above the reading.

Run (as root: PostgreSQL is started as the postgres user), from the project folder::

    .venv/bin/python bench/scale.py                          # 10,000,000 copies
    .venv/bin/python bench/scale.py --copies 200000 --copies 2000000
    .venv/bin/python bench/scale.py --copies 200000 --batch 1000

Disk: about 0.7 GB per million copies (catalog rows and indexes), in the server's folder
under ``--pg-dir`` (default: the temporary folder).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import DEFAULT_OUT, PROJECT_DIR, cpu_summary, log
from sqlalchemy import create_engine, text

FILES_PER_PACKAGE = 45
#: Copies of one package: its content files, inventory, sidecar, declaration and root
#: inventory and sidecar, at the primary and at the replica location.
COPIES_PER_PACKAGE = 2 * (FILES_PER_PACKAGE + 3 + 2)
LOG_FILES = 100
MIB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--copies",
        type=int,
        action="append",
        help="copies in the catalog (repeat for several sizes; default 10,000,000)",
    )
    parser.add_argument("--batch", type=int, default=0, help="the seed's page (default: its own)")
    parser.add_argument(
        "--former",
        choices=["auto", "yes", "no"],
        default="auto",
        help="also run the former whole-catalog seed (auto: up to 2,000,000 copies)",
    )
    parser.add_argument(
        "--heap",
        action="store_true",
        help="also measure the peak of Python objects (tracemalloc) of a seed with every row "
        "there (slower: each allocation is traced)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="scratch folder")
    parser.add_argument(
        "--pg-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the PostgreSQL server's folder is made (removed afterwards)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


# --- the catalog, in bulk ------------------------------------------------------------------


def populate(url: str, packages: int) -> None:
    """``packages`` packages of FILES_PER_PACKAGE content files and their other rows."""
    engine = create_engine(url)
    k = FILES_PER_PACKAGE
    steps = [
        "INSERT INTO depositors (name, created_at) VALUES ('Custos benchmark', now())",
        "INSERT INTO storage_locations (name, kind, uri, created_at) "
        "VALUES ('offsite', 'local', 'file:///offsite', now())",
        "INSERT INTO deposits (id, depositor_id, source_name, received_at, stored_at, "
        "bagit_version, fingerprint, payload_files, payload_bytes) "
        f"SELECT 'd' || g, 1, 'bench', now(), now(), '1.0', 'fp' || g, {k}, {k * 1000} "
        f"FROM generate_series(1, {packages}) g",
        # UUIDs in no particular order, as ingest's uuid4 ids are
        "INSERT INTO packages (id, deposit_id, depositor_id, title, created_at, head, "
        "object_path) SELECT 'urn:uuid:' || md5(g::text)::uuid, 'd' || g, 1, '', now(), 1, "
        f"'obj/' || g FROM generate_series(1, {packages}) g",
        "INSERT INTO versions (package_id, number, created_at, message, agent, "
        "inventory_sha512) SELECT id, 1, now(), '', 'bench', repeat('a', 128) FROM packages",
        # one package after another, as ingest writes them
        "INSERT INTO files (package_id, version, logical_path, content_path, role, size, "
        "sha512, sha256) SELECT p.id, 1, 'bag/data/f' || lpad(f::text, 5, '0') || '.bin', "
        "'v1/content/bag/data/f' || lpad(f::text, 5, '0') || '.bin', 'payload', 1000, "
        "md5(p.id || f) || repeat('a', 96), md5(p.id || f) || repeat('b', 32) "
        f"FROM packages p CROSS JOIN generate_series(1, {k}) f ORDER BY p.deposit_id, f",
        "INSERT INTO stored_files (package_id, path, kind, version, size, sha512, sha256, "
        "added_at) SELECT p.id, s.path, s.kind, 1, 100, repeat('c', 128), repeat('d', 64), "
        "now() FROM packages p CROSS JOIN (VALUES ('v1/inventory.json', 'inventory'), "
        "('v1/inventory.json.sha512', 'sidecar'), ('0=ocfl_object_1.1', 'declaration')) "
        "AS s(path, kind)",
        "INSERT INTO replicas (package_id, location_id, version, status, stored_at, "
        "verified_at) SELECT id, 1, 1, 'verified', now(), now() FROM packages",
        "INSERT INTO access_assignments (package_id, path, tier, legal_basis, sunset_basis) "
        "SELECT id, '', 'restricted', 'bench', '' FROM packages",
        "INSERT INTO access_assignments (package_id, path, tier, legal_basis, sunset_basis) "
        "SELECT id, 'data/f00001.bin', 'protected-identity', 'bench', '' FROM packages "
        "WHERE deposit_id LIKE '%0' OR deposit_id LIKE '%2' OR deposit_id LIKE '%4' "
        "OR deposit_id LIKE '%6' OR deposit_id LIKE '%8'",
        "INSERT INTO replication_plans (package_id, tier, copies, locations, shortfall, "
        "policy, planned_at, tier_locations) SELECT id, 'restricted', 2, 'offsite', 0, "
        '\'bench\', now(), \'{"files": {"offsite": '
        f"{k}"
        '}, "tiers": {"protected-identity": ["offsite"], "restricted": ["offsite"]}}\' '
        "FROM packages",
        "INSERT INTO log_files (path, kind, size, sha512, sha256, added_at) "
        "SELECT 'extensions/custos-custody-log/c' || g || '.json', 'checkpoint', 100, "
        f"repeat('e', 128), repeat('f', 64), now() FROM generate_series(1, {LOG_FILES}) g",
    ]
    with engine.begin() as conn:
        for sql in steps:
            conn.execute(text(sql))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def analyze(url: str) -> None:
    engine = create_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE fixity_coverage"))
    engine.dispose()


# --- measurements, each in a new process ---------------------------------------------------


def rss() -> int:
    """Resident set size now, in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets the peak resident set size (VmHWM)
        return True
    except OSError:
        return False


def peak() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(mode: str, url: str, data_dir: Path, batch: int) -> dict[str, Any]:
    from archive.config import load_settings
    from archive.services import open_services
    from fixity import sweep
    from fixity.policy import fixity_policy

    settings = load_settings(data_dir=data_dir, environ={}, overrides={"database_url": url})
    services = open_services(settings)
    policy = fixity_policy(settings)
    at = datetime.now(UTC)
    pages = {"batch": batch} if batch else {}
    former = None
    if mode == "former":
        sys.path.insert(0, str(PROJECT_DIR))
        from tests.unit.fixity.test_seed import reference_seed

        former = reference_seed
    with services.engine.connect() as conn:  # a connection in the pool, as a worker has
        conn.execute(text("SELECT 1"))
    gc.collect()
    before = rss()
    exact = reset_peak()
    start = time.perf_counter()
    result: Any = None
    if mode == "heap":
        import tracemalloc

        tracemalloc.start()
        with services.session_scope() as session:
            result = sweep.seed(session, policy, services.store.uri, at, **pages)
        heap = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        secs = time.perf_counter() - start
        services.close()
        return {"secs": secs, "bytes": heap, "result": result, "exact_peak": exact}
    if mode in ("seed", "former"):
        with services.session_scope() as session:
            if former is not None:
                result = former(session, policy, services.store.uri, at)
            else:
                result = sweep.seed(session, policy, services.store.uri, at, **pages)
    elif mode == "ids":
        with services.engine.connect() as conn:
            result = conn.execute(text("SELECT id FROM fixity_coverage")).scalars().all()
        result = len(result)
    elif mode == "read":
        result = 0
        with services.engine.connect() as conn:
            for sql in (
                "SELECT package_id, content_path, version, logical_path FROM files",
                "SELECT package_id, path, version, added_at FROM stored_files",
                "SELECT id, head FROM packages",
                "SELECT id, location_id, package_id, content_path, tier FROM fixity_coverage",
            ):
                rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
                    text(sql)
                )
                for _ in rows:
                    result += 1
    secs = time.perf_counter() - start
    grown = peak() - before
    services.close()
    return {"secs": secs, "bytes": grown, "result": result, "exact_peak": exact}


def measure(mode: str, url: str, data_dir: Path, batch: int) -> dict[str, Any]:
    got = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--database-url",
            url,
            "--data-dir",
            str(data_dir),
            "--batch",
            str(batch),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(got.stdout.strip().splitlines()[-1]))


# --- one size ------------------------------------------------------------------------------


def run_size(copies: int, args: argparse.Namespace, server: Any) -> dict[str, Any]:
    packages = max(1, (copies - LOG_FILES) // COPIES_PER_PACKAGE)
    total = packages * COPIES_PER_PACKAGE + LOG_FILES
    name = server.create_database()
    url = server.url(name)
    data_dir = Path(tempfile.mkdtemp(prefix="scale-data-", dir=args.out))
    try:
        from archive.config import load_settings
        from archive.services import open_services

        open_services(
            load_settings(data_dir=data_dir, environ={}, overrides={"database_url": url})
        ).close()  # the schema, by the migrations
        log(f"{total:,} copies: {packages:,} packages of {FILES_PER_PACKAGE} files")
        start = time.perf_counter()
        populate(url, packages)
        log(f"  catalog made in {time.perf_counter() - start:.1f}s")
        out: dict[str, Any] = {"copies": total, "packages": packages}
        first = measure("seed", url, data_dir, args.batch)
        assert first["result"] == total, (first["result"], total)
        out["first"] = first
        log(f"  first seed: {first['secs']:.1f}s, {first['bytes'] / MIB:.1f} MiB")
        analyze(url)  # as autovacuum soon does after so many new rows
        again = measure("seed", url, data_dir, args.batch)
        assert again["result"] == 0, again
        out["again"] = again
        log(f"  seed again: {again['secs']:.1f}s, {again['bytes'] / MIB:.1f} MiB")
        if args.heap:
            heap = measure("heap", url, data_dir, args.batch)
            assert heap["result"] == 0, heap
            out["heap"] = heap
            log(f"  seed again, traced: {heap['bytes'] / MIB:.1f} MiB of Python objects at most")
        ids = measure("ids", url, data_dir, args.batch)
        assert ids["result"] == total
        out["ids"] = ids
        log(f"  ids in a list: {ids['secs']:.1f}s, {ids['bytes'] / MIB:.1f} MiB")
        read = measure("read", url, data_dir, args.batch)
        out["read"] = read
        log(f"  rows streamed: {read['result']:,} in {read['secs']:.1f}s")
        if args.former == "yes" or (args.former == "auto" and total <= 2_000_000):
            former = measure("former", url, data_dir, args.batch)
            assert former["result"] == 0, former
            out["former"] = former
            log(f"  former seed again: {former['secs']:.1f}s, {former['bytes'] / MIB:.1f} MiB")
        out["exact_peak"] = all(
            v.get("exact_peak", True) for v in out.values() if isinstance(v, dict)
        )
        return out
    finally:
        server.drop_database(name)
        shutil.rmtree(data_dir, ignore_errors=True)


def report(results: list[dict[str, Any]]) -> None:
    header = (
        "copies",
        "case",
        "seed",
        "baseline",
        "ratio",
    )
    lines = [header]
    for r in results:
        n = f"{r['copies']:,}"
        if "heap" in r:
            lines.append(
                (
                    n,
                    "seed again: Python objects",
                    f"{r['heap']['bytes'] / MIB:,.1f} MiB (tracemalloc peak)",
                    f"{r['ids']['bytes'] / MIB:,.1f} MiB (ids in a list, RSS)",
                    f"{r['heap']['bytes'] / max(1, r['ids']['bytes']):.3f}x",
                )
            )
        for case, key in (("first seed", "first"), ("seed again", "again"), ("former", "former")):
            if key not in r:
                continue
            m = r[key]
            lines.append(
                (
                    n,
                    f"{case}: memory",
                    f"{m['bytes'] / MIB:,.1f} MiB",
                    f"{r['ids']['bytes'] / MIB:,.1f} MiB (ids in a list)",
                    f"{m['bytes'] / max(1, r['ids']['bytes']):.3f}x",
                )
            )
            lines.append(
                (
                    n,
                    f"{case}: time",
                    f"{m['secs']:,.1f} s ({m['secs'] / r['copies'] * 1e6:.1f} µs a copy)",
                    f"{r['read']['secs']:,.1f} s (rows streamed)",
                    f"{m['secs'] / max(1e-9, r['read']['secs']):.2f}x",
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    log("")
    for line in lines:
        log("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    if not all(r["exact_peak"] for r in results):
        log("  (the peak could not be reset: memory is ru_maxrss less the size before)")


def main() -> None:
    args = parse_args()
    if args.child:
        result = child(args.child, args.database_url, args.data_dir, args.batch)
        print(json.dumps(result))
        return
    sizes = args.copies or [10_000_000]
    args.out.mkdir(parents=True, exist_ok=True)
    log(cpu_summary())
    log(f"load average before: {os.getloadavg()}")
    from tests.servers import start_postgres

    server = start_postgres(args.pg_dir)
    results = []
    try:
        for copies in sizes:
            results.append(run_size(copies, args, server))
    finally:
        server.stop()
    log(f"load average after: {os.getloadavg()}")
    report(results)


if __name__ == "__main__":
    main()
