"""Replication: copies written, read back, and only then recorded; a package is safely stored
only when every copy its plan needs is there. On a folder and on S3 (real SeaweedFS)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ocfl.storage_root import StorageRoot
from sqlalchemy import func, select

from archive.catalog.tables import Event, File, Package, Replica, ReplicationPlan
from archive.config import load_settings
from archive.errors import NotFound, PolicyError
from archive.replicas import replication_state, replication_summary
from archive.storage.locations import open_location
from fixity.replication import location_hint, replicate
from policies.load import load_replication_policy
from tests.servers import SeaweedServer, start_seaweedfs
from tests.unit.fixity.conftest import (
    ArchiveFactory,
    add_package,
    kill_after,
    local_settings,
    replicate_until_ok,
    s3_settings,
)


def events(services, type_: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with services.sessions() as s:
        return [
            tuple(r)
            for r in s.execute(
                select(Event.outcome, Event.detail).where(Event.type == type_).order_by(Event.id)
            )
        ]


def replica_rows(services) -> int:  # type: ignore[no-untyped-def]
    with services.sessions() as s:
        return s.execute(select(func.count()).select_from(Replica)).scalar_one()


def test_replicate_to_a_folder(archive: ArchiveFactory, tmp_path: Path, catalog_url: str) -> None:
    services = archive(catalog_url, second=local_settings(tmp_path / "replica"))
    pid = add_package(services, tmp_path)
    with services.sessions() as s:
        state = replication_state(s, pid)
        assert not state.safely_stored and state.plan is None
        assert "NOT safely stored" in state.describe()

    report = replicate(services)
    assert report.ok, report.as_dict()
    assert [(p, c.location) for p, c in report.copied] == [(pid, "second")]
    with services.sessions() as s:
        state = replication_state(s, pid)
        head = s.get(Package, pid).head  # type: ignore[union-attr]
        assert state.safely_stored, state.describe()
        assert [(r.location, r.version, r.status) for r in state.replicas] == [
            ("second", head, "stored")
        ]
        assert state.plan is not None and state.plan.locations == ("second",)
        assert replication_summary(s).safely_stored == 1
    assert [o for o, _ in events(services, "replication")] == ["success"]
    # the folder is an OCFL storage root that an independent validator accepts
    root = StorageRoot(str(tmp_path / "replica"))
    assert root.validate(), root.log
    # nothing more to do, nothing more recorded
    again = replicate(services)
    assert again.ok and again.copied == [] and again.states == {}
    assert len(events(services, "replication")) == 1


def test_replicate_to_s3_with_object_lock(
    archive: ArchiveFactory, tmp_path: Path, seaweedfs: SeaweedServer
) -> None:
    entry = s3_settings(seaweedfs)
    services = archive(offsite=entry)
    pid = add_package(services, tmp_path)
    report = replicate(services, pid[9:17])
    assert report.ok, report.as_dict()
    copy = report.copied[0][1]
    assert copy.written == copy.files
    loc = open_location("offsite", services.settings.locations["offsite"])
    with services.sessions() as s:
        pkg = s.get(Package, pid)
        assert pkg is not None
        content = s.execute(select(File.content_path).where(File.package_id == pid)).scalars()
        for path in content:
            info = loc.stat(f"{pkg.object_path}/{path}")
            assert info is not None and info.lock_mode == "COMPLIANCE" and info.version_id


def test_a_package_changed_since_ingest_is_not_spread(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    services = archive(second=local_settings(tmp_path / "replica"))
    pid = add_package(services, tmp_path)
    with services.sessions() as s:
        pkg = s.get(Package, pid)
        assert pkg is not None
        victim = (
            s.execute(
                select(File.content_path).where(File.package_id == pid, File.role == "payload")
            )
            .scalars()
            .first()
        )
    path = services.store.object_root(pkg.object_path) / str(victim)
    data = bytearray(path.read_bytes())
    data[7] ^= 0x01
    path.write_bytes(bytes(data))
    report = replicate(services)
    assert not report.ok
    assert report.failures and "does not match" in report.failures[0][2]
    assert replica_rows(services) == 0
    assert [o for o, _ in events(services, "replication")] == ["failure"]
    with services.sessions() as s:
        assert not replication_state(s, pid).safely_stored
    # the damaged file never reached the replica
    assert not any(p.name == Path(str(victim)).name for p in (tmp_path / "replica").rglob("*"))


def test_no_location_configured_is_a_shortfall(archive: ArchiveFactory, tmp_path: Path) -> None:
    services = archive()
    pid = add_package(services, tmp_path)
    report = replicate(services)
    assert not report.ok
    state = report.states[pid]
    assert state["safely_stored"] is False
    assert state["plan"]["shortfall"] == 1
    assert "more location(s) needed" in state["summary"]
    assert report.hint is not None and report.as_dict()["hint"] == report.hint
    assert "add 1 more replica location(s)" in report.hint
    assert str(services.settings.data_dir / "custos.toml") in report.hint
    assert '[locations.second-disk]\nkind = "local"\n' in report.hint
    assert '[locations.offsite]\nkind = "s3"\n' in report.hint


def test_the_hint_names_the_locations_a_policy_names(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "replication.toml").write_text(
        'id = "replication"\nversion = 4\neffective_from = "2026-01-01"\n'
        '[tiers.public]\ncopies = 2\nlocations = ["cloud"]\n'
        '[tiers.restricted]\ncopies = 3\nlocations = ["vault", "cloud"]\n'
        "[tiers.protected-identity]\ncopies = 2\n"
    )
    settings = load_settings(
        data_dir=tmp_path / "data",
        environ={"CUSTOS_LOCATIONS__VAULT__KIND": "local", "CUSTOS_LOCATIONS__VAULT__PATH": "/v"},
    )
    hint = location_hint(settings, load_replication_policy(policies), 1)
    assert "the replication policy (replication v4) names location(s) the settings lack: " in hint
    assert "lack: cloud; add each under that key" in hint
    assert "[locations.cloud]\n" in hint and "[locations.vault]" not in hint
    assert "CUSTOS_LOCATIONS__CLOUD__ACCESS_KEY" in hint


def test_unknown_package_and_bad_policy(archive: ArchiveFactory, tmp_path: Path) -> None:
    services = archive(second=local_settings(tmp_path / "replica"))
    add_package(services, tmp_path)
    with pytest.raises(NotFound):
        replicate(services, "no-such-package")
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "replication.toml").write_text(
        'id = "replication"\nversion = 1\neffective_from = "2026-01-01"\n'
        "[tiers.public]\ncopies = 2\nmirror = true\n"
    )
    bad = archive(second=local_settings(tmp_path / "replica"))
    bad = type(bad)(
        bad.settings.model_copy(update={"policy_dir": policies}),
        bad.engine,
        bad.sessions,
        bad.store,
        bad.primary,
    )
    with pytest.raises(PolicyError) as caught:
        replicate(bad)
    text = caught.value.diagnostics()
    assert "replication.toml" in text and "mirror" in text and "restricted" in text
    assert replica_rows(services) == 0
    with services.sessions() as s:
        assert s.execute(select(func.count()).select_from(ReplicationPlan)).scalar_one() == 0
    assert not (tmp_path / "replica").exists()


def test_unreachable_location(archive: ArchiveFactory, tmp_path: Path) -> None:
    from tests.servers import free_port

    dead = {
        "kind": "s3",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "bucket": "nobody-home",
        "access_key": "a",
        "secret_key": "b",
        "retention_days": 1,
        "connect_timeout": 0.5,
        "max_attempts": 1,
    }
    services = archive(offsite=dead)
    first = add_package(services, tmp_path)
    second = add_package(services, tmp_path)
    report = replicate(services)
    assert not report.ok
    assert {p for p, _, _ in report.failures} == {first, second}
    assert all("did not answer" in why for _, _, why in report.failures)
    assert replica_rows(services) == 0
    # one failure event for the location, not one per retry
    assert [o for o, _ in events(services, "replication")] == ["failure"]


@pytest.mark.slow
def test_s3_killed_mid_replication_claims_nothing_and_resumes(
    archive: ArchiveFactory, tmp_path: Path
) -> None:
    server = start_seaweedfs(Path("/tmp") / "custos-tests")
    try:
        services = archive(offsite=s3_settings(server))
        pid = add_package(services, tmp_path, files=30)
        report = replicate(services, progress=kill_after(server, 12))
        assert not report.ok and report.copied == []
        assert "did not answer" in report.failures[0][2]
        assert replica_rows(services) == 0
        with services.sessions() as s:
            assert not replication_state(s, pid).safely_stored
        assert [o for o, _ in events(services, "replication")] == ["failure"]

        server.restart()
        resumed = replicate_until_ok(services)  # work resumes once the server serves again
        assert resumed.ok, resumed.as_dict()
        outcome = resumed.copied[0][1]
        assert 0 < outcome.written < outcome.files  # what was there was read back, not resent
        with services.sessions() as s:
            assert replication_state(s, pid).safely_stored
        outcomes = [o for o, _ in events(services, "replication")]
        assert outcomes[0] == "failure" and outcomes[-1] == "success"
        assert "success" not in outcomes[:-1]
    finally:
        server.stop()
