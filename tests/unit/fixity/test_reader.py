"""The helper process that reads a batch's local copies while the run records the last batch
(fixity.reader): a run of several batches uses it and checks every copy once; a run of one
batch does not start it; a helper that dies leaves its batch to the run; a defect in it is
raised, not taken for damage; it ends when the process that started it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archive.catalog.tables import FixityCoverage
from archive.digest import digest_bytes
from archive.errors import StorageError
from archive.services import Services
from archive.storage.replica import LocalFolderLocation, LocationUnavailable, ObjectReader
from fixity import reader, service
from fixity.replication import replicate
from fixity.service import run_cycle
from tests.unit.fixity.conftest import (
    ArchiveFactory,
    add_package,
    checks_per_copy,
    local_settings,
    small_batches,
)


def two_local_copies(archive: ArchiveFactory, tmp_path: Path, catalog: str = "") -> Services:
    services = archive(catalog, second=local_settings(tmp_path / "replica"))
    for _ in range(2):
        add_package(services, tmp_path, files=6)
    assert replicate(services).ok
    return services


def helpers_started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the process id of every helper started from now on."""
    started: list[int] = []
    real = reader.Reader._connection

    def spy(self: reader.Reader) -> object:
        fresh = self._conn is None
        conn = real(self)
        if fresh and self._process is not None:
            started.append(self._process.pid)
        return conn

    monkeypatch.setattr(reader.Reader, "_connection", spy)
    return started


