"""A catalog that stops answering during a deposit is the catalog's failure, never the
depositor's: a CatalogError (exit status 70) saying the bag is not at fault and what to do,
not a driver's error. Before the object is complete nothing is stored or left; after, the
journal is kept and the next start completes the deposit, which depositing the bag again then
finds held. (tests/e2e/test_two_hosts_faults.py stops a real PostgreSQL at each step.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from archive.errors import CatalogError
from ingest import service
from tests.conftest import MakeServices
from tests.helpers import catalog_counts, deposit, make_bag, staging_debris


def gone(*_: Any, **__: Any) -> None:
    """What the driver raises when the catalog's server stopped under a session."""
    raise OperationalError("SELECT ...", {}, Exception("server closed the connection unexpectedly"))


def a_bag(folder: Path) -> Path:
    return make_bag(folder, {"statement.txt": b"witness statement\n", "map.bin": b"\x00" * 99})


def test_a_catalog_lost_before_the_object_is_complete_stores_nothing(
    make_services: MakeServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services()
    monkeypatch.setattr(service, "deposit_by_fingerprint", gone)
    with pytest.raises(CatalogError) as raised:
        deposit(services, a_bag(tmp_path / "bag"), depositor="Test Mechanism")
    error = raised.value
    assert error.exit_code == 70
    assert "the bag is not at fault" in error.message and "nothing was stored" in error.message
    assert "server closed the connection" in error.message  # what the catalog answered
    assert "database_url" in error.hint and "deposit the bag again" in error.hint
    assert catalog_counts(services)["packages"] == 0
    assert staging_debris(services.store.staging) == []  # no journal, nothing staged


def test_a_catalog_lost_once_the_object_is_stored_is_completed_by_the_next_start(
    make_services: MakeServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services()
    bag = a_bag(tmp_path / "bag")
    with monkeypatch.context() as patch:
        patch.setattr(service, "index_object", gone)
        with pytest.raises(CatalogError) as raised:
            deposit(services, bag, depositor="Test Mechanism")
    error = raised.value
    assert "the bag is not at fault" in error.message and "cut short" in error.message
    assert "next custos command on this host" in error.hint
    assert "deposit the bag again" in error.hint
    assert catalog_counts(services)["packages"] == 0
    assert staging_debris(services.store.staging)  # the journal, kept to finish the deposit
    services.close()

    again = make_services()  # the next start
    assert any("completed interrupted deposit" in line for line in again.recovered)
    assert catalog_counts(again)["packages"] == 1
    assert staging_debris(again.store.staging) == []
    assert deposit(again, bag, depositor="Test Mechanism").status == "already-held"
