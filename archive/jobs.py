"""The job queue: Huey, behind two functions (:func:`enqueue`, :func:`run_worker`).

The embedded default keeps the queue in a SQLite file in the data folder
(``DATA_DIR/queue.sqlite3``, no server); ``queue.backend = "redis"`` shares one queue between
workers on many machines. Jobs are named (``replicate``, ``fixity-cycle`` …); their handlers
and the periodic schedule come from the function packages through the ``custos.jobs`` entry
points (``pyproject.toml``), so this core module never imports upward.

Work that follows a commit is not queued here but written to the outbox in the committing
transaction (:mod:`archive.outbox`); a worker runs it in a thread beside the queue's
consumer, with the same handlers. The queue carries the periodic schedule and jobs asked
for outside any commit (:func:`enqueue`: an operator's or a test's).

Huey removes a job from the queue when a worker takes it: a worker killed mid-job does not
get it back from the queue. The work itself is not lost: every handler is written to be run
again (fixity claims are leases that run out; replication reads back what is already there),
and the worker's schedule, which also runs once when a worker starts, picks up whatever is
still due.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any

from archive import outbox
from archive.clock import now
from archive.config import Settings
from archive.errors import CustosError
from archive.services import Services

log = logging.getLogger("custos.jobs")

Handler = Callable[..., Any]  # handler(services, **kwargs)
DISPATCH = "custos.job"


class QueueError(CustosError):
    """The job queue could not be reached or used."""

    exit_code = 75  # EX_TEMPFAIL


@dataclass(frozen=True, slots=True)
class Periodic:
    """A job the worker runs on a schedule: every ``minutes`` (or daily at ``hour``:00 UTC),
    and once when it starts if ``at_start``."""

    job: str
    minutes: int | None = None
    hour: int | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    at_start: bool = False


@dataclass
class JobTable:
    """What the function packages contribute: handlers by name and the schedule."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    schedule: list[Periodic] = field(default_factory=list)


def _huey(settings: Settings) -> Any:
    from huey import RedisHuey, SqliteHuey

    q = settings.queue
    try:
        if q.backend == "redis":
            return RedisHuey(q.name, url=q.redis_url, results=False, utc=True)
        settings.queue_path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(q.name, filename=str(settings.queue_path), results=False, utc=True)
    except Exception as exc:  # redis/sqlite errors at connection time
        raise QueueError(f"cannot open the job queue ({_where(settings)}): {exc}") from exc


def _where(settings: Settings) -> str:
    q = settings.queue
    return (
        f"Redis at {q.redis_url}" if q.backend == "redis" else f"SQLite file {settings.queue_path}"
    )


_WORKER: dict[str, Any] = {}


def _dispatch(job: str, kwargs: dict[str, Any]) -> None:
    """Run a named job in this worker (the one task registered with Huey)."""
    services: Services = _WORKER["services"]
    table: JobTable = _WORKER["table"]
    handler = table.handlers.get(job)
    if handler is None:
        log.error("no handler for job %r: is the package that provides it installed?", job)
        return
    try:
        handler(services, **kwargs)
    except CustosError as exc:
        log.error("job %s failed: %s", job, exc.diagnostics())


def _queue(settings: Settings) -> tuple[Any, Any]:
    huey = _huey(settings)
    task = huey.task(name=DISPATCH)(_dispatch)
    return huey, task


def enqueue(settings: Settings, job: str, **kwargs: Any) -> None:
    """Queue ``job`` for a worker. Call it after the catalog commit.

    Raises :class:`QueueError` when the queue cannot be reached."""
    _, task = _queue(settings)
    try:
        task(job, dict(kwargs))
    except Exception as exc:
        raise QueueError(
            f"cannot queue job {job} ({_where(settings)}): {exc}",
            hint="check that the queue is reachable (queue.* settings); the scheduled "
            "work of `custos worker` catches up with what was not queued",
        ) from exc


def pending(settings: Settings) -> int:
    """Jobs waiting in the queue."""
    huey, _ = _queue(settings)
    try:
        return int(huey.pending_count())
    except Exception as exc:
        raise QueueError(f"cannot read the job queue ({_where(settings)}): {exc}") from exc