def test_a_run_of_several_batches_reads_in_a_helper_and_checks_each_copy_once(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = two_local_copies(archive, tmp_path, catalog_url)
    started = helpers_started(monkeypatch)
    one = run_cycle(services, full=True)  # one batch: read in the run
    assert one.ok and started == []
    small_batches(services, 4)
    report = run_cycle(services, full=True)
    assert report.ok and report.damage == [] and report.checked == one.checked
    assert len(started) == 1
    counts = checks_per_copy(services)
    assert set(counts.values()) == {2} and len(counts) == one.checked  # once a cycle each
    # the helper has ended with the run
    with pytest.raises(ProcessLookupError):
        os.kill(started[0], 0)


def test_a_run_of_large_copies_reads_them_itself(
    archive: ArchiveFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = two_local_copies(archive, tmp_path)
    small_batches(services, 4)
    started = helpers_started(monkeypatch)
    monkeypatch.setattr(service, "READ_AHEAD_BELOW", 1)  # no batch here averages under a byte
    report = run_cycle(services, full=True)
    assert report.ok and started == []
    counts = checks_per_copy(services)
    assert set(counts.values()) == {1} and len(counts) == report.checked


def test_a_run_reads_ahead_only_while_its_batches_are_small(
    archive: ArchiveFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of small copies (a package's tag files, inventories' sidecars) go to the helper
    and the run claims the next meanwhile; a batch of large ones (here, more than 2,000 bytes
    on average: the payload files) is read in the run, which holds no other claim meanwhile,
    and reading ahead starts again at the next small batch."""
    services = two_local_copies(archive, tmp_path)
    small_batches(services, 4)
    monkeypatch.setattr(service, "READ_AHEAD_BELOW", 2000)
    batches: list[tuple[bool, bool]] = []  # (small, sent to the helper), in order
    start = reader.Reader.start

    def spy_start(self: reader.Reader, jobs: list[reader.Job], *, helper: bool) -> object:
        pending = start(self, jobs, helper=helper)
        batches.append((sum(j.size for j in jobs) < 2000 * len(jobs), bool(pending.sent)))
        return pending

    held_while_large: list[int] = []
    read_copy = reader.read_copy

    def spy_read(where: object, key: str, algorithms: tuple[str, ...], size: int) -> object:
        if size >= 2000 and key.endswith(".bin"):  # a payload file, read in the run
            with services.sessions() as s:
                held_while_large.append(
                    s.execute(
                        select(func.count()).where(FixityCoverage.claimed_by.is_not(None))
                    ).scalar_one()
                )
        return read_copy(where, key, algorithms, size)  # type: ignore[arg-type]

    monkeypatch.setattr(reader.Reader, "start", spy_start)
    monkeypatch.setattr(reader, "read_copy", spy_read)
    report = run_cycle(services, full=True)
    assert report.ok and report.damage == []
    assert set(checks_per_copy(services).values()) == {1}
    assert not any(sent for small, sent in batches if not small)  # large: never the helper
    assert any(sent for small, sent in batches if small)
    # reading ahead starts again after large batches
    first_large = next(i for i, (small, _) in enumerate(batches) if not small)
    assert any(sent for _, sent in batches[first_large:])
    # a large batch is read while the run holds only its own claims (4 copies a batch)
    assert held_while_large and max(held_while_large) <= 4, held_while_large


def test_damage_read_by_the_helper_is_found_and_repaired(
    archive: ArchiveFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = two_local_copies(archive, tmp_path)
    small_batches(services, 3)
    started = helpers_started(monkeypatch)
    replica = tmp_path / "replica"
    payload = sorted(p for p in replica.rglob("*.bin") if "/content/" in str(p))
    payload[1].write_bytes(payload[1].read_bytes()[:-1])  # truncated
    payload[-2].unlink()  # missing
    flipped = bytearray(payload[-1].read_bytes())
    flipped[0] ^= 1
    payload[-1].write_bytes(bytes(flipped))
    report = run_cycle(services, full=True)
    assert len(started) == 1
    kinds = sorted(line.split(": ")[3].split(" ")[0] for line in report.damage)
    assert kinds == ["DOES", "MISSING", "TRUNCATED"], report.damage
    assert len(report.repairs) == 3 and report.ok
    assert run_cycle(services, full=True).damage == []


def test_a_helper_that_dies_leaves_its_batch_to_the_run(
    archive: ArchiveFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = two_local_copies(archive, tmp_path)
    small_batches(services, 4)
    started = helpers_started(monkeypatch)
    real = reader.Pending.results
    calls = 0

    def results(self: reader.Pending, skip: object) -> list[reader.Outcome]:
        nonlocal calls
        calls += 1
        if calls == 3:  # the helper is reading this batch (and took the last)
            os.kill(started[0], signal.SIGKILL)
        return real(self, skip)  # type: ignore[arg-type]

    monkeypatch.setattr(reader.Pending, "results", results)
    report = run_cycle(services, full=True)
    assert calls > 4 and len(started) == 1  # the rest read in the run, no second helper
    assert report.ok and report.damage == []
    counts = checks_per_copy(services)
    assert set(counts.values()) == {1} and len(counts) == report.checked


def test_a_defect_in_the_helper_is_raised_not_taken_for_damage(tmp_path: Path) -> None:
    folder = LocalFolderLocation("primary", tmp_path / "root", fsync=False)
    folder.ensure()
    (tmp_path / "root" / "a.txt").write_bytes(b"abc")
    helper = reader.Reader(lambda name: folder)
    try:
        jobs = [reader.Job("primary", "a.txt", ("sha256",), 3)]
        got = helper.start(jobs, helper=True).results(skip=lambda name: False)
        assert got[0] is not None and not isinstance(got[0], StorageError | reader.Skipped)
        assert got[0].digests == {"sha256": digest_bytes(b"abc", "sha256")}
        missing = [reader.Job("primary", "b.txt", ("sha256",), 3)]
        assert helper.start(missing, helper=True).results(skip=lambda name: False) == [None]
        bad = [reader.Job("primary", "a.txt", ("no-such-digest",), 3)]
        pending = helper.start(bad, helper=True)
        with pytest.raises(
            RuntimeError, match=r"fixity reader failed reading a\.txt(.|\n)*no-such-digest"
        ):
            pending.results(skip=lambda name: False)
    finally:
        helper.close()


def test_the_helper_ends_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from archive.storage.replica import LocalFolderLocation, LocationUnavailable, ObjectReader
        from fixity import reader, service
        folder = LocalFolderLocation("primary", Path({str(tmp_path / "root")!r}), fsync=False)
        helper = reader.Reader(lambda name: folder)
        helper.start([reader.Job("primary", "x", ("sha256",), 1)], helper=True).results(
            skip=lambda name: False
        )
        print(helper._process.pid, flush=True)
        time.sleep(120)
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as run:
        try:
            assert run.stdout is not None
            pid = int(run.stdout.readline())
            os.kill(run.pid, signal.SIGKILL)
            run.wait()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.05)
            assert not alive(pid)
        finally:
            if run.poll() is None:
                run.kill()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped by its new parent has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


class Unanswering(LocalFolderLocation):
    """A location whose every read fails as an unreachable server's does (counted); not a
    local folder to the reader, so its copies are read in the run."""

    def __init__(self, root: Path) -> None:
        super().__init__("offsite", root, fsync=False)
        self.tries = 0

    def open(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        self.tries += 1
        raise LocationUnavailable("location offsite: connection refused")


def test_a_location_that_fails_is_tried_once_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = LocalFolderLocation("primary", tmp_path / "root", fsync=False)
    folder.ensure()
    (tmp_path / "root" / "a.txt").write_bytes(b"abc")
    offsite = Unanswering(tmp_path / "offsite")
    monkeypatch.setattr(reader, "LocalFolderLocation", type("Folder", (), {}))  # none is local
    places = {"primary": folder, "offsite": offsite}
    helper = reader.Reader(places.__getitem__)
    jobs = [reader.Job("offsite", f"k{i}", ("sha256",), 3) for i in range(5)]
    jobs.insert(2, reader.Job("primary", "a.txt", ("sha256",), 3))
    got = helper.start(jobs, helper=True).results(skip=lambda name: False)
    assert offsite.tries == 1 and helper._process is None
    assert isinstance(got[0], StorageError) and "connection refused" in got[0].message
    assert got[1] is reader.SKIPPED and got[3:] == [reader.SKIPPED] * 3
    assert got[2] is not None and not isinstance(got[2], StorageError | reader.Skipped)
    assert got[2].size == 3
