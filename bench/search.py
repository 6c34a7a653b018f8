"""Public search over a large synthetic catalog: latency and throughput of `custos serve`
under load on 127.0.0.1, beside the raw database time of the same queries, on SQLite and
PostgreSQL.

    .venv/bin/python bench/search.py [--files 1000000] [--catalog sqlite postgres]

The catalog is filled with synthetic packages (public tier, public consent, as ingest would
record them) whose file paths are built from a vocabulary with a Zipf-like distribution
(realistic text: a few words are everywhere, most are rare); the public search index is
built by the real indexing code (`access.search.service.index_package`, the access decision for
every file). Then `custos serve` runs (one process) and `wrk` (Debian) sends a mix of one-
and two-word queries, 10% of them browsing with a facet, for --seconds with --connections;
its Lua script reports p50/p95/p99 and requests/s. The raw database time is the same query
mix run in-process through `access.search.service.search` (every query the endpoint makes: results,
total, three facets), sequentially. Everything runs on this machine; nothing leaves it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlencode

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from sqlalchemy import insert  # noqa: E402

from access.decisions.rules import access_policy  # noqa: E402
from access.search.service import Filters, index_package, search  # noqa: E402
from archive.catalog.tables import (  # noqa: E402
    AccessAssignment,
    ConsentRecord,
    Deposit,
    Depositor,
    File,
    Package,
)
from archive.services import Services  # noqa: E402
from bench.common import (  # noqa: E402
    DEFAULT_OUT,
    custos_services,
    log,
    postgres_admin_url,
)

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ra",
    "tu",
    "se",
    "ne",
    "vo",
    "di",
    "sa",
    "pe",
    "ri",
    "zo",
    "mu",
    "ta",
    "le",
    "go",
    "bi",
    "na",
    "fe",
    "ku",
    "ro",
]
KINDS = [
    "statement",
    "interview",
    "photo",
    "report",
    "letter",
    "transcript",
    "video",
    "audio",
    "map",
    "minutes",
]
EXTS = [("pdf", "Acrobat PDF 1.7"), ("jpg", "JPEG File Interchange Format"),
        ("txt", "Plain Text File"), ("mp4", "MPEG-4 Media File"), ("wav", "Waveform Audio"),
        ("docx", "Microsoft Word for Windows 2007 onwards")]  # fmt: skip


def vocabulary(n: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def zipf_choice(words: list[str], rng: random.Random) -> str:
    # Rank r is drawn with probability ~ 1/r (a Zipf law with exponent 1).
    return words[min(int(len(words) ** rng.random()) - 1, len(words) - 1)]


def fill(services: Services, files: int, per_package: int, seed: int = 7) -> list[str]:
    """Synthetic packages and files straight into the catalog; returns the vocabulary."""
    rng = random.Random(seed)
    words = vocabulary(20_000, rng)
    places = vocabulary(300, random.Random(seed + 1))
    packages = files // per_package
    now = datetime.now(UTC)
    depositors = [f"Mechanism {w.capitalize()}" for w in vocabulary(12, random.Random(seed + 2))]
    with services.session_scope() as session:
        session.execute(insert(Depositor), [{"name": d, "created_at": now} for d in depositors])
    t0 = time.perf_counter()
    batch_files: list[dict[str, object]] = []
    for p in range(packages):
        package_id = f"urn:uuid:00000000-0000-4000-8000-{p:012d}"
        deposit_id = f"dep-{p}"
        year = 2000 + p % 25
        received = datetime(year, 1 + p % 12, 1 + p % 28, tzinfo=UTC)
        title = " ".join(zipf_choice(words, rng) for _ in range(3)).capitalize()
        with services.session_scope() as session:
            session.execute(insert(Deposit), [{
                "id": deposit_id, "depositor_id": 1 + p % len(depositors),
                "source_name": f"bag-{p}.zip", "received_at": received, "stored_at": received,
                "bagit_version": "1.0", "fingerprint": f"sha512:{p:0128x}",
                "payload_files": per_package, "payload_bytes": per_package * 1000,
            }])  # fmt: skip
            session.execute(insert(Package), [{
                "id": package_id, "deposit_id": deposit_id,
                "depositor_id": 1 + p % len(depositors),
                "title": f"{title} ({rng.choice(places).capitalize()})", "created_at": received,
                "head": 1, "object_path": f"objects/{p}",
            }])  # fmt: skip
            session.execute(insert(AccessAssignment), [{
                "package_id": package_id, "path": "", "tier": "public", "sunset": None,
                "successor": None, "legal_basis": "Synthetic public holding", "sunset_basis": "",
            }])  # fmt: skip
            session.execute(
                insert(ConsentRecord),
                [{"package_id": package_id, "path": "", "scopes": "public,research"}],
            )
            batch_files = []
            for f in range(per_package):
                ext, fmt = rng.choice(EXTS)
                name = (
                    f"{rng.choice(KINDS)}-{zipf_choice(words, rng)}-{zipf_choice(words, rng)}-"
                    f"{rng.choice(places)}-{f:05d}.{ext}"
                )
                logical = f"bag/data/{rng.choice(KINDS)}s/{year}/{name}"
                batch_files.append({
                    "package_id": package_id, "version": 1, "logical_path": logical,
                    "content_path": f"v1/content/{logical}", "role": "payload",
                    "size": rng.randint(1_000, 50_000_000), "sha512": f"{f:0128x}",
                    "sha256": f"{f:064x}", "puid": None, "mime_type": None, "format_name": fmt,
                })  # fmt: skip
            session.execute(insert(File.__table__), batch_files)
        if p % 200 == 0:
            log(f"  catalogued {(p + 1) * per_package:,} files ({time.perf_counter() - t0:.0f} s)")
    policy = access_policy(services.settings)
    t0 = time.perf_counter()
    for p in range(packages):
        with services.session_scope() as session:
            index_package(session, f"urn:uuid:00000000-0000-4000-8000-{p:012d}", policy)
        if p % 200 == 0:
            log(f"  indexed {(p + 1) * per_package:,} files ({time.perf_counter() - t0:.0f} s)")
    log(f"search index built by the indexing code in {time.perf_counter() - t0:.0f} s")
    if services.engine.dialect.name == "postgresql":
        with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return words


def query_mix(words: list[str], n: int, seed: int = 11) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    for i in range(n):
        if i % 10 == 9:
            out.append({"format": rng.choice(EXTS)[1]})  # browse one facet
        elif i % 3 == 0:
            out.append({"q": f"{zipf_choice(words, rng)} {rng.choice(KINDS)}"})
        else:
            out.append({"q": zipf_choice(words, rng)})
    return out


def raw_times(services: Services, mix: list[dict[str, str]]) -> list[float]:
    policy = access_policy(services.settings)
    times = []
    for params in mix:
        t0 = time.perf_counter()
        with services.sessions() as session:
            search(
                session, policy, params.get("q", ""),
                filters=Filters(format=params.get("format")), limit=20,
            )  # fmt: skip
        times.append(time.perf_counter() - t0)
    return times


WRK_SCRIPT = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT p50_ms=%%.2f p95_ms=%%.2f p99_ms=%%.2f requests=%%d "
    .. "errors=%%d seconds=%%.2f\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, summary.duration / 1e6))
end
"""