def run_queued(services: Services, *, limit: int = 1000) -> int:
    """Run the jobs waiting in the queue, one after the other, in this process (no worker);
    return how many ran. For one-shot use (tests, a cron line) where no worker is running.

    Raises :class:`QueueError` when the queue cannot be read."""
    _WORKER.update(services=services, table=job_table(services.settings))
    huey, _ = _queue(services.settings)
    ran = 0
    while ran < limit:
        try:
            task = huey.dequeue()
        except Exception as exc:
            raise QueueError(
                f"cannot read the job queue ({_where(services.settings)}): {exc}"
            ) from exc
        if task is None:
            break
        huey.execute(task)
        ran += 1
    return ran


def job_table(settings: Settings) -> JobTable:
    """Handlers and schedule from every installed ``custos.jobs`` entry point (each is called
    as ``register(table, settings)``)."""
    table = JobTable()
    for ep in sorted(entry_points(group="custos.jobs"), key=lambda e: e.name):
        ep.load()(table, settings)
    return table


def run_worker(
    services: Services, *, schedule: bool = True, on_ready: Callable[[], None] | None = None
) -> None:
    """Run one consumer (one job at a time) and, with ``schedule``, the periodic jobs, until
    SIGINT or SIGTERM. Jobs marked ``at_start`` are queued first."""
    from huey import crontab

    table = job_table(services.settings)
    _WORKER.update(services=services, table=table)
    huey, task = _queue(services.settings)
    if schedule:
        for p in table.schedule:
            cron = (
                every_minutes(p.minutes)
                if p.minutes is not None
                else crontab(minute="0", hour=str(p.hour))
            )
            huey.periodic_task(cron, name=f"custos.periodic.{p.job}")(
                _periodic(p.job, dict(p.kwargs))
            )
            if p.at_start:
                task(p.job, dict(p.kwargs))
    consumer = huey.create_consumer(
        workers=1, periodic=schedule, worker_type="thread", max_delay=1.0
    )
    # Beside the queue's consumer, a thread runs the work commits leave in the outbox.
    runner = OutboxRunner(services, name="custos-worker-outbox")
    settle()
    runner.start()
    if on_ready:
        on_ready()
    try:
        consumer.run()
    finally:
        runner.stop()


def settle() -> None:
    """Once a long-running process has started: what it made while starting (modules, the
    catalog's metadata, settings) lives as long as it does, so it is moved out of the cyclic
    garbage collector's sight (``gc.freeze``). Its full passes otherwise walked all of it
    again and again during a fixity cycle: about 20 µs of each copy's 140 µs of CPU. Objects
    made later are collected as before."""
    gc.collect()
    gc.freeze()


def every_minutes(minutes: int) -> Callable[[datetime], bool]:
    """The queue's test for "is this minute one of the runs": every ``minutes`` minutes of
    the (UTC) clock, counted from a fixed midnight, so 90 is every hour and a half and 1440
    once a day at midnight. A crontab's ``*/N`` minute field cannot say that: it restarts
    every hour (``*/90`` ran hourly, ``*/45`` at :00 and :45)."""

    def due(at: datetime) -> bool:
        return (at.toordinal() * 1440 + at.hour * 60 + at.minute) % minutes == 0

    return due


