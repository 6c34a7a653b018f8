"""Start-up recovery of interrupted work, driven directly (the kill test drives it for real)."""

from __future__ import annotations

import json
import os
import time

from archive import journal
from archive.services import Services, open_services
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import catalog_counts, pending_install, staging_debris


def test_unfinished_staging_is_rolled_back(make_services: MakeServices) -> None:
    services = make_services()
    jr = journal.Journal.begin(services.store, "d1", deposit_id="d1", source="bag")
    (jr.object_dir / "v1" / "content").mkdir(parents=True)
    (jr.object_dir / "v1" / "content" / "half.bin").write_bytes(b"half")
    assert journal.recover(services.primary, services.session_scope) == []  # locked: still live
    jr.close()
    actions = journal.recover(services.primary, services.session_scope)
    assert len(actions) == 1 and "rolled back" in actions[0]
    assert staging_debris(services.store.staging) == []
    assert list(services.store.iter_objects()) == []


def test_garbage_in_staging_is_rolled_back(services: Services) -> None:
    (services.store.staging / "junk").mkdir()
    (services.store.staging / "junk" / "journal.json").write_text("{not json")
    journal.recover(services.primary, services.session_scope)
    assert staging_debris(services.store.staging) == []


def test_ready_object_is_completed_on_next_start(make_services: MakeServices) -> None:
    from tests.helpers import deposit

    services = make_services()
    result = deposit(services, SAMPLE, depositor="Recovery Test")
    # Simulate the crash window after the object was moved into place but before the commit:
    with services.session_scope() as s:
        from archive.catalog.index import remove_package

        remove_package(s, result.package_id)
    folder = services.store.staging / "d2"
    folder.mkdir()
    (folder / "journal.json").write_text(
        json.dumps(
            {
                "kind": "deposit",
                "state": "ready",
                "deposit_id": result.deposit_id,
                "object_id": result.package_id,
            }
        )
    )
    assert catalog_counts(services)["packages"] == 0
    again = open_services(services.settings)
    try:
        assert any("completed" in a for a in again.recovered)
        assert catalog_counts(again)["packages"] == 1
        assert staging_debris(again.store.staging) == []
    finally:
        again.close()


def test_folder_being_created_is_left_alone_then_cleared_when_old(services: Services) -> None:
    # Another process between its mkdir and its lock: the folder still has its creating name.
    fresh = services.store.staging / f"{journal.CREATING}d3"
    fresh.mkdir()
    assert journal.recover(services.primary, services.session_scope) == []
    assert fresh.exists()
    old = time.time() - journal.CREATION_GRACE_SECONDS - 5
    os.utime(fresh, (old, old))
    actions = journal.recover(services.primary, services.session_scope)
    assert not fresh.exists() and len(actions) == 1


def test_a_named_folder_is_locked_from_birth(services: Services) -> None:
    jr = journal.Journal.begin(services.store, "d4", deposit_id="d4", source="bag")
    assert [p.name for p in services.store.staging.iterdir() if p.is_dir()] == ["d4"]
    assert json.loads((jr.folder / journal.JOURNAL).read_text())["state"] == "receiving"
    jr.close()


def test_a_process_killed_before_its_journal_is_rolled_back_at_once(services: Services) -> None:
    # Its creator locked it, was killed before writing the journal, and its lock died with it:
    # the next start removes it however young it is (before, it waited out a grace period
    # and an immediate re-run left it behind).
    dead = services.store.staging / "d5"
    dead.mkdir()
    (dead / journal.LOCK).touch()
    actions = journal.recover(services.primary, services.session_scope)
    assert len(actions) == 1 and "rolled back" in actions[0]
    assert staging_debris(services.store.staging) == []


def test_a_long_upload_is_never_taken_for_debris(services: Services) -> None:
    from ingest.upload import UploadSink

    sink = UploadSink(services.settings, "bag.zip", "sha256", "0" * 64)
    sink.write(b"first chunk")
    sink._fh.flush()
    old = time.time() - 3600  # an hour into a multi-GB upload
    os.utime(sink.folder, (old, old))
    assert journal.recover(services.primary, services.session_scope) == []
    assert sink.path.read_bytes() == b"first chunk"
    sink.discard()
    assert staging_debris(services.store.staging) == []


