"""Benchmark: Custos at the scale of issue 17 (50 million files), one section per subsystem.

Each section makes its catalogs with bulk SQL (rows only: no object is stored) in fresh
databases of one PostgreSQL 15 server, started as ``tests/servers.py`` starts the tests' server
(fsync off: the figures are Custos's, not the disk's), and measures each case in a new process
(:func:`measure`), against baselines measured in the same run on the same catalog. Sections:

- ``fixity``: the fixity seed's peak memory and time at N copies (:func:`fixity_section`);
- ``custody``: what a deposit of N files makes other writers of the custody log wait, and
  ``custos audit verify``'s throughput over the log so made (``bench/scale_custody.py``,
  :func:`custody_section`).

Adding a section: write its ``run(args, server)`` (making its catalogs with
:func:`fresh_catalog` and measuring each case with :func:`measure`, which runs one of the
section's ``children`` in a new process), its ``add_args`` and its children, and list it in
:data:`SECTIONS`. ``--only NAME`` runs only the named sections (repeatable); without it,
every section runs.

Memory is a process's peak resident set size during the measured call less its resident size
just before it (Linux: the peak is reset through ``/proc/self/clear_refs`` and read as
``VmHWM``), so it counts everything the call made the process hold: Python objects and the
driver's buffers alike (``tracemalloc`` would miss libpq's result buffers).

Run (as root: PostgreSQL is started as the postgres user), from the project folder::

    .venv/bin/python bench/scale.py                          # every section, at its defaults
    .venv/bin/python bench/scale.py --only fixity --copies 200000 --copies 2000000
    .venv/bin/python bench/scale.py --only fixity --copies 200000 --batch 1000

Disk: the fixity section needs about 0.7 GB per million copies (catalog rows and indexes), in
the server's folder under ``--pg-dir`` (default: the temporary folder).
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import DEFAULT_OUT, PROJECT_DIR, cpu_summary, log
from sqlalchemy import create_engine, text

from archive.services import Services
from tests.servers import PostgresServer, start_postgres

MIB = 1024 * 1024


# --- shared: the server, fresh catalogs, measurements in a new process ---------------------


@contextmanager
def postgres_server(pg_dir: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server for the whole run (fsync off), stopped and removed after."""
    server = start_postgres(pg_dir)
    log(f"PostgreSQL 15 on 127.0.0.1:{server.port} ({server.folder})")
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Catalog:
    """A fresh database with Custos's schema, and a data folder for the settings."""

    url: str
    data_dir: Path

    def services(self) -> Services:
        from archive.config import load_settings
        from archive.services import open_services

        settings = load_settings(
            data_dir=self.data_dir, environ={}, overrides={"database_url": self.url}
        )
        return open_services(settings)

    def execute(self, statements: Sequence[str], *, vacuum: str | None = None) -> None:
        """``statements`` in one transaction, then ``VACUUM ANALYZE`` of ``vacuum`` (a table,
        or ``""`` for every table) if given, as autovacuum soon does after bulk writes."""
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                for sql in statements:
                    conn.execute(text(sql))
            if vacuum is not None:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text(f"VACUUM ANALYZE {vacuum}".rstrip()))
        finally:
            engine.dispose()


@contextmanager
def fresh_catalog(server: PostgresServer, out: Path) -> Iterator[Catalog]:
    """A new database on ``server`` with the schema made by the migrations (as
    ``open_services`` makes it), and a new data folder under ``out``; both removed after."""
    name = server.create_database()
    data_dir = Path(tempfile.mkdtemp(prefix="scale-data-", dir=out))
    try:
        catalog = Catalog(server.url(name), data_dir)
        catalog.services().close()
        yield catalog
    finally:
        server.drop_database(name)
        shutil.rmtree(data_dir, ignore_errors=True)


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


def measured(call: Callable[[], Any], *, traced: bool = False) -> dict[str, Any]:
    """Time and memory of ``call()`` in this process: ``bytes`` is the peak resident size
    during the call less the size before it, or with ``traced`` the peak of Python objects
    (``tracemalloc``: slower, each allocation traced); ``result`` is what it returned."""
    gc.collect()
    before = rss()
    exact = reset_peak()
    if traced:
        import tracemalloc

        tracemalloc.start()
    start = time.perf_counter()
    result = call()
    secs = time.perf_counter() - start
    if traced:
        grown = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        grown = peak() - before
    return {"secs": secs, "bytes": grown, "result": result, "exact_peak": exact or traced}