def load(
    services: Services, mix: list[dict[str, str]], seconds: int, connections: int, workers: int
) -> dict[str, float]:
    from tests.servers import free_port

    port = free_port()
    # The synthetic files exist only in the catalog: the server's outbox thread would spend
    # the run failing to identify them (an archive whose deposits are
    # characterised has nothing pending, and the thread sleeps).
    env = {**os.environ, "CUSTOS_FSYNC": "false", "CUSTOS_QUEUE__IN_SERVE": "false"}
    if services.settings.database_url:
        env["CUSTOS_DATABASE_URL"] = services.settings.database_url
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "custos"), "--data-dir", str(services.settings.data_dir),
         "serve", "--port", str(port), "--log-level", "warning", "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            if time.monotonic() > deadline:
                raise RuntimeError("custos serve did not start")
        with tempfile.TemporaryDirectory() as tmp:
            paths = Path(tmp) / "paths.txt"
            paths.write_text("".join(f"/public/search?{urlencode(p)}\n" for p in mix))
            script = Path(tmp) / "mix.lua"
            script.write_text(WRK_SCRIPT % paths)
            # Warm up (caches, connection pool), then measure.
            subprocess.run(["wrk", "-t1", "-c2", "-d3s", "-s", str(script), f"http://127.0.0.1:{port}"],
                           capture_output=True, check=True)  # fmt: skip
            done = subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                 "-s", str(script), f"http://127.0.0.1:{port}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
        values = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        values["rps"] = values["requests"] / values["seconds"]
        values["load"] = os.getloadavg()[0]
        return values
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-package", type=int, default=500)
    parser.add_argument("--catalog", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="custos serve --workers N (each)"
    )
    args = parser.parse_args()
    rows = []
    with ExitStack() as stack:
        admin = stack.enter_context(postgres_admin_url(None, "postgres" in args.catalog))
        for catalog in args.catalog:
            log(f"== {catalog}: {args.files:,} files")
            services = stack.enter_context(
                custos_services(args.out, catalog, admin, fsync=False, identify_formats=False)
            )
            t0 = time.perf_counter()
            words = fill(services, args.files, args.per_package)
            log(f"catalog filled in {time.perf_counter() - t0:.0f} s")
            mix = query_mix(words, args.queries)
            raw = raw_times(services, mix)
            raw_sorted = sorted(raw)
            for workers in args.workers:
                loadv = load(services, mix, args.seconds, args.connections, workers)
                rows.append((catalog, workers, statistics.median(raw) * 1000,
                             raw_sorted[int(0.95 * len(raw)) - 1] * 1000, loadv))  # fmt: skip
                log(f"{catalog}, {workers} process(es): raw p50/p95 {rows[-1][2]:.1f}/"
                    f"{rows[-1][3]:.1f} ms; served {loadv}")  # fmt: skip
    print()
    print(
        f"Public search, {args.files:,} catalogued files, {date.today()}, this machine "
        f"({os.cpu_count()} cores); "
        f"wrk {args.connections} connections, {args.seconds} s"
    )
    print(
        "| catalog | serve processes | raw query p50 | raw query p95 | served p50 | served p95 "
        "| served p99 "
        "| requests/s | errors | load average |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for catalog, workers, p50, p95, v in rows:
        print(f"| {catalog} | {workers} | {p50:.1f} ms | {p95:.1f} ms | {v['p50_ms']:.1f} ms | "
              f"{v['p95_ms']:.1f} ms | {v['p99_ms']:.1f} ms | {v['rps']:.0f} | {v['errors']:.0f} | "
              f"{v['load']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
