"""Shared helpers for the hand-run benchmarks in this folder.

Cold page cache, a throwaway PostgreSQL server, a fresh catalog and data folder per run,
timing, medians and the closing table. Nothing here is imported by the project itself.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "out"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "custos"

if str(PROJECT_DIR) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(PROJECT_DIR))

from archive.config import load_settings  # noqa: E402
from archive.depositors import register  # noqa: E402
from archive.services import Services, open_services  # noqa: E402
from ingest.service import IngestResult, ingest  # noqa: E402


def log(message: str) -> None:
    print(message, flush=True)


# --- machine and page cache ------------------------------------------------------------------


def cpu_summary() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return f"CPUs: os.cpu_count()={os.cpu_count()}, usable by this process={usable}"


class PageCache:
    """Drops the page cache before each timed run; remembers whether that ever failed."""

    def __init__(self) -> None:
        self.warm = False

    def drop(self) -> bool:
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
        except OSError as exc:
            if not self.warm:
                log(f"WARNING: cannot drop the page cache ({exc}); results are WARM")
            self.warm = True
            return False
        return True

    @property
    def label(self) -> str:
        return "warm" if self.warm else "cold"


# --- worker processes ------------------------------------------------------------------


def run_workers(target: Callable[..., None], args: tuple[Any, ...], workers: int) -> list[Any]:
    """Start ``workers`` processes (spawned, as `custos worker` processes are separate) each
    running ``target(*args, name, barrier, queue)`` with names ``bench-0``…; return what each
    put on the queue. ``target`` waits at the barrier once its start-up is done."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=target, args=(*args, f"bench-{i}", barrier, queue))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    done = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a worker exited with {p.exitcode}")
    return done


# --- timing --------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of ``fn()`` in seconds, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_secs(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}s" for v in values)


# --- folders -------------------------------------------------------------------------------


def cache_dir(out: Path, name: str) -> Path:
    path = out / "cache" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def build_once(final: Path, build: Callable[[Path], None]) -> Path:
    """Return ``final``, making it first with ``build(tmp)`` then an atomic rename."""
    if final.exists():
        log(f"reusing {final}")
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@contextmanager
def fresh_dir(out: Path, prefix: str) -> Iterator[Path]:
    """An empty folder under ``out/runs`` (same filesystem as the bags), removed afterwards."""
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=runs))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- PostgreSQL ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)


@contextmanager
def temp_postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL 15 server; yield its admin URL; always stop it."""
    root = Path(tempfile.mkdtemp(prefix="custos-bench-pg-"))
    data = root / "data"
    data.mkdir()
    shutil.chown(root, "postgres", "postgres")
    shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    started = False
    try:
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
        _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options,
            "-l", str(root / "server.log"), "-w", "start",
        )  # fmt: skip
        started = True
        log(f"started a throwaway PostgreSQL 15 on 127.0.0.1:{port} ({data})")
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            try:
                _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
                log("stopped the throwaway PostgreSQL")
            except subprocess.CalledProcessError as exc:
                log(f"WARNING: pg_ctl stop failed: {exc.stderr!r}")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``; dropped afterwards.

    The role in ``admin_url`` needs the CREATEDB privilege.
    """
    admin: URL = make_url(admin_url)
    name = f"custos_bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


# --- Custos services ------------------------------------------------------------------------


@contextmanager
def custos_services(
    out: Path, catalog: str, admin_url: str | None, **overrides: Any
) -> Iterator[Services]:
    """Services on a fresh data folder (and, for PostgreSQL, a fresh database)."""
    with fresh_dir(out, f"{catalog}-") as data_dir, ExitStack() as stack:
        if catalog == "postgres":
            assert admin_url is not None
            overrides = {
                "database_url": stack.enter_context(fresh_database(admin_url)),
                **overrides,
            }
        settings = load_settings(data_dir=data_dir, environ={}, overrides=overrides)
        services = open_services(settings)
        try:
            yield services
        finally:
            services.close()