#: A child: given a catalog and its parameters, returns :func:`measured`'s dict.
Child = Callable[[Catalog, dict[str, Any]], dict[str, Any]]


def measure(section: str, mode: str, catalog: Catalog, **params: Any) -> dict[str, Any]:
    """Runs the section's child ``mode`` in a new process; returns what it measured."""
    got = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            f"{section}:{mode}",
            "--database-url",
            catalog.url,
            "--data-dir",
            str(catalog.data_dir),
            "--params",
            json.dumps(params),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        raise RuntimeError(f"{section}:{mode} failed ({got.returncode}):\n{got.stderr[-4000:]}")
    return dict(json.loads(got.stdout.strip().splitlines()[-1]))


#: One line of a section's table: case, Custos's figure, the baseline's, the ratio.
Line = tuple[str, str, str, str]


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    add_args: Callable[[argparse.ArgumentParser], None]
    #: Runs the section on the server; returns its table's lines.
    run: Callable[[argparse.Namespace, PostgresServer], list[Line]]
    children: Mapping[str, Child]


def print_table(title: str, lines: Sequence[Line]) -> None:
    rows = [("case", "Custos", "baseline", "ratio"), *lines]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    log("")
    log(title)
    for r in rows:
        log("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def ratio(value: float, baseline: float, digits: int = 2) -> str:
    return f"{value / max(baseline, 1e-9):.{digits}f}x"


# --- section: the fixity seed ---------------------------------------------------------------

FILES_PER_PACKAGE = 45
#: Copies of one package: its content files, inventory, sidecar, declaration and root
#: inventory and sidecar, at the primary and at the replica location.
COPIES_PER_PACKAGE = 2 * (FILES_PER_PACKAGE + 3 + 2)
LOG_FILES = 100


def fixity_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fixity")
    group.add_argument(
        "--copies",
        type=int,
        action="append",
        help="copies in the catalog (repeat for several sizes; default 10,000,000)",
    )
    group.add_argument("--batch", type=int, default=0, help="the seed's page (default: its own)")
    group.add_argument(
        "--former",
        choices=["auto", "yes", "no"],
        default="auto",
        help="also run the former whole-catalog seed (auto: up to 2,000,000 copies)",
    )
    group.add_argument(
        "--heap",
        action="store_true",
        help="also measure the peak of Python objects (tracemalloc) of a seed with every row "
        "there (slower: each allocation is traced)",
    )


def fixity_populate(catalog: Catalog, packages: int) -> None:
    """``packages`` packages of FILES_PER_PACKAGE content files and their other rows."""
    k = FILES_PER_PACKAGE
    catalog.execute(
        [
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
        ],
        vacuum="",
    )


def fixity_seed_child(catalog: Catalog, params: dict[str, Any]) -> dict[str, Any]:
    """The seed as a cycle's start runs it (one transaction, committed); ``former``: the
    seed as it was before it read the catalog a page at a time; ``traced``: Python objects."""
    from fixity import sweep
    from fixity.policy import fixity_policy

    services = catalog.services()
    policy = fixity_policy(services.settings)
    primary = services.primary
    kind = getattr(primary.location, "kind", "")
    at = datetime.now(UTC)
    pages = {"batch": params["batch"]} if params.get("batch") else {}
    former = None
    if params.get("former"):
        sys.path.insert(0, str(PROJECT_DIR))
        from tests.unit.fixity.test_seed import reference_seed

        former = reference_seed
    with services.engine.connect() as conn:  # a connection in the pool, as a worker has
        conn.execute(text("SELECT 1"))

    def call() -> int:
        with services.session_scope() as session:
            if former is not None:
                return int(former(session, policy, primary.uri, at))
            return int(sweep.seed(session, policy, primary.uri, at, kind, **pages))

    try:
        return measured(call, traced=bool(params.get("traced")))
    finally:
        services.close()


def fixity_ids_child(catalog: Catalog, params: dict[str, Any]) -> dict[str, Any]:
    """Baseline (memory): the ids of every coverage row, fetched into a Python list."""
    engine = create_engine(catalog.url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))

    def call() -> int:
        with engine.connect() as conn:
            return len(conn.execute(text("SELECT id FROM fixity_coverage")).scalars().all())

    try:
        return measured(call)
    finally:
        engine.dispose()