def test_an_abandoned_upload_is_removed_without_a_custody_event(
    make_services: MakeServices,
) -> None:
    from ingest.upload import UploadSink

    services = make_services()
    before = catalog_counts(services)["events"]
    sink = UploadSink(services.settings, "bag.zip", "sha256", "0" * 64)
    sink.write(b"partial")
    sink._fh.close()
    sink._journal.close()  # the serving process died: its lock is gone
    actions = journal.recover(services.primary, services.session_scope)
    assert len(actions) == 1 and "upload" in actions[0]
    assert staging_debris(services.store.staging) == []
    assert catalog_counts(services)["events"] == before


def test_scratch_folder_is_locked_while_used_and_removed_after(services: Services) -> None:
    with journal.scratch(services.store.staging, "repair-") as tmp:
        (tmp / "copy").write_bytes(b"x")
        old = time.time() - 3600
        os.utime(tmp, (old, old))
        assert journal.recover(services.primary, services.session_scope) == []
        assert (tmp / "copy").exists()
    assert staging_debris(services.store.staging) == []
    try:
        with journal.scratch(services.store.staging, "repair-"):
            raise RuntimeError("the download failed")
    except RuntimeError:
        pass
    assert staging_debris(services.store.staging) == []


def test_a_recovered_deposit_held_meanwhile_is_answered_as_a_duplicate(
    make_services: MakeServices,
) -> None:
    """The crash window after the object was stored, before the catalog commit; meanwhile
    the same bag was deposited again (here or on another host sharing the catalog)."""
    from archive.catalog.index import remove_package
    from archive.catalog.tables import Event
    from archive.storage import ocfl
    from tests.helpers import deposit

    services = make_services()
    lost = deposit(services, SAMPLE, depositor="Recovery Test")
    with services.session_scope() as s:
        remove_package(s, lost.package_id)
    won = deposit(services, SAMPLE, depositor="Recovery Test")
    assert won.status == "stored" and won.package_id != lost.package_id
    folder = services.store.staging / "d3"
    folder.mkdir()
    (folder / "journal.json").write_text(
        json.dumps(
            {
                "kind": "deposit",
                "state": "ready",
                "deposit_id": lost.deposit_id,
                "object_id": lost.package_id,
            }
        )
    )
    before = catalog_counts(services)
    again = open_services(services.settings)
    try:
        [action] = again.recovered
        assert f"same payload as deposit {won.deposit_id}" in action
        assert "nothing was stored twice" in action and "was removed" in action
        # the orphan is gone from storage; the catalog holds the winner only
        assert not services.primary.has_object(lost.package_id)
        assert list(services.primary.iter_objects()) == [ocfl.object_rel_path(won.package_id)]
        after = catalog_counts(again)
        assert after["packages"] == before["packages"] == 1
        with again.sessions() as s:
            last = s.query(Event).order_by(Event.id.desc()).first()
            assert last is not None and last.type == "recovery" and last.outcome == "warning"
        assert staging_debris(services.store.staging) == []
        # the host is usable: the next start has nothing to recover
        third = open_services(services.settings)
        assert third.recovered == []
        third.close()
    finally:
        again.close()


def test_an_install_another_host_left_unfinished_is_completed_here(
    make_services: MakeServices,
) -> None:
    from archive.catalog import locks
    from archive.catalog.index import remove_package
    from archive.catalog.tables import Package, PendingInstall
    from tests.helpers import deposit

    services = make_services()
    stored = deposit(services, SAMPLE, depositor="Recovery Test")
    with services.session_scope() as s:
        remove_package(s, stored.package_id)  # stored, never catalogued: no journal here
    pending_install(services, stored.package_id, stored.deposit_id)
    # While a commit is in progress anywhere, the row may be live: it is left alone.
    with locks.held(services.engine, "commit", wait=True):
        busy = open_services(services.settings)
        assert busy.recovered == []
        busy.close()
    again = open_services(services.settings)
    try:
        [action] = again.recovered
        assert action.startswith("a deposit cut short on host-b (process 4242)")
        assert action.endswith(f"was completed, as package {stored.package_id}")
        with again.sessions() as s:
            assert s.get(Package, stored.package_id) is not None
            assert s.query(PendingInstall).count() == 0
        third = open_services(services.settings)
        assert third.recovered == []
        third.close()
    finally:
        again.close()
