"""Benchmark: the custody log at scale (issue 17): what one very large deposit makes every
other writer of the log wait, and how fast ``custos audit verify`` checks the log.

On PostgreSQL 15 started as ``tests/servers.py`` starts the tests' server (fsync off), in a
fresh database:

1. **Other writers during a large deposit.** One transaction records the custody events of a
   deposit of N files as ingest and identification record them (N format identification
   events, each linked to the package and its file, in one append) and commits. Meanwhile a
   second thread appends one event at a time, each in its own transaction (as a sign-in or a
   fixity batch does), and times each append from start to commit. Figures: the longest and
   the 99th percentile of those appends while the deposit's transaction is open. Baseline,
   same run: the same thread's appends with nothing else writing.
2. **As the log was before format 2** (``--former``, on by default): the same deposit, with
   the log head taken when the deposit's events are written (what every append did when each
   event was an entry chained at once), for the same figures: the other writer waits for the
   whole transaction.
3. **Audit throughput.** ``custos audit verify``'s check of the whole log so made (every event's
   hash, every entry's Merkle root and chain link), in events per second, in one process and
   with ``--workers 2``. Baseline, same run: reading the same rows with their links, page by
   page in the same order, in one process, without checking anything (no audit in one process
   reads less).

Also the ``custody`` section of ``bench/scale.py`` (``--only custody``, ``--custody-files N``).

Run (as root: PostgreSQL is started as the postgres user), from the project folder::

    .venv/bin/python bench/scale_custody.py                   # 1,000,000 files
    .venv/bin/python bench/scale_custody.py --files 100000 --no-former
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import cpu_summary, log
from sqlalchemy import select, tuple_

from archive.audit import _EVENT_COLUMNS, PAGE, verify_log
from archive.catalog.tables import Event, EventLink
from archive.config import load_settings
from archive.custody import lock_head, new_event, record_events
from archive.model import EventRecord, Link
from archive.services import Services, open_services
from tests.servers import PostgresServer, start_postgres


def _append_until_stopped(url: str, data_dir: str, stop: Any, out: Any) -> None:
    """In a process of its own (as another host, or another worker, would be): append one
    event per transaction until ``stop`` is set; send back (start, time taken) of each."""
    settings = load_settings(
        data_dir=Path(data_dir), environ={}, overrides={"database_url": url, "fsync": False}
    )
    services = open_services(settings)
    times: list[tuple[float, float, float]] = []
    try:
        n = 0
        while not stop.is_set():
            start = time.perf_counter()  # CLOCK_MONOTONIC: one clock for every process
            with services.sessions() as session:
                record_events(
                    session,
                    [new_event("access", "success", f"read {n}", links=[Link("user", "r")])],
                )
                committing = time.perf_counter()
                session.commit()  # the entry takes its place: the head is waited for here
            end = time.perf_counter()
            times.append((start, end - start, end - committing))
            n += 1
            time.sleep(0.01)
    finally:
        services.close()
        out.put(times)


class Writer:
    """Another writer of the log, in its own process: started, then ``finish()``ed."""

    def __init__(self, services: Services) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.out: Any = ctx.Queue()
        self.process = ctx.Process(
            target=_append_until_stopped,
            args=(
                services.settings.catalog_url,
                str(services.settings.data_dir),
                self.stop,
                self.out,
            ),
        )
        self.times: list[tuple[float, float, float]] = []

    def start(self) -> None:
        self.process.start()
        time.sleep(3.0)  # started and appending

    def finish(self) -> None:
        self.stop.set()
        self.times = self.out.get(timeout=120)
        self.process.join()
        if self.process.exitcode:
            raise RuntimeError(f"the other writer exited {self.process.exitcode}")

    def during(self, begin: float, end: float, *, commit: bool = False) -> list[float]:
        """The appends that overlapped [begin, end]: their whole time, or (``commit``) the
        time of their commit alone (which includes any wait for the log head)."""
        return [c if commit else t for s, t, c in self.times if s <= end and s + t >= begin]


def deposit_events(files: int, package: str) -> list[EventRecord]:
    return [
        new_event(
            "format identification",
            "success",
            "fmt/18 application/pdf (signature match, fido)",
            links=[Link("package", package), Link("file", f"data/folder-{i % 1000}/f{i}.pdf")],
            agent="fido",
        )
        for i in range(files)
    ]


def one_deposit(services: Services, files: int, *, former: bool) -> dict[str, Any]:
    package = f"urn:uuid:bench-{'former' if former else 'now'}-{files}"
    events = deposit_events(files, package)
    writer = Writer(services)
    writer.start()
    begin = time.perf_counter()
    with services.session_scope() as session:
        if former:
            lock_head(session)  # where the head was taken before format 2
        record_events(session, events, package_id=package)
    end = time.perf_counter()
    time.sleep(0.5)
    writer.finish()
    waits = writer.during(begin, end)
    commits = writer.during(begin, end, commit=True)
    return {"deposit_s": end - begin, "waits": waits, "commits": commits}


def alone(services: Services, seconds: float) -> list[float]:
    writer = Writer(services)
    writer.start()
    time.sleep(seconds)
    writer.finish()
    return [t for _, t, _ in writer.times[5:]]


def read_only(services: Services) -> int:
    """Every event with its links, a page at a time in the audit's order, the same columns,
    nothing checked."""
    n = 0
    with services.sessions() as session:
        after = (-1, -1)
        while True:
            rows = session.execute(
                select(*_EVENT_COLUMNS)
                .where(Event.entry_id.is_not(None), tuple_(Event.entry_id, Event.pos) > after)
                .order_by(Event.entry_id, Event.pos)
                .limit(PAGE)
            ).all()
            if not rows:
                return n
            ids = [r.id for r in rows]
            list(
                session.execute(
                    select(
                        EventLink.event_id,
                        EventLink.object_type,
                        EventLink.object_id,
                        EventLink.role,
                    ).where(EventLink.event_id.in_(ids))
                )
            )
            n += len(rows)
            after = (int(rows[-1].entry_id or 0), int(rows[-1].pos or 0))


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def ms(values: list[float], q: float | None = None) -> str:
    if not values:
        return "-"
    if q is None:
        return f"{max(values) * 1000:,.1f} ms"
    return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--former", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--pg-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    log(cpu_summary())
    server: PostgresServer = start_postgres(args.pg_dir / "custos-bench-custody")
    try:
        name = server.create_database()
        with tempfile.TemporaryDirectory() as data:
            settings = load_settings(
                data_dir=Path(data),
                environ={},
                overrides={"database_url": server.url(name), "fsync": False},
            )
            services = open_services(settings)
            try:
                lines = run(services, args.files, former=args.former)
            finally:
                services.close()
        print_lines(f"Custody log at scale: a deposit of {args.files:,} files", lines)
    finally:
        server.stop()


def run(services: Services, files: int, *, former: bool) -> list[tuple[str, str, str, str]]:
    """Every measurement above on ``services``' catalog (PostgreSQL); the table's lines:
    (case, Custos, baseline, ratio)."""
    base = alone(services, 5.0)
    log(f"alone: {len(base)} appends, p99 {ms(base, 99)}, longest {ms(base)}")
    now = one_deposit(services, files, former=False)
    log(f"deposit of {files:,} files: {now['deposit_s']:.1f} s")
    before = one_deposit(services, files, former=True) if former else None
    if before:
        log(f"as before format 2: {before['deposit_s']:.1f} s")
    audit_s, report = timed(lambda: verify_log(services))
    parallel_s, parallel = timed(lambda: verify_log(services, workers=2))
    read_s, read = timed(lambda: read_only(services))
    assert report.ok and parallel.ok, (report.problems, parallel.problems)
    w = now["waits"]
    p99 = statistics.quantiles(w, n=100)[98] / statistics.quantiles(base, n=100)[98]
    lines = [
        (
            "other writer, longest append during the deposit",
            ms(w),
            ms(base),
            f"{max(w) / max(base):.1f}x",
        ),
        ("other writer, p99 append during the deposit", ms(w, 99), ms(base, 99), f"{p99:.1f}x"),
        ("  its longest commit (the wait for the head in it)", ms(now["commits"]), "", ""),
        ("  its appends during the deposit", f"{len(w):,}", "", ""),
        ("the deposit's transaction", f"{now['deposit_s']:.1f} s", "", ""),
    ]
    if before:
        f = before["waits"]
        lines += [
            (
                "as before format 2: longest append during the deposit",
                ms(f),
                ms(base),
                f"{max(f) / max(base):.1f}x",
            ),
            ("  its longest commit", ms(before["commits"]), "", ""),
            ("  its appends during the deposit", f"{len(f):,}", "", ""),
        ]
    rate, read_rate = report.events / audit_s, read / read_s
    rate2 = parallel.events / parallel_s
    lines += [
        (
            f"audit verify, one process ({report.events:,} events)",
            f"{rate:,.0f} events/s ({audit_s:.1f} s)",
            f"{read_rate:,.0f} events/s read ({read_s:.1f} s)",
            f"{rate / read_rate:.2f}x",
        ),
        (
            "audit verify --workers 2",
            f"{rate2:,.0f} events/s ({parallel_s:.1f} s)",
            f"{read_rate:,.0f} events/s read",
            f"{rate2 / read_rate:.2f}x",
        ),
    ]
    return lines


def print_lines(title: str, lines: list[tuple[str, str, str, str]]) -> None:
    rows = [("case", "Custos", "baseline", "ratio"), *lines]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    print(title)
    for r in rows:
        print("  " + "  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
