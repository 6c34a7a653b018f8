"""Each payload file's own tier decides where its copies go and how often they are checked:
a package with a public file and a protected-identity file, under policies that differ per
tier (protected-identity: three copies, checked every 30 days; public: two, every 90)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from archive.catalog.tables import File, FixityCoverage, Package, StorageLocation
from archive.replicas import replication_state
from archive.services import Services
from fixity.replication import replicate
from fixity.report import build_report
from fixity.service import run_cycle
from policies.load import POLICY_DIR
from tests.helpers import deposit, make_bag
from tests.unit.fixity.conftest import ArchiveFactory, local_settings
from tests.unit.fixity.test_fixity import expected_copies

PUBLIC = "public/report.txt"
PROTECTED = "testimonies/w1.txt"


def tiered_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (folder / "replication.toml").read_text()
    head, mark, rest = text.partition("[tiers.protected-identity]")
    (folder / "replication.toml").write_text(head + mark + rest.replace("copies = 2", "copies = 3"))
    return folder


def tiered_package(services: Services, tmp_path: Path) -> str:
    bag = make_bag(
        tmp_path / "bag",
        {PUBLIC: b"a published report\n", PROTECTED: b"a testimony\n"},
        info={
            "Access-Tier": "public",
            "Access-Legal-Basis": "Published by the mechanism",
            "Consent-Scopes": "public, research",
        },
        extra_tag_files={
            "custos-access.txt": (
                b"# path\ttier\tsunset\tsuccessor\tconsent\tlegal basis\n"
                b"data/testimonies\tprotected-identity\t-\t-\tprosecution\tOrder 7\n"
            )
        },
    )
    return deposit(services, bag, depositor="Test Mechanism").package_id


def copies_at(services: Services, pid: str, path_end: str) -> dict[str, str]:
    """Location -> tier of the coverage rows of the file whose path ends so."""
    with services.sessions() as s:
        return {
            name: tier
            for name, tier in s.execute(
                select(StorageLocation.name, FixityCoverage.tier)
                .join(StorageLocation, StorageLocation.id == FixityCoverage.location_id)
                .where(
                    FixityCoverage.package_id == pid,
                    FixityCoverage.content_path.like(f"%/{path_end}"),
                )
            )
        }


def test_a_public_file_and_a_protected_file_follow_their_own_tiers(
    archive: ArchiveFactory, tmp_path: Path, catalog_url: str
) -> None:
    services = archive(
        catalog_url, alpha=local_settings(tmp_path / "alpha"), beta=local_settings(tmp_path / "b")
    )
    services.settings = services.settings.model_copy(
        update={"policy_dir": tiered_policies(tmp_path)}
    )
    pid = tiered_package(services, tmp_path)
    report = replicate(services)
    assert report.ok, report.as_dict()
    with services.sessions() as s:
        state = replication_state(s, pid)
        obj = s.execute(select(Package.object_path).where(Package.id == pid)).scalar_one()
        content = dict(
            s.execute(
                select(File.logical_path, File.content_path).where(File.package_id == pid)
            ).all()
        )
    # the object as a whole (inventories, metadata) goes where any of its tiers needs it
    assert state.safely_stored and state.plan is not None
    assert state.plan.locations == ("alpha", "beta") and state.plan.copies == 3
    public = tmp_path / "alpha" / obj / content[f"bag/data/{PUBLIC}"]
    assert public.is_file()  # public: two copies (primary, alpha)
    assert not (tmp_path / "b" / obj / content[f"bag/data/{PUBLIC}"]).exists()
    for where in ("alpha", "b"):  # protected-identity: three copies
        assert (tmp_path / where / obj / content[f"bag/data/{PROTECTED}"]).is_file()
        assert (tmp_path / where / obj / "inventory.json").is_file()

    cycle = run_cycle(services)
    assert cycle.ok and cycle.checked == expected_copies(services)
    assert copies_at(services, pid, PUBLIC) == {"primary": "public", "alpha": "public"}
    assert copies_at(services, pid, PROTECTED) == {
        "primary": "protected-identity",
        "alpha": "protected-identity",
        "beta": "protected-identity",
    }
    # the object's other files take the package's most closed tier
    assert set(copies_at(services, pid, "inventory.json").values()) == {"protected-identity"}
    # each file's cycle period is its own tier's
    with services.sessions() as s:
        due = {
            path.rpartition("/")[2]: (when, checked)
            for path, when, checked in s.execute(
                select(
                    FixityCoverage.content_path,
                    FixityCoverage.due_at,
                    FixityCoverage.last_checked_at,
                ).where(FixityCoverage.package_id == pid)
            )
        }
    assert due["report.txt"][0] - due["report.txt"][1] == timedelta(days=90)
    assert due["w1.txt"][0] - due["w1.txt"][1] == timedelta(days=30)
    with services.sessions() as s:
        rows = {(r.location, r.tier): r for r in build_report(s).rows}
    assert rows[("beta", "protected-identity")].files_checked > 0
    assert ("beta", "public") not in rows and rows[("alpha", "public")].files_checked == 1

    # a second run changes nothing: every location holds what its tiers need
    assert replicate(services).copied == []
