"""The verdict on every case of the BagIt conformance suite (tests/data, public domain).

Valid bags are stored; invalid bags are refused; "warning" bags are stored with the warning
recorded as an event. Where archive policy refuses a valid bag on purpose (holey bags, names
that collide after normalisation or case folding), the refusal names that policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from archive.catalog.tables import Event
from archive.errors import InputRejected
from archive.services import Services
from tests.conftest import CONFORMANCE
from tests.helpers import assert_nothing_stored, catalog_counts, deposit, staging_debris

INDEX = json.loads((CONFORMANCE / "index.json").read_text())["cases"]

#: Valid bags the archive refuses on purpose, and the policy code the refusal must carry.
POLICY_REFUSALS = {
    "v0.97/valid/holey-bag": "POLICY-FETCH",
    "v0.97/warning/duplicate-file-with-different-case": "POLICY-NAME-COLLISION",
}


@pytest.mark.parametrize("case", sorted(INDEX))
def test_conformance_case(case: str, services: Services) -> None:
    meta = INDEX[case]
    bag = CONFORMANCE / case
    policy_code = POLICY_REFUSALS.get(case)
    if meta["expected"] == "invalid" or policy_code:
        with pytest.raises(InputRejected) as err:
            deposit(services, bag, depositor="Conformance Suite")
        codes = {f.code for f in err.value.findings if f.severity == "error"}
        assert codes, f"{case}: refused without an error finding"
        if policy_code:
            assert policy_code in codes, f"{case}: expected {policy_code}, got {codes}"
        for f in err.value.findings:
            assert f.message, f
        assert_nothing_stored(services)
        return
    result = deposit(services, bag, depositor="Conformance Suite")
    assert result.status == "stored", case
    assert catalog_counts(services)["packages"] == 1
    assert staging_debris(services.store.staging) == []
    with services.sessions() as s:
        outcomes = [
            (t, o, d) for t, o, d in s.execute(select(Event.type, Event.outcome, Event.detail))
        ]
    if meta.get("expect_warning"):
        assert result.warnings, f"{case}: a warning case produced no warning"
        recorded = [d for t, o, d in outcomes if t == "validation" and o == "warning"]
        assert len(recorded) >= len(result.warnings)
        for w in result.warnings:
            assert any(w.code in d for d in recorded)
    else:
        assert not result.warnings, f"{case}: unexpected warnings {result.warnings}"


def test_every_case_is_on_disk() -> None:
    for case in INDEX:
        assert (CONFORMANCE / case).is_dir(), case


def test_shared_corpus_matches_copy() -> None:
    """The copy in tests/data is the shared corpus, byte for byte (when shared/ is present)."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "bagit-conformance"
    if not shared.is_dir():
        pytest.skip(
            f"{shared} is absent (a clone without ../shared); the copy in tests/data is used"
        )
    ours = {
        p.relative_to(CONFORMANCE): p.read_bytes() for p in CONFORMANCE.rglob("*") if p.is_file()
    }
    theirs = {p.relative_to(shared): p.read_bytes() for p in shared.rglob("*") if p.is_file()}
    assert ours == theirs
