"""Tier, sunset and consent declared at deposit (bag-info and custos-access.txt), checked
against the access policy; undeclared material is restricted; a bad declaration refuses the
deposit with its line and reason and leaves nothing behind."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from archive.services import Services
from tests.conftest import SAMPLE
from tests.functional.test_cli import custos
from tests.helpers import assert_nothing_stored, deposit, make_bag

PAYLOAD = {
    "public/report.txt": b"a published report\n",
    "testimonies/w1.txt": b"a testimony\n",
    "testimonies/w2.txt": b"another testimony\n",
    "letters/letter.txt": b"a letter\n",
}
SIDECAR_HEAD = "# path\ttier\tsunset\tsuccessor\tconsent\tlegal basis\n"


def bag_with(tmp_path: Path, info: dict[str, str], sidecar: str | None) -> Path:
    extra = {"custos-access.txt": (SIDECAR_HEAD + sidecar).encode()} if sidecar else {}
    return make_bag(tmp_path / "bag", PAYLOAD, info=info, extra_tag_files=extra)


def access_of(data: Path, package: str) -> dict[str, dict[str, Any]]:
    code, body, _ = custos(data, "show", package, "--json")
    assert code == 0
    return {a["path"]: a for a in body["access"]}


def test_declared_tiers_sunsets_and_consent_are_recorded(tmp_path: Path) -> None:
    sidecar = (
        "data/testimonies\tprotected-identity\t-\t-\tprosecution\tProtective measures order 7\n"
        "data/testimonies/w2.txt\tprotected-identity\t2090-01-01\tpublic\twithdrawn\tOrder 8\n"
        "data/letters/\trestricted\t-\t-\t-\tDeposit agreement, art. 4\n"
    )
    info = {
        "Access-Tier": "public",
        "Access-Legal-Basis": "Published by the mechanism",
        "Consent-Scopes": "public, research",
    }
    bag = bag_with(tmp_path, info, sidecar)
    code, body, err = custos(
        tmp_path / "d", "ingest", str(bag), "--depositor", "M", "--new-depositor", "--json"
    )
    assert code == 0, err
    access = access_of(tmp_path / "d", body["package_id"])
    assert access[""]["tier"] == "public" and access[""]["consent"] == ["public", "research"]
    folder = access["data/testimonies"]
    today = date.today()
    assert folder["tier"] == "protected-identity" and folder["successor"] == "restricted"
    assert folder["sunset"] == date(today.year + 75, today.month, today.day).isoformat()
    assert folder["consent"] == ["prosecution"]
    file = access["data/testimonies/w2.txt"]
    assert file["sunset"] == "2090-01-01" and file["successor"] == "public"
    assert file["consent"] == ["withdrawn"]
    letters = access["data/letters"]  # a trailing slash names the same folder
    assert letters["tier"] == "restricted" and letters["successor"] == "public"
    assert letters["consent"] is None  # "-": the package's consent applies
    # The object carries it, and a rebuilt catalog has it back.
    for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (tmp_path / "d" / name).unlink(missing_ok=True)
    code, _, _ = custos(tmp_path / "d", "catalog", "rebuild", "--json")
    assert code == 0 and access_of(tmp_path / "d", body["package_id"]) == access
    # The event says what tiers were given, never which paths (they may name people).
    code, shown, _ = custos(tmp_path / "d", "show", body["package_id"], "--json")
    [tier_event] = [e for e in shown["events"] if e["type"] == "tier change"]
    assert "the package is public" in tier_event["detail"]
    assert "testimonies" not in tier_event["detail"] and "letters" not in tier_event["detail"]


def test_undeclared_material_is_restricted_and_consented_to_nothing(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a\n"})
    code, body, _ = custos(
        tmp_path / "d", "ingest", str(bag), "--depositor", "M", "--new-depositor", "--json"
    )
    assert code == 0
    [package] = access_of(tmp_path / "d", body["package_id"]).values()
    assert package["tier"] == "restricted" and package["successor"] == "public"
    assert "fail closed" in package["legal_basis"] and package["consent"] == []


def test_the_sample_holding_declares_its_access(tmp_path: Path) -> None:
    code, body, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0
    access = access_of(tmp_path, body["package_id"])
    assert access[""]["tier"] == "public"
    assert access["data/documents/transfer-letter.txt"]["tier"] == "restricted"


@pytest.mark.parametrize(
    ("info", "sidecar", "code", "where"),
    [
        ({"Access-Tier": "secret", "Access-Legal-Basis": "x"}, None, "ACCESS-TIER", "bag-info.txt"),
        ({"Access-Tier": "restricted"}, None, "ACCESS-LEGAL-BASIS", "bag-info.txt"),
        ({"Access-Legal-Basis": "x"}, None, "ACCESS-NO-TIER", "bag-info.txt"),
        (
            {"Access-Tier": "public", "Access-Legal-Basis": "x", "Access-Sunset": "2030-01-01"},
            None,
            "ACCESS-SUNSET",
            "bag-info.txt",
        ),
        ({"Consent-Scopes": "public, gossip"}, None, "ACCESS-CONSENT", "bag-info.txt"),
        ({"Consent-Scopes": "withdrawn, public"}, None, "ACCESS-CONSENT", "bag-info.txt"),
        ({}, "data/testimonies\tprotected-identity\t-\t-\tprosecution\n", "ACCESS-SIDECAR-SYNTAX",
         "custos-access.txt:2"),
        ({}, "data/nowhere\trestricted\t-\t-\t-\tx\n", "ACCESS-UNKNOWN-PATH",
         "custos-access.txt:2"),
        ({}, "data/testimonies/w\trestricted\t-\t-\t-\tx\n", "ACCESS-UNKNOWN-PATH",
         "custos-access.txt:2"),
        ({}, "data/letters\trestricted\t-\t-\t-\tx\ndata/letters/\trestricted\t-\t-\t-\ty\n",
         "ACCESS-DUPLICATE-PATH", "custos-access.txt:3"),
        ({}, "data/letters\trestricted\t1999-01-01\t-\t-\tx\n", "ACCESS-SUNSET",
         "custos-access.txt:2"),
        ({}, "data/letters\trestricted\tsoon\t-\t-\tx\n", "ACCESS-DECLARATION",
         "custos-access.txt:2"),
        ({}, "data/letters\trestricted\t-\tprotected-identity\t-\tx\n", "ACCESS-DECLARATION",
         "custos-access.txt:2"),
        ({}, "data/letters\trestricted\t-\t-\t-\t \n", "ACCESS-LEGAL-BASIS", "custos-access.txt:2"),
    ],
)  # fmt: skip
def test_a_bad_declaration_refuses_the_deposit(
    tmp_path: Path,
    services: Services,
    info: dict[str, str],
    sidecar: str | None,
    code: str,
    where: str,
) -> None:
    bag = bag_with(tmp_path, info, sidecar)
    from archive.errors import InputRejected

    with pytest.raises(InputRejected) as caught:
        deposit(services, bag, depositor="M")
    found = [(f.code, f.path) for f in caught.value.findings]
    assert (code, where) in found, found
    assert_nothing_stored(services)


def test_every_bad_line_is_listed(tmp_path: Path, services: Services) -> None:
    sidecar = "data/nowhere\trestricted\t-\t-\t-\tx\ndata/letters\tsecret\t-\t-\t-\tx\n"
    bag = bag_with(tmp_path, {"Access-Tier": "restricted"}, sidecar)
    from archive.errors import InputRejected

    with pytest.raises(InputRejected) as caught:
        deposit(services, bag, depositor="M")
    assert {f.path for f in caught.value.findings} == {
        "bag-info.txt",
        "custos-access.txt:2",
        "custos-access.txt:3",
    }
