"""Every hit of a public search is checked again against the stored access records before it
is returned: the search index is derived data, and if it were ever stale (a tier or consent
changed in the catalog without reindexing) the search fails closed. The records are read by
the search's own statement, for the page's packages only."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import update

from access.decisions.rules import access_policy
from access.search.service import search
from archive.catalog.tables import AccessAssignment, ConsentRecord
from archive.services import Services
from tests.api_support import Case, deposit_case
from tests.conftest import MakeServices


@pytest.fixture
def two_public(
    make_services: MakeServices, catalog_url: str, tmp_path: Path
) -> tuple[Services, list[Case]]:
    services = make_services(catalog_url)
    held = [
        deposit_case(services, tmp_path / "bags", Case("public", "public", "none", marker))
        for marker in ("zqrecheckone", "zqrechecktwo")
    ]
    return services, held


def found(services: Services, word: str) -> set[str]:
    with services.sessions() as session:
        result = search(session, access_policy(services.settings), word)
    return {h.package_id for h in result.hits}


def test_a_stale_index_never_shows_a_package_whose_tier_closed(
    two_public: tuple[Services, list[Case]],
) -> None:
    services, (one, two) = two_public
    assert found(services, "mechanism") == {one.package_id, two.package_id}
    with services.session_scope() as s:  # behind the index's back
        s.execute(
            update(AccessAssignment)
            .where(AccessAssignment.package_id == one.package_id)
            .values(
                tier="restricted",
                sunset=date(2090, 1, 1),
                successor="public",
                sunset_basis="Test: closed until 2090",
            )
        )
    assert found(services, "mechanism") == {two.package_id}
    assert found(services, one.marker) == set()
    assert found(services, two.marker) == {two.package_id}


def test_a_stale_index_never_shows_a_package_whose_consent_was_withdrawn(
    two_public: tuple[Services, list[Case]],
) -> None:
    services, (one, two) = two_public
    with services.session_scope() as s:
        s.execute(
            update(ConsentRecord)
            .where(ConsentRecord.package_id == two.package_id)
            .values(scopes="withdrawn")
        )
    assert found(services, "mechanism") == {one.package_id}
    assert found(services, two.marker) == set()
