"""Reading a batch's copies while the run records the batch before it.

A cycle over many small files spends its time in two places, one after the other: the disk's
(opening and reading files that are not in memory, where the process only waits) and the
catalog's (one hash-chained event and a coverage row per copy, where it only computes). A
thread cannot overlap them: each of its system calls has to take Python's lock back from a
thread that holds it, and waits up to the 5 ms switch interval for it (measured: a read-ahead
thread made a cycle slower). A helper process can: it reads and digests the copies at local
folders (the primary storage root and local replicas) of one batch while the run records the
last one. Copies at other locations (S3) are read by the run itself, when their results are
asked for.

The helper is a new interpreter (not a fork: the worker holds catalog connections and
threads), started when a run has more than one batch of small copies (see fixity.service),
while the first of them is read in the run (it takes about 70 ms to start). It ends when its
end of the pipe closes: when the run ends, or when the run's process dies, SIGKILL included.
If it dies, the batch is read in the run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from archive.digest import CopyResult
from archive.errors import StorageError
from archive.storage.replica import LocalFolderLocation, ReplicaLocation
from fixity.check import Read, read_copy


class Job(NamedTuple):
    """One copy to read: at ``location``, under ``key``, digested with ``algorithms``."""

    location: str
    key: str
    algorithms: tuple[str, ...]
    size: int  # what the catalog expects: chooses how to read, never taken as the size


class Skipped:
    """The result of a job not read because its location stopped answering earlier."""


SKIPPED = Skipped()
#: What a job found: see :data:`fixity.check.Read`, or the location's error.
Outcome = Read | StorageError | Skipped


class Reader:
    """Reads batches of jobs: the local ones in a helper process when :meth:`start` is told
    to. ``resolve`` opens a location by name (raising :class:`StorageError`)."""

    def __init__(self, resolve: Callable[[str], ReplicaLocation]) -> None:
        self.resolve = resolve
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._broken = False

    def start(self, jobs: Sequence[Job], *, helper: bool) -> Pending:
        """Begin reading ``jobs``; ``helper``: a helper process may read the local ones."""
        local: dict[str, str] = {}
        opened: dict[str, ReplicaLocation | StorageError] = {}
        for job in jobs:
            if job.location not in opened:
                try:
                    opened[job.location] = self.resolve(job.location)
                except StorageError as exc:
                    opened[job.location] = exc
            where = opened[job.location]
            if isinstance(where, LocalFolderLocation):
                local[job.location] = str(where.root)
        sent: list[int] = []
        if local and helper and not self._broken:
            conn = self._connection()
            sent = [i for i, job in enumerate(jobs) if job.location in local]
            try:
                if conn is None:
                    raise OSError("the helper did not start")
                # plain tuples: the cheapest to pickle, for hundreds of jobs a batch
                conn.send((local, [tuple(jobs[i]) for i in sent]))
            except (OSError, ValueError):
                self._lost()
                sent = []
        return Pending(self, list(jobs), opened, sent)

    @property
    def running(self) -> bool:
        """Whether the helper is started (and has not stopped answering)."""
        return self._conn is not None and not self._broken

    def warm(self) -> None:
        """Start the helper now, so that it is ready when the next batch is sent to it."""
        if not self._broken:
            self._connection()

    def _connection(self) -> Connection | None:
        if self._conn is None:
            # A new interpreter that imports only this module (multiprocessing's spawn would
            # import the worker's main module again, the whole CLI: 0.6 s of CPU a run).
            ours, theirs = socket.socketpair()
            here = str(Path(__file__).resolve().parents[1])
            path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(theirs.fileno())],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONPATH": path},
                )
            except OSError:
                ours.close()
                self._broken = True
                return None
            finally:
                theirs.close()
            self._conn = Connection(ours.detach())
        return self._conn

    def _lost(self) -> None:
        """The helper stopped answering: read in the run from now on."""
        self._broken = True
        self.close()

    def close(self) -> None:
        """Stop the helper (it ends when its pipe closes); wait a little for it."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class Pending:
    """The reads of one batch under way."""

    def __init__(
        self,
        reader: Reader,
        jobs: list[Job],
        opened: dict[str, ReplicaLocation | StorageError],
        sent: list[int],
    ) -> None:
        self.reader = reader
        self.jobs = jobs
        self.opened = opened
        self.sent = sent

    def results(self, skip: Callable[[str], bool]) -> list[Outcome]:
        """What each job found, in order. Jobs read here (not by the helper) are not read
        (:data:`SKIPPED`) at a location ``skip`` names, or once one of its jobs failed: a
        location that does not answer costs its time-outs once a batch, not once a copy."""
        answered: dict[int, Outcome] = {}
        if self.sent:
            conn = self.reader._conn
            try:
                if conn is None:
                    raise EOFError
                answers = conn.recv()
            except (EOFError, OSError):
                self.reader._lost()  # its jobs are read here instead
            else:
                for i, answer in zip(self.sent, answers, strict=True):
                    answered[i] = _outcome(answer, self.jobs[i])
        results: list[Outcome] = []
        failed: set[str] = set()  # a location that failed once is not tried again
        for i, job in enumerate(self.jobs):
            where = self.opened[job.location]
            if i in answered:
                results.append(answered[i])
            elif job.location in failed or skip(job.location):
                results.append(SKIPPED)
            elif isinstance(where, StorageError):
                results.append(where)
                failed.add(job.location)
            else:
                try:
                    results.append(read_copy(where, job.key, job.algorithms, job.size))
                except StorageError as exc:
                    results.append(exc)
                    failed.add(job.location)
        return results


def _outcome(answer: tuple[Any, ...], job: Job) -> Outcome:
    kind = answer[0]
    if kind == "read":
        return CopyResult(answer[1], answer[2])
    if kind == "missing":
        return None
    if kind == "storage":
        return StorageError(answer[1], hint=answer[2])
    raise RuntimeError(
        f"the fixity reader failed reading {job.key} at {job.location}:\n{answer[1]}"
    )


def _serve(conn: Connection) -> None:
    """The helper: read each batch sent, answer with what each job found (plain tuples, the
    cheapest to pickle), until the pipe closes."""
    opened: dict[tuple[str, str], LocalFolderLocation] = {}
    while True:
        try:
            roots, jobs = conn.recv()
        except (EOFError, OSError):
            return
        answers: list[tuple[Any, ...]] = []
        for location, key, algorithms, size in jobs:
            try:
                place = (location, roots[location])
                where = opened.get(place)
                if where is None:
                    where = opened[place] = LocalFolderLocation(
                        location, Path(place[1]), fsync=False
                    )
                got = read_copy(where, key, algorithms, size)
                answers.append(("missing",) if got is None else ("read", got.size, got.digests))
            except StorageError as exc:
                answers.append(("storage", exc.message, exc.hint))
            except Exception:  # a defect: reported to the run, which raises it
                answers.append(("defect", traceback.format_exc()))
        try:
            conn.send(answers)
        except (OSError, ValueError):
            return


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