@contextmanager
def postgres_admin_url(given: str | None, wanted: bool) -> Iterator[str | None]:
    """The admin URL to make fresh databases with: the given one, or a throwaway server's."""
    if not wanted:
        yield None
    elif given:
        yield given
    else:
        with temp_postgres() as url:
            yield url


DEPOSITOR = "Custos benchmark"


def ingest_once(
    out: Path, catalog: str, admin_url: str | None, bag: Path, cache: PageCache, **overrides: Any
) -> tuple[float, IngestResult]:
    """Wall time of one ``ingest()`` (returns after the catalog commit) on a fresh archive.

    Opening the services (schema creation) is not timed; the page cache is dropped just
    before the timed call.
    """
    with custos_services(out, catalog, admin_url, **overrides) as services:
        dialect = services.engine.dialect.name
        assert dialect == {"sqlite": "sqlite", "postgres": "postgresql"}[catalog], dialect
        with services.session_scope() as session:  # the registered depositor, not timed
            register(session, DEPOSITOR, reason="benchmark")
        cache.drop()
        secs, result = timed(lambda: ingest(services, bag, depositor=DEPOSITOR))
    if result.status != "stored":
        raise RuntimeError(f"expected a new package, got {result.status!r}: {result.as_dict()}")
    return secs, result


@dataclass
class Samples:
    baseline: list[float] = field(default_factory=list)
    custos: list[float] = field(default_factory=list)


def interleave(
    repeat: int, baseline: Callable[[], float], custos: Callable[[], float], catalog: str
) -> Samples:
    """Run baseline and Custos in turn ``repeat`` times; seconds of every run."""
    samples = Samples()
    for i in range(1, repeat + 1):
        samples.baseline.append(baseline())
        samples.custos.append(custos())
        log(
            f"  [{catalog}] run {i}/{repeat}: baseline {samples.baseline[-1]:.2f}s, "
            f"custos {samples.custos[-1]:.2f}s"
        )
    return samples


def catalogs_of(choice: str) -> list[str]:
    return ["sqlite", "postgres"] if choice == "both" else [choice]


# --- report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    case: str
    catalog: str
    baseline: str
    custos: str
    ratio: float | None
    target: float | None = None  # this row's own target (default: the table's)
    warm: bool = False  # measured on a warm page cache on purpose
    reported_only: bool = False  # no target: shown beside the others


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument(
        "--catalog", choices=["sqlite", "postgres", "both"], default="both", help="catalogs to run"
    )
    parser.add_argument(
        "--postgres-url",
        help="admin URL of a PostgreSQL server (role with CREATEDB), e.g. "
        "postgresql+psycopg://custos@127.0.0.1:5432/postgres; a fresh database is made per "
        "run. Without it a throwaway PostgreSQL 15 server is started and stopped.",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="cache and scratch folder (git-ignored)"
    )


def run_catalogs(
    args: argparse.Namespace, case: str, measure: Callable[[str, str | None], Row]
) -> list[Row]:
    """``measure(catalog, admin_url)`` for each catalog; a failure becomes an error row."""
    rows = []
    for catalog in catalogs_of(args.catalog):
        log(f"catalog {catalog}:")
        try:
            with postgres_admin_url(args.postgres_url, catalog == "postgres") as admin_url:
                rows.append(measure(catalog, admin_url))
        except Exception:
            traceback.print_exc()
            log(f"  [{catalog}] FAILED (traceback above)")
            rows.append(Row(case, catalog, "error", "error", None))
    return rows


def print_table(rows: Sequence[Row], target: float, cache: PageCache) -> None:
    header = ("case", "catalog", "baseline", "custos", "ratio", "target", "cache")
    cells = [
        (
            r.case,
            r.catalog,
            r.baseline,
            r.custos,
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            "-" if r.reported_only else f">= {r.target or target:.1f}x",
            "warm" if r.warm else cache.label,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    log("")
    for line in [header, *cells]:
        log("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
