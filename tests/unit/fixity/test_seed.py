"""The seed of the coverage rows reads the catalog page by page: on a catalog of several
packages, tiers, replicas (some at an older version, one planned before files had tiers),
evidence records read back or not, the custody log's files and a package without files, it
adds exactly the rows, and makes exactly the tier changes (with ``due_at`` cleared only where
the period shortened), that the seed which read the whole catalog at once made; with pages
of three rows as with the default. No statement it runs returns more rows than a page's worth,
however large the catalog."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, func, select, text, update
from sqlalchemy.orm import Session

from archive import fixity_state
from archive.catalog.tables import (
    AccessAssignment,
    Deposit,
    File,
    FixityCoverage,
    LogFile,
    Package,
    Replica,
    ReplicationPlan,
    Seal,
    SealBatch,
    StorageLocation,
    StoredFile,
    Version,
)
from archive.catalog.upsert import insert_ignore
from archive.config import PRIMARY_LOCATION
from archive.replicas import location_id
from archive.services import Services
from fixity import logfiles, stored, sweep
from fixity.policy import fixity_policy
from fixity.replication import replicate
from fixity.seed import location_ids
from fixity.tiers import PackageTiers, parse_layout
from policies.preservation import Assigned, FixityPolicy, file_tier, package_tier
from tests.servers import PostgresServer
from tests.unit.fixity.conftest import ArchiveFactory, add_package, local_settings
from tests.unit.fixity.test_tiers import tiered_package, tiered_policies

FC = FixityCoverage
SF = StoredFile
T0 = datetime(2027, 1, 1, 12, 0, 0, tzinfo=UTC)


# -- the seed as it was: every row of the catalog read at once (the reference) --------------


def reference_seed(session: Session, policy: FixityPolicy, primary_uri: str, at: datetime) -> int:
    primary = location_id(session, PRIMARY_LOCATION, "local", primary_uri, at)
    tiers = _all_file_tiers(session)
    replicated: dict[str, list[tuple[int, int, datetime | None]]] = {}
    for pid, loc, version, verified in session.connection().execute(
        select(Replica.package_id, Replica.location_id, Replica.version, Replica.verified_at)
    ):
        replicated.setdefault(pid, []).append((loc, version, verified))
    have = {
        (loc, pid, path): (row_id, tier)
        for row_id, loc, pid, path, tier in session.connection().execute(
            select(FC.id, FC.location_id, FC.package_id, FC.content_path, FC.tier)
        )
    }
    new: list[dict[str, Any]] = []
    retier: dict[tuple[str, str], list[int]] = {}
    for pid, path, tier, places in _copies(session, primary, tiers, replicated):
        for loc in places:
            found = have.get((loc, pid, path))
            if found is None:
                new.append(
                    {"location_id": loc, "package_id": pid, "content_path": path, "tier": tier}
                )
            elif found[1] != tier:
                retier.setdefault((found[1], tier), []).append(found[0])
    for path in session.connection().execute(select(LogFile.path)).scalars():
        if (primary, logfiles.LOG_KEY, path) not in have:
            new.append(
                {
                    "location_id": primary,
                    "package_id": logfiles.LOG_KEY,
                    "content_path": path,
                    "tier": logfiles.LOG_TIER,
                }
            )
    insert_ignore(session, FC, new, key=["location_id", "package_id", "content_path"])
    for (old, tier), ids in retier.items():
        values: dict[str, Any] = {"tier": tier}
        if policy.period(tier) < policy.period(old):
            values["due_at"] = None
        session.connection().execute(update(FC).where(FC.id.in_(ids)).values(**values))
    return len(new)


def _all_file_tiers(session: Session) -> dict[str, PackageTiers]:
    assigned: dict[str, list[Assigned]] = {}
    for pid, path, tier in session.connection().execute(
        select(AccessAssignment.package_id, AccessAssignment.path, AccessAssignment.tier)
    ):
        assigned.setdefault(pid, []).append(Assigned(path, tier))
    out: dict[str, PackageTiers] = {}
    for pid, content, logical in session.connection().execute(
        select(File.package_id, File.content_path, File.logical_path)
    ):
        found = out.get(pid)
        if found is None:
            rules = assigned.get(pid, [])
            found = out[pid] = PackageTiers(package_tier(a.tier for a in rules), {})
        found.files[content] = file_tier(logical, assigned.get(pid, []), found.governing)
    return out


def _copies(
    session: Session,
    primary: int,
    tiers: dict[str, PackageTiers],
    replicated: dict[str, list[tuple[int, int, datetime | None]]],
) -> Any:
    names = {i: n for n, i in location_ids(session).items()}
    by_tier = {
        pid: parse_layout(text)[0]
        for pid, text in session.connection().execute(
            select(ReplicationPlan.package_id, ReplicationPlan.tier_locations)
        )
        if text
    }
    for pid, path, version in session.connection().execute(
        select(File.package_id, File.content_path, File.version)
    ):
        tier = tiers[pid].of(path) if pid in tiers else "restricted"
        plan = by_tier.get(pid)
        yield (
            pid,
            path,
            tier,
            [primary]
            + [
                loc
                for loc, v, _ in replicated.get(pid, [])
                if v >= version and (plan is None or names[loc] in plan.get(tier, ()))
            ],
        )
    heads = dict(session.connection().execute(select(Package.id, Package.head)).all())
    inventories: set[tuple[str, int]] = set()
    for pid, path, version, added in session.connection().execute(
        select(SF.package_id, SF.path, SF.version, SF.added_at)
    ):
        tier = tiers[pid].governing if pid in tiers else "restricted"
        if stored.kind_of(path) == "inventory" and version > 0:
            inventories.add((pid, version))
        yield (
            pid,
            path,
            tier,
            [primary]
            + [
                loc
                for loc, v, verified in replicated.get(pid, [])
                if (v >= version if version > 0 else verified is not None and verified >= added)
            ],
        )
    for pid, head in heads.items():
        tier = tiers[pid].governing if pid in tiers else "restricted"
        places = [primary] if (pid, head) in inventories else []
        places += [loc for loc, v, _ in replicated.get(pid, []) if (pid, v) in inventories]
        if places:
            for path in stored.ROOT_FILES:
                yield pid, path, tier, places


# -- a catalog with every case the seed distinguishes ----------------------------------------


def varied_catalog(archive: ArchiveFactory, tmp_path: Path, catalog_url: str) -> Services:
    """Packages of every tier, replicated by their tiers' plans to two locations; then, in
    the catalog: a newer version of one package that no replica holds yet (and a head whose
    inventory is not registered), a plan made before files had tiers, evidence records read
    back at the replicas before and after they were added, a package without files, and the
    custody log's files."""
    services = archive(
        catalog_url, alpha=local_settings(tmp_path / "alpha"), beta=local_settings(tmp_path / "b")
    )
    services.settings = services.settings.model_copy(
        update={"policy_dir": tiered_policies(tmp_path)}
    )
    tiered_package(services, tmp_path)
    plain = [add_package(services, tmp_path, files=n) for n in (2, 5, 3)]
    assert replicate(services).ok
    late = add_package(services, tmp_path, files=4)  # not replicated
    with services.session_scope() as s:
        assert not stored.register(s, services.primary, T0)
        newer, old_plan, sealed = plain
        # a version 2 the replicas do not hold yet
        s.execute(update(Package).where(Package.id == newer).values(head=2))
        s.add_all(
            File(
                package_id=newer,
                version=2,
                logical_path=f"bag/data/v2-{i}.txt",
                content_path=f"v2/content/bag/data/v2-{i}.txt",
                role="payload",
                size=10,
                sha512="0" * 128,
                sha256="0" * 64,
            )
            for i in range(3)
        )
        for path in ("v2/inventory.json", "v2/inventory.json.sha512"):
            s.add(_stored(newer, path, 2, T0))
        # a head without a registered inventory: no root files at the primary
        s.execute(update(Package).where(Package.id == late).values(head=3))
        # a plan made before files had their own tiers: every replica holds every file
        s.execute(
            update(ReplicationPlan)
            .where(ReplicationPlan.package_id == old_plan)
            .values(tier_locations="")
        )
        # records: one added before the replicas were read back, one after
        s.execute(update(Replica).values(verified_at=T0 + timedelta(hours=1)))
        s.add(_stored(sealed, "extensions/custos-evidence/a.ers", 0, T0))
        s.add(_stored(sealed, "extensions/custos-evidence/b.ers", 0, T0 + timedelta(hours=2)))
        # a package without files (its records and inventory only)
        bare = f"urn:uuid:{uuid.uuid4()}"
        depositor = s.execute(select(Package.depositor_id)).scalars().first()
        s.add(
            Deposit(
                id=f"dep-{bare}",
                depositor_id=depositor,
                source_name="bare",
                received_at=T0,
                stored_at=T0,
                bagit_version="1.0",
                fingerprint=f"fp-{bare}",
                payload_files=0,
                payload_bytes=0,
            )
        )
        s.flush()
        s.add(
            Package(
                id=bare,
                deposit_id=f"dep-{bare}",
                depositor_id=depositor,
                created_at=T0,
                head=1,
                object_path="bare/object",
            )
        )
        s.flush()
        s.add(AccessAssignment(package_id=bare, path="", tier="public", legal_basis="published"))
        s.add(_stored(bare, "v1/inventory.json", 1, T0))
        # the custody log's files
        for i in range(4):
            s.add(
                LogFile(
                    path=f"extensions/custos-custody-log/c{i}.json",
                    kind="checkpoint",
                    size=1,
                    sha512="0" * 128,
                    sha256="0" * 64,
                    added_at=T0,
                )
            )
    with services.sessions() as s:
        assert s.execute(select(func.count(Replica.id))).scalar_one() >= 4
        assert s.execute(select(func.count(AccessAssignment.id))).scalar_one() >= 6
    return services


