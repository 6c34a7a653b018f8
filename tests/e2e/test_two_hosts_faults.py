"""Two hosts (as in test_two_hosts.py) whose shared servers fail under them, each at a known
point of the work (tests.crash.Pause stops the process there while the server goes):

- SeaweedFS, which holds the primary copy and a replica, killed (SIGKILL) in the middle of
  host B's fixity cycle: the run stops with exit status 74 naming the location, records no
  damage and repairs nothing; once SeaweedFS is back the next cycle checks every copy and
  finds nothing damaged;
- PostgreSQL stopped in the middle of host A's ingest, at each step of its commit: the ingest
  fails saying the catalog could not be reached (the bag is not blamed); once PostgreSQL is
  back the deposit is either whole (catalog and primary agree) or nothing of it is claimed or
  left in the bucket, depositing the same bag again is stored or answered "already held",
  and both hosts work on.

Every server here is the test module's own (they are killed), never the session's."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archive.catalog.tables import Event, FixityCoverage, Package, PendingInstall
from tests.crash import Pause
from tests.e2e.test_one_workflow import DEPOSITOR, ENV
from tests.e2e.test_two_hosts import Hosts, two_hosts
from tests.helpers import make_bag, staging_debris
from tests.servers import (
    PostgresServer,
    RedisServer,
    SeaweedServer,
    start_postgres,
    start_seaweedfs,
)

pytestmark = pytest.mark.slow

SERVERS = Path("/tmp") / "custos-tests"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    server = start_postgres(SERVERS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_seaweedfs() -> Iterator[SeaweedServer]:
    server = start_seaweedfs(SERVERS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hosts(
    tmp_path: Path,
    own_postgres: PostgresServer,
    redis_server: RedisServer,
    own_seaweedfs: SeaweedServer,
) -> Iterator[Hosts]:
    with two_hosts(
        tmp_path,
        own_postgres,
        redis_server,
        own_seaweedfs,
        identify_formats=False,
        fixity={"batch_files": 20},  # a cycle of many batches, to stop a server between two
    ) as made:
        try:
            yield made
        finally:  # a test that failed half-way may leave a server down: the next needs it
            if own_seaweedfs.process.poll() is not None:
                own_seaweedfs.restart()
            if not own_postgres.answers():
                own_postgres.restart()


def a_bag(folder: Path, files: int, size: int = 300) -> Path:
    """A bag of ``files`` random files of about ``size`` bytes."""
    return make_bag(folder, {f"part-{i:04d}.bin": os.urandom(size + i % 7) for i in range(files)})


def ingest(hosts: Hosts, host: str, bag: Path) -> tuple[int, Any, str]:
    return hosts.run(
        host, "ingest", str(bag), "--depositor", DEPOSITOR, "--new-depositor", "--json"
    )


def events(hosts: Hosts, **where: str) -> list[tuple[str, str, str]]:
    """(type, outcome, detail) of the custody events with the columns given."""
    with hosts.catalog() as s:
        query = select(Event.type, Event.outcome, Event.detail).order_by(Event.id)
        for column, value in where.items():
            query = query.where(getattr(Event, column) == value)
        return [tuple(row) for row in s.execute(query).all()]  # type: ignore[misc]


def test_seaweedfs_killed_mid_fixity_cycle_claims_no_damage(
    hosts: Hosts, own_seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    code, stored, said = ingest(hosts, "a", a_bag(tmp_path / "bag", 150))
    assert code == 0, said
    package_id = stored["package_id"]
    code, ran, said = hosts.run("b", "worker", "--until-idle", "--json")
    assert code == 0, said
    assert "replicate" in {r["job"] for r in ran["ran"]}
    replication_events = len(events(hosts, type="replication"))

    pause = Pause("fixity-checked", tmp_path / "pause")  # B's first batch read and judged
    run = hosts.start("b", "fixity", "run", "--all", "--json", env=pause.environ(ENV))
    try:
        pause.wait(run)
        own_seaweedfs.kill()
    finally:
        pause.release()
    out, err = run.communicate(timeout=180)
    assert run.returncode == 74, err  # storage failed (archive.errors.EXIT_CODES)
    report = json.loads(out)
    assert report["status"] == "failed"
    endpoint = own_seaweedfs.endpoint_url
    assert endpoint in report["unreachable"]["primary"]  # it names where it could not read
    assert report["damage"] == report["repairs"] == report["unrecoverable"] == []
    first = report["checked"]
    assert first > 0  # the batch read before the kill is recorded...
    with hosts.catalog() as s:
        copies, checked, claimed = s.execute(
            select(
                func.count(FixityCoverage.id),
                func.count(FixityCoverage.id).filter(FixityCoverage.last_checked_at.is_not(None)),
                func.count(FixityCoverage.id).filter(FixityCoverage.claimed_by.is_not(None)),
            )
        ).one()
    assert first == checked < copies  # ...and only it: the copies it did not read are left
    assert claimed == 0  # released, for the next run (of any host) to take
    assert not [e for e in events(hosts, type="fixity check") if e[1] != "success"]
    assert len(events(hosts, type="replication")) == replication_events  # nothing repaired
    assert hosts.object_files() == []

    own_seaweedfs.restart()
    code, again, said = hosts.run("b", "fixity", "run", "--all", "--json")
    assert code == 0, json.dumps({k: v for k, v in again.items() if v}, indent=1) + said
    assert again["checked"] == copies  # every copy, now
    assert again["damage"] == again["repairs"] == again["unrecoverable"] == []
    code, status, said = hosts.run("b", "fixity", "status", "--json")
    assert code == 0, said
    assert status["copies_damaged"] == status["damage_outstanding"] == 0, status
    assert status["copies_covered"] == status["copies_expected"] == copies, status
    assert not [e for e in events(hosts, type="fixity check") if e[1] != "success"]
    assert len(events(hosts, type="replication")) == replication_events
    for host in ("a", "b"):
        code, _, said = hosts.run(host, "verify", package_id, "--json")
        assert code == 0, said
        code, _, said = hosts.run(host, "audit", "verify", "--json")
        assert code == 0, said
    code, stored, said = ingest(hosts, "a", a_bag(tmp_path / "after", 3))  # A works on
    assert code == 0 and stored["status"] == "stored", said
    assert hosts.object_files() == []


#: Steps of an ingest's commit (ingest/service.py) at which PostgreSQL stops, and the host whose
#: command first opens the archive once it is back (and recovers what the ingest left): before
#: the commit lock is taken (nothing stored); once the install is recorded as pending (the
#: object is then stored regardless); once the object is whole in the bucket (not catalogued:
#: host B finishes it from the pending install, and A's journal then finds it done); and with
#: the transaction that catalogues it open.
INGEST_STEPS = [("inventory", "a"), ("ready", "a"), ("installed", "b"), ("indexed", "a")]


@pytest.mark.parametrize(("step", "first"), INGEST_STEPS, ids=[s for s, _ in INGEST_STEPS])
def test_postgresql_stopped_mid_ingest_claims_nothing_it_does_not_hold(
    hosts: Hosts, own_postgres: PostgresServer, tmp_path: Path, step: str, first: str
) -> None:
    code, _, said = hosts.run("a", "depositors", "add", DEPOSITOR, "--json")
    assert code == 0, said
    bag = a_bag(tmp_path / "bag", 60)
    args = ("ingest", str(bag), "--depositor", DEPOSITOR, "--json")
    pause = Pause(step, tmp_path / "pause")
    run = hosts.start("a", *args, env=pause.environ(ENV))
    try:
        pause.wait(run)
        own_postgres.halt()
    finally:
        pause.release()
    out, err = run.communicate(timeout=180)
    assert "Traceback" not in err, err
    assert run.returncode == 70, (out, err)  # the catalog could not be read or written
    failed = json.loads(out)
    assert failed["status"] == "error" and failed["error"] == "CatalogError", failed
    assert "the bag is not at fault" in failed["message"], failed  # the depositor not blamed
    code, _, said = hosts.run("b", "status", "--json")  # B, meanwhile: told, not crashed
    assert code == 70 and "Traceback" not in said, said

    own_postgres.restart()
    held = the_deposit_is_whole_or_unclaimed(hosts, first)
    assert len(held) == (0 if step == "inventory" else 1), held  # stored, then completed
    work_on_after(hosts, bag, held)


def test_postgresql_restarted_under_a_standing_ingest_leaves_no_host_unusable(
    hosts: Hosts, own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """PostgreSQL stopped and started again while the ingest stands still with the commit
    lock held and the install pending: the ingest goes on against a catalog that lost its
    sessions (and its lock with them)."""
    code, _, said = hosts.run("a", "depositors", "add", DEPOSITOR, "--json")
    assert code == 0, said
    bag = a_bag(tmp_path / "bag", 60)
    pause = Pause("ready", tmp_path / "pause")
    run = hosts.start(
        "a", "ingest", str(bag), "--depositor", DEPOSITOR, "--json", env=pause.environ(ENV)
    )
    try:
        pause.wait(run)
        own_postgres.restart()
    finally:
        pause.release()
    out, err = run.communicate(timeout=180)
    assert "Traceback" not in err, err
    said = json.loads(out)
    if run.returncode != 0:
        assert run.returncode == 70, (out, err)
        assert said["error"] == "CatalogError" and "the bag is not at fault" in said["message"]
    held = the_deposit_is_whole_or_unclaimed(hosts, "a")
    assert len(held) == 1, held  # the object was stored: completed by the ingest or after
    work_on_after(hosts, bag, held)


def the_deposit_is_whole_or_unclaimed(hosts: Hosts, first: str) -> dict[str, str]:
    """Run a command on host ``first`` (which recovers what an ingest cut short left), then on
    the other; check that the catalog and the bucket agree; return the packages held (id:
    object path)."""
    for host in (first, "b" if first == "a" else "a"):  # the first recovers what was left
        code, _, said = hosts.run(host, "status", "--json")
        assert code == 0, said
    assert staging_debris(hosts.folders["a"][0] / "staging") == []  # no journal left on A
    with hosts.catalog() as s:
        held = dict(s.execute(select(Package.id, Package.object_path)).all())
        assert s.execute(select(func.count()).select_from(PendingInstall)).scalar_one() == 0
    with hosts.services("a") as services:
        objects = set(services.primary.iter_objects())
        keys = list(services.primary.location.iter_keys())
    assert objects == set(held.values())  # nothing claimed that is not there, and back
    assert [k for k in keys if "/" in k and not k.startswith("extensions/")] == [
        k for k in keys if any(k.startswith(rel + "/") for rel in held.values())
    ]  # no orphan files of a deposit cut short
    return held


def work_on_after(hosts: Hosts, bag: Path, held: dict[str, str]) -> None:
    """The same bag deposited again is held (``held``: the packages held) or stored; B's
    worker and fixity, and verify and audit verify on both hosts, pass."""
    code, again, said = ingest(hosts, "a", bag)
    assert code == 0, said
    assert again["status"] == ("already-held" if held else "stored"), again
    code, _, said = hosts.run("b", "worker", "--until-idle", "--json")
    assert code == 0, said
    code, checked, said = hosts.run("b", "fixity", "run", "--all", "--json")
    assert code == 0, said
    assert checked["damage"] == checked["repairs"] == checked["unrecoverable"] == []
    for host in ("a", "b"):
        code, _, said = hosts.run(host, "verify", again["package_id"], "--json")
        assert code == 0, said
        code, _, said = hosts.run(host, "audit", "verify", "--json")
        assert code == 0, said
    assert hosts.object_files() == []