def _periodic(job: str, kwargs: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        _dispatch(job, kwargs)

    return run


# --- the outbox: the work commits queue -----------------------------------------------------


@dataclass
class RunReport:
    """What one pass did: entries run, failed (kept with their error) and put off."""

    ran: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # job, key, error
    deferred: list[tuple[str, str, datetime]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ran": [{"job": j, "key": k} for j, k in self.ran],
            "failed": [{"job": j, "key": k, "error": e} for j, k, e in self.failed],
            "deferred": [{"job": j, "key": k, "until": u.isoformat()} for j, k, u in self.deferred],
        }


def run_outbox(
    services: Services,
    *,
    jobs: Collection[str] | None = None,
    key: str | None = None,
    stop: threading.Event | None = None,
    limit: int = 10_000,
    on_entry: Callable[[str, str], None] | None = None,
) -> RunReport:
    """Run due entries, one after the other, until none is left (or ``stop`` is set).

    ``jobs`` limits the pass to those jobs; ``key`` to the entries about that package (and
    those about the whole archive). Entries that fail or must wait are kept for later, so a
    pass always ends. ``on_entry(job, key)`` is told before each entry runs."""
    handlers = job_table(services.settings).handlers
    report = RunReport()
    me = outbox.worker_name()
    retry_max = services.settings.queue.retry_max_minutes
    while len(report.ran) + len(report.failed) + len(report.deferred) < limit:
        if stop is not None and stop.is_set():
            break
        entry = outbox.claim(services, me, jobs=jobs, key=key)
        if entry is None:
            break
        if on_entry is not None:
            on_entry(entry.job, entry.key)
        handler = handlers.get(entry.job)
        try:
            if handler is None:
                raise CustosError(
                    f"no handler for job {entry.job!r}",
                    hint="install the package that provides it (custos.jobs entry points)",
                )
            handler(services, **({"package_id": entry.key} if entry.key else {}))
        except outbox.Deferred as exc:
            outbox.kept(services, entry, until=exc.until, error=None)
            report.deferred.append((entry.job, entry.key, exc.until))
            log.info("%s %s put off until %s: %s", entry.job, entry.key, exc.until, exc.message)
        except Exception as exc:  # kept and retried: a failure is never dropped
            text = exc.diagnostics() if isinstance(exc, CustosError) else f"{type(exc).__name__}"
            if not isinstance(exc, CustosError):
                log.exception("%s %s failed", entry.job, entry.key)
            else:
                log.error("%s %s failed: %s", entry.job, entry.key, text)
            until = now() + outbox.backoff(retry_max, entry.attempts)
            outbox.kept(services, entry, until=until, error=text)
            report.failed.append((entry.job, entry.key, text))
        else:
            outbox.finished(services, entry)
            report.ran.append((entry.job, entry.key))
    return report


class OutboxRunner:
    """A thread that runs the outbox: when woken (a deposit was stored, a tier changed), every
    ``queue.poll_seconds``, and at start. ``periodic`` jobs (name, minutes) are added to the
    outbox on that schedule, so that work left pending by other means (a tool installed
    since, an authority back after a failure) is found again without a worker.
    ``custos serve`` runs one (``queue.in_serve``); so does ``custos worker``."""

    def __init__(
        self, services: Services, *, periodic: Sequence[tuple[str, int]] = (), name: str = ""
    ) -> None:
        self.services = services
        self.periodic = list(periodic)
        self._due: dict[str, datetime] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name or "custos-outbox", daemon=True)
        self.passes = 0  # completed passes, for tests

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop after its current entry and wait up to ``timeout``."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _add_periodic(self) -> None:
        at = now()
        due = [job for job, _ in self.periodic if self._due.get(job, at) <= at]
        if not due:
            return
        with self.services.session_scope() as session:
            for job in due:
                outbox.add(session, job)
        for job, minutes in self.periodic:
            if job in due:
                self._due[job] = at + timedelta(minutes=minutes)

    def _run(self) -> None:
        poll = self.services.settings.queue.poll_seconds
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._add_periodic()
                run_outbox(self.services, stop=self._stop)
            except Exception:  # a bad pass must not end the thread; the next one retries
                log.exception("outbox pass failed")
            self.passes += 1
            self._wake.wait(poll)


@dataclass
class IdleReport:
    """What ``custos worker --until-idle`` ran: outbox entries (with those that failed and
    stay queued) and jobs of the queue."""

    outbox: RunReport = field(default_factory=RunReport)
    queued_jobs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.outbox.as_dict(), "queued_jobs": self.queued_jobs}


def run_until_idle(
    services: Services, *, on_entry: Callable[[str, str], None] | None = None
) -> IdleReport:
    """Run what the outbox holds that is due and what the queue holds, again until neither
    has anything left (a job may queue more: identification asks for migration); entries
    that fail or must wait stay for later. For cron, tests and the embedded default."""
    report = IdleReport()
    while True:
        done = run_outbox(services, on_entry=on_entry)
        report.outbox.ran += done.ran
        report.outbox.failed += done.failed
        report.outbox.deferred += done.deferred
        ran = run_queued(services)
        report.queued_jobs += ran
        if not done.ran and not ran:
            return report