def _stored(pid: str, path: str, version: int, added: datetime) -> StoredFile:
    return StoredFile(
        package_id=pid,
        path=path,
        kind=stored.kind_of(path),
        version=version,
        size=1,
        sha512="0" * 128,
        sha256="0" * 64,
        added_at=added,
    )


def rows(session: Session) -> dict[tuple[str, str, str], tuple[str, datetime | None]]:
    """(location, package, path) -> (tier, due) of every coverage row (by the location's name:
    a seed rolled back leaves PostgreSQL's sequences moved on)."""
    return {
        (r.name, r.package_id, r.content_path): (r.tier, r.due_at)
        for r in session.execute(
            select(StorageLocation.name, FC.package_id, FC.content_path, FC.tier, FC.due_at).join(
                StorageLocation, StorageLocation.id == FC.location_id
            )
        )
    }


def outcome(services: Services, seed: Any, **kwargs: Any) -> tuple[int, dict[Any, Any]]:
    """What ``seed`` adds and changes, rolled back afterwards."""
    policy = fixity_policy(services.settings)
    with services.sessions() as s:
        added = seed(s, policy, services.store.uri, T0, **kwargs)
        found = rows(s)
        s.rollback()
    return added, found


# -- tests ---------------------------------------------------------------------------------


def test_the_paged_seed_adds_and_retiers_what_the_whole_catalog_seed_did(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    services = varied_catalog(archive, tmp_path, catalog_url)
    # from nothing
    added, expected = outcome(services, reference_seed)
    assert added == len(expected) > 60
    locations = {loc for loc, _, _ in expected}
    assert len(locations) == 3  # the primary and both replica locations
    assert {tier for tier, _ in expected.values()} == {"public", "protected-identity", "restricted"}
    assert outcome(services, sweep.seed) == (added, expected)
    assert outcome(services, sweep.seed, batch=3) == (added, expected)
    assert outcome(services, sweep.seed, batch=1) == (added, expected)

    # seeded and checked; then tiers change both ways and some rows are gone
    with services.session_scope() as s:
        sweep.seed(s, fixity_policy(services.settings), services.store.uri, T0)
        s.execute(update(FC).values(due_at=T0 + timedelta(days=20), last_checked_at=T0))
        s.execute(delete(FC).where(FC.id.in_(select(FC.id).order_by(FC.id).limit(7))))
        # protected-identity (30 days) to public (90): due dates are kept
        s.execute(
            update(AccessAssignment)
            .where(AccessAssignment.tier == "protected-identity")
            .values(tier="public")
        )
        # restricted (90 days) to protected-identity (30): due now
        s.execute(
            update(AccessAssignment)
            .where(AccessAssignment.tier == "restricted")
            .values(tier="protected-identity")
        )
        # an undeclared (restricted) folder of a package becomes protected-identity
        s.add(
            AccessAssignment(
                package_id=s.execute(select(File.package_id).order_by(File.package_id))
                .scalars()
                .first(),
                path="data",
                tier="protected-identity",
                legal_basis="order",
            )
        )
    added, expected = outcome(services, reference_seed)
    assert added > 0  # the rows deleted, less or more as the tiers' plans now say
    with services.sessions() as s:
        before = rows(s)
    changed = {k for k, v in expected.items() if k in before and v != before[k]}
    assert any(due is None for tier, due in (expected[k] for k in changed))
    assert any(due is not None for tier, due in (expected[k] for k in changed))
    assert outcome(services, sweep.seed) == (added, expected)
    assert outcome(services, sweep.seed, batch=3) == (added, expected)
    assert outcome(services, sweep.seed, batch=1) == (added, expected)

    # and seeding again changes nothing
    with services.session_scope() as s:
        sweep.seed(s, fixity_policy(services.settings), services.store.uri, T0, batch=3)
    assert outcome(services, sweep.seed, batch=3) == (0, expected)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows each statement that fixity's code runs on a connection returned."""
    found: list[int] = []
    real = Connection.execute

    def counting(self: Connection, statement: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(self, statement, *args, **kwargs)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not result.returns_rows or not caller.startswith("fixity."):
            return result  # the ORM's own reads (one location row) keep their result
        frozen = result.freeze()
        found.append(len(frozen.data))
        return frozen()

    monkeypatch.setattr(Connection, "execute", counting)
    return found


def test_no_read_of_the_seed_returns_more_than_a_pages_worth(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str, reads: list[int]
) -> None:
    services = archive(catalog_url, alpha=local_settings(tmp_path / "alpha"))
    for n in range(6):
        add_package(services, tmp_path, files=3 + n)
    assert replicate(services).ok
    with services.session_scope() as s:
        stored.register(s, services.primary, T0)
    page = 4
    added, expected = outcome(services, reference_seed)

    policy = fixity_policy(services.settings)
    with services.session_scope() as s:
        reads.clear()
        assert sweep.seed(s, policy, services.store.uri, T0, batch=page) == added
        first = list(reads)
    with services.sessions() as s:
        assert rows(s) == expected  # every copy, each once
    with services.session_scope() as s:
        reads.clear()
        assert sweep.seed(s, policy, services.store.uri, T0, batch=page) == 0
        again = list(reads)
    # Each read is a page of files, stored files, packages or log files, or one location's
    # coverage rows of a page, or the replicas, assignments and plans of a page's packages:
    # never more than two rows for each row of the page (a package's root inventory and its
    # sidecar), in a catalog of many pages.
    assert len(expected) > 10 * page
    assert max(first) <= 3 * page and max(again) <= 3 * page
    # the second seed found every copy's coverage row, a page at a time
    assert sum(again) >= 2 * len(expected)
    assert len(again) > len(expected) // page

    # a page of no rows is refused (it would read nothing, or everything)
    with services.session_scope() as s, pytest.raises(ValueError, match="batch"):
        sweep.seed(s, policy, services.store.uri, T0, batch=0)


def test_the_cycle_start_finds_packages_lacking_rows_in_the_catalog(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    """``stored.stale`` (the packages whose inventories or records have no row yet) is a
    query now, not every stored file's row read into memory: the same packages come out."""
    services = varied_catalog(archive, tmp_path, catalog_url)
    with services.sessions() as s:
        assert stored.stale(s) == []
        packages = sorted(s.execute(select(File.package_id).distinct()).scalars())
    first, second, third = packages[:3]
    with services.session_scope() as s:
        # a version inventory without its row
        s.execute(delete(SF).where(SF.package_id == first, SF.path == "v1/inventory.json"))
        # an evidence record sealed and not registered yet; and one registered
        batch = SealBatch(
            created_at=T0,
            algorithm="sha512",
            root="0" * 128,
            tsa="local",
            token=b"",
            gen_time=T0,
            serial_number="1",
        )
        s.add(batch)
        s.flush()
        for pid, record in ((second, "extensions/r/new.ers"), (third, "extensions/r/b.ers")):
            s.add(
                Seal(
                    package_id=pid,
                    subject_path="v1/inventory.json",
                    subject_sha512="0" * 128,
                    batch_id=batch.id,
                    record_path=record,
                )
            )
        s.add(_stored(third, "extensions/r/b.ers", 0, T0))
        s.add(  # a version with no row of any kind
            Version(
                package_id=third,
                number=7,
                created_at=T0,
                inventory_sha512="0" * 128,
            )
        )
    with services.sessions() as s:
        assert stored.stale(s) == sorted([first, second, third])
        assert stored.stale(s, [second, "urn:uuid:none"]) == [second]
        assert stored.stale(s, []) == []


def test_coverage_counts_the_planned_copies_a_page_of_plans_at_a_time(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copies ``custos status`` expects (the snapshot each cycle ends with) are counted
    from the replication plans a page at a time: the same count with pages of one plan,
    two, or all; and it is the number of copies a seed tracks."""
    services = archive(
        catalog_url, alpha=local_settings(tmp_path / "alpha"), beta=local_settings(tmp_path / "b")
    )
    services.settings = services.settings.model_copy(
        update={"policy_dir": tiered_policies(tmp_path)}
    )
    tiered_package(services, tmp_path)
    for n in (2, 3, 4):
        add_package(services, tmp_path, files=n)
    assert replicate(services).ok
    with services.session_scope() as s:
        assert not stored.register(s, services.primary, T0)
        sweep.seed(s, fixity_policy(services.settings), services.store.uri, T0)
    counts = []
    for page in (1, 2, fixity_state.PLAN_PAGE):
        monkeypatch.setattr(fixity_state, "PLAN_PAGE", page)
        with services.sessions() as s:
            counts.append(fixity_state.coverage(s).expected)
            tracked = s.execute(select(func.count(FC.id))).scalar_one()
    assert counts == [tracked] * 3
    with services.sessions() as s:
        planned = s.execute(
            select(func.count()).where(ReplicationPlan.tier_locations != "")
        ).scalar_one()
    assert planned == 4  # more than a page of one or two


def test_on_postgresql_each_page_is_planned_for_its_own_keys(
    archive: ArchiveFactory,
    tmp_path: Path,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page's coverage rows are read with statements planned for that page's keys (no
    generic plan for every page, which scanned the whole coverage table per page); its
    inserts, and the rest of the transaction, keep the setting the transaction had."""
    services = archive(postgres.url(postgres.create_database()))
    add_package(services, tmp_path, files=3)
    reading: list[str] = []
    writing: list[str] = []
    real = Connection.execute
    current = text("SELECT current_setting('plan_cache_mode')")

    def execute(self: Connection, statement: Any, *args: Any, **kwargs: Any) -> Any:
        sql = str(statement)
        if "FROM fixity_coverage" in sql and "content_path) <=" in sql:
            reading.append(real(self, current).scalar_one())  # a page's coverage rows
        elif sql.startswith("INSERT INTO fixity_coverage"):
            writing.append(real(self, current).scalar_one())
        return real(self, statement, *args, **kwargs)

    def setting(session: Session) -> str:
        return str(session.execute(current).scalar_one())

    monkeypatch.setattr(Connection, "execute", execute)
    with services.session_scope() as s:
        assert sweep.seed(s, fixity_policy(services.settings), services.store.uri, T0) > 0
        after = setting(s)
    assert reading and set(reading) == {"force_custom_plan"}
    assert writing and set(writing) == {"auto"}
    assert after == "auto"


def test_on_postgresql_a_pages_coverage_rows_are_read_through_the_index(
    archive: ArchiveFactory,
    tmp_path: Path,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the coverage table's statistics up to date, PostgreSQL expects a page's read of
    its coverage rows to return about a page's rows, and reads them through the coverage
    index: it estimates a comparison of (package, path) pairs from the package alone and each
    bound apart, a quarter of the table for a page amid the others' rows, and at 10 million
    copies scanned the whole table for every page (about 2 s each); at this test's size it
    still read the index, but expected 12,500 rows. Here the archive's packages lie between
    50,000 other coverage rows, half of them before and half after."""
    services = archive(postgres.url(postgres.create_database()))
    for n in range(3):
        add_package(services, tmp_path, files=3 + n)
    with services.session_scope() as s:
        sweep.seed(s, fixity_policy(services.settings), services.store.uri, T0)
        primary = location_ids(s)[PRIMARY_LOCATION]
        s.execute(
            text(
                "INSERT INTO fixity_coverage (location_id, package_id, content_path, tier) "
                "SELECT :loc, 'urn:' || side || '-' || g, 'v1/content/f' || h, 'restricted' "
                "FROM (VALUES ('a'), ('z')) AS sides(side), generate_series(1, 1000) g, "
                "generate_series(1, 25) h"
            ),
            {"loc": primary},
        )
        s.execute(text("ANALYZE fixity_coverage"))
    plans: list[dict[str, Any]] = []
    real = Connection.execute

    def execute(self: Connection, statement: Any, *args: Any, **kwargs: Any) -> Any:
        sql = str(statement)
        if "FROM fixity_coverage" in sql and "content_path) >" in sql:  # a page after the first
            shown = statement.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True})
            plans.append(real(self, text(f"EXPLAIN (FORMAT JSON) {shown}")).scalar_one()[0])
        return real(self, statement, *args, **kwargs)

    monkeypatch.setattr(Connection, "execute", execute)
    with services.session_scope() as s:
        assert sweep.seed(s, fixity_policy(services.settings), services.store.uri, T0, batch=2) == 0
    assert len(plans) > 4
    for plan in plans:
        assert plan["Plan"]["Plan Rows"] < 500, plan  # 1% of the table, for 2 rows
        assert "Seq Scan" not in str(plan) and "fixity_coverage_location_id" in str(plan), plan
