"""Start-up recovery of interrupted work, driven directly (the kill test drives it for real)."""

from __future__ import annotations

import json
import os
import time

from archive import journal
from archive.services import Services, open_services
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import catalog_counts, staging_debris


def test_unfinished_staging_is_rolled_back(make_services: MakeServices) -> None:
    services = make_services()
    jr = journal.Journal.begin(services.store, "d1", deposit_id="d1", source="bag")
    (jr.object_dir / "v1" / "content").mkdir(parents=True)
    (jr.object_dir / "v1" / "content" / "half.bin").write_bytes(b"half")
    assert journal.recover(services.store, services.session_scope) == []  # locked: still live
    jr.close()
    actions = journal.recover(services.store, services.session_scope)
    assert len(actions) == 1 and "rolled back" in actions[0]
    assert staging_debris(services.store.staging) == []
    assert list(services.store.iter_objects()) == []


def test_garbage_in_staging_is_rolled_back(services: Services) -> None:
    (services.store.staging / "junk").mkdir()
    (services.store.staging / "junk" / "journal.json").write_text("{not json")
    journal.recover(services.store, services.session_scope)
    assert staging_debris(services.store.staging) == []


def test_ready_object_is_completed_on_next_start(make_services: MakeServices) -> None:
    from ingest.service import ingest

    services = make_services(fault_point="")
    result = ingest(services, SAMPLE, depositor="Recovery Test")
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
    fresh = services.store.staging / "fresh"
    fresh.mkdir()  # another process between its mkdir and its lock: no journal yet
    journal.recover(services.store, services.session_scope)
    assert fresh.exists()
    old = time.time() - journal.CREATION_GRACE_SECONDS - 5
    os.utime(fresh, (old, old))
    journal.recover(services.store, services.session_scope)
    assert not fresh.exists()