def fixity_read_child(catalog: Catalog, params: dict[str, Any]) -> dict[str, Any]:
    """Baseline (time): every row a seed must read, streamed through a server-side cursor."""
    engine = create_engine(catalog.url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))

    def call() -> int:
        n = 0
        with engine.connect() as conn:
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
                    n += 1
        return n

    try:
        return measured(call)
    finally:
        engine.dispose()


def fixity_section(args: argparse.Namespace, server: PostgresServer) -> list[Line]:
    """The fixity seed's memory and time as the archive grows.

    A catalog of N copies: packages of 45 content files each, with an inventory, its sidecar
    and the object declaration registered (``stored_files``) and the root inventory and
    sidecar, all held at the primary and at one replica location (``offsite``, version 1,
    read back), every package with an access assignment (every other one a
    protected-identity folder too) and a replication plan by tier, and 100 of the custody
    log's files: 100 copies a package.

    Measured, each in a new process (``fixity.seed.seed`` in one transaction, committed, as a
    cycle's start runs it):

    1. the first seed: every copy's coverage row is missing and inserted;
    2. a seed when every row is there (every cycle's start after the first): nothing to add,
       every row read and compared; the coverage table is vacuumed and analysed first, as
       autovacuum soon does after the first seed (the statistics change the plans);
    3. with ``--former`` (the default up to 2,000,000 copies), the seed as it was before it
       read the catalog a page at a time (the reference kept in
       ``tests/unit/fixity/test_seed.py``), in case 2's state.

    Baselines, measured in the same run on the same catalog, each in a new process:

    - memory: holding the ids of the N coverage rows in a Python list (``SELECT id``,
      fetched): the least any seed that holds one thing per copy needs. A seed whose memory
      is bounded falls further below it as N grows (the ratio falls); one that holds every
      row keeps a ratio above 1 (the former seed: 3.5 times it at 2,000,000 copies).
    - time: streaming every row a seed must read (the files, the stored files, the packages
      and the coverage rows, the columns the seed reads) through a server-side cursor, doing
      nothing with them: a seed reads each of those rows at least once, so no seed in Python
      is faster than that. The ratio says what the seed's comparisons and writes cost above
      the reading.
    """
    lines: list[Line] = []
    for copies in args.copies or [10_000_000]:
        packages = max(1, (copies - LOG_FILES) // COPIES_PER_PACKAGE)
        total = packages * COPIES_PER_PACKAGE + LOG_FILES
        with fresh_catalog(server, args.out) as catalog:
            lines += fixity_size(args, catalog, packages, total)
    return lines


def fixity_size(
    args: argparse.Namespace, catalog: Catalog, packages: int, total: int
) -> list[Line]:
    def seed(**params: Any) -> dict[str, Any]:
        return measure("fixity", "seed", catalog, batch=args.batch, **params)

    log(f"fixity: {total:,} copies: {packages:,} packages of {FILES_PER_PACKAGE} files")
    start = time.perf_counter()
    fixity_populate(catalog, packages)
    log(f"  catalog made in {time.perf_counter() - start:.1f}s")
    cases: list[tuple[str, dict[str, Any]]] = []
    first = seed()
    assert first["result"] == total, (first["result"], total)
    cases.append(("first seed", first))
    log(f"  first seed: {first['secs']:.1f}s, {first['bytes'] / MIB:.1f} MiB")
    catalog.execute([], vacuum="fixity_coverage")  # as autovacuum soon does after the first
    again = seed()
    assert again["result"] == 0, again
    cases.append(("seed again", again))
    log(f"  seed again: {again['secs']:.1f}s, {again['bytes'] / MIB:.1f} MiB")
    heap = None
    if args.heap:
        heap = seed(traced=True)
        assert heap["result"] == 0, heap
        log(f"  seed again, traced: {heap['bytes'] / MIB:.1f} MiB of Python objects at most")
    ids = measure("fixity", "ids", catalog)
    assert ids["result"] == total, (ids["result"], total)
    log(f"  ids in a list: {ids['secs']:.1f}s, {ids['bytes'] / MIB:.1f} MiB")
    read = measure("fixity", "read", catalog)
    log(f"  rows streamed: {read['result']:,} in {read['secs']:.1f}s")
    if args.former == "yes" or (args.former == "auto" and total <= 2_000_000):
        former = seed(former=True)
        assert former["result"] == 0, former
        cases.append(("former seed again", former))
        log(f"  former seed again: {former['secs']:.1f}s, {former['bytes'] / MIB:.1f} MiB")
    n = f"{total:,} copies"
    ids_mib = f"{ids['bytes'] / MIB:,.1f} MiB (ids in a list)"
    lines: list[Line] = []
    if heap is not None:
        lines.append(
            (
                f"{n}, seed again: Python objects",
                f"{heap['bytes'] / MIB:,.1f} MiB (tracemalloc peak)",
                ids_mib,
                ratio(heap["bytes"], ids["bytes"], 3),
            )
        )
    for case, m in cases:
        lines.append(
            (
                f"{n}, {case}: memory",
                f"{m['bytes'] / MIB:,.1f} MiB",
                ids_mib,
                ratio(m["bytes"], ids["bytes"], 3),
            )
        )
        lines.append(
            (
                f"{n}, {case}: time",
                f"{m['secs']:,.1f} s ({m['secs'] / total * 1e6:.1f} µs a copy)",
                f"{read['secs']:,.1f} s (rows streamed)",
                ratio(m["secs"], read["secs"]),
            )
        )
    if not all(m["exact_peak"] for m in (first, again, ids, read)):
        lines.append(("(the peak could not be reset: ru_maxrss less the size before)", "", "", ""))
    return lines


# --- section: the custody log ---------------------------------------------------------------


def custody_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("custody")
    group.add_argument(
        "--custody-files",
        type=int,
        default=1_000_000,
        help="files of the deposit whose events are recorded (default: 1,000,000)",
    )
    group.add_argument(
        "--custody-former",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the same deposit with the log head taken as before log format 2",
    )


def custody_section(args: argparse.Namespace, server: PostgresServer) -> list[Line]:
    """``bench/scale_custody.py``'s measurements, in a fresh catalog of this server."""
    from scale_custody import run as custody_run

    with fresh_catalog(server, args.out) as catalog:
        services = catalog.services()
        try:
            return custody_run(services, args.custody_files, former=args.custody_former)
        finally:
            services.close()


# --- the sections, in the order they run ----------------------------------------------------

SECTIONS: dict[str, Section] = {
    s.name: s
    for s in (
        Section(
            "fixity",
            "Scale: the fixity seed at N copies",
            fixity_args,
            fixity_section,
            {"seed": fixity_seed_child, "ids": fixity_ids_child, "read": fixity_read_child},
        ),
        Section(
            "custody",
            "Scale: the custody log beside a deposit of N files",
            custody_args,
            custody_section,
            {},
        ),
    )
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SECTIONS),
        help="run only this section (repeat for several; default: every section)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="scratch folder")
    parser.add_argument(
        "--pg-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the PostgreSQL server's folder is made (removed afterwards)",
    )
    for section in SECTIONS.values():
        section.add_args(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        name, mode = args.child.split(":", 1)
        child = SECTIONS[name].children[mode]
        result = child(Catalog(args.database_url, args.data_dir), json.loads(args.params))
        print(json.dumps(result))
        return
    sections = [SECTIONS[n] for n in (args.only or SECTIONS)]
    args.out.mkdir(parents=True, exist_ok=True)
    log(cpu_summary())
    log(f"load average before: {os.getloadavg()}")
    tables: list[tuple[str, list[Line]]] = []
    with postgres_server(args.pg_dir) as server:
        for section in sections:
            tables.append((section.title, section.run(args, server)))
    log(f"load average after: {os.getloadavg()}")
    for title, lines in tables:
        print_table(title, lines)


if __name__ == "__main__":
    main()
