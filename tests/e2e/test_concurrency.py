"""Two processes depositing the same bag at the same moment: it is stored once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_kill import assert_consistent, custos, visible_packages
from tests.helpers import make_bag, staging_debris


def test_same_bag_twice_at_once(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {f"f{i}.txt": f"{i}\n".encode() for i in range(200)})
    data = tmp_path / "data"
    args = ("ingest", str(bag), "--depositor", "Race", "--new-depositor", "--json", "--no-identify")
    custos(data, "list").communicate(timeout=120)  # create the catalog first
    procs = [custos(data, *args) for _ in range(3)]
    bodies = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
        bodies.append(json.loads(out))
    statuses = sorted(b["status"] for b in bodies)
    assert statuses == ["already-held", "already-held", "stored"]
    assert len({b["package_id"] for b in bodies}) == 1
    assert list(visible_packages(data)) == [bodies[0]["package_id"]]
    assert_consistent(data)
    assert staging_debris(data / "staging") == []


def test_identify_twice_at_once(tmp_path: Path) -> None:
    from tests.conftest import SAMPLE

    data = tmp_path / "data"
    out, _ = custos(
        data,
        "ingest",
        str(SAMPLE),
        "--depositor",
        "R",
        "--new-depositor",
        "--json",
        "--no-identify",
    ).communicate(timeout=120)
    package_id = json.loads(out)["package_id"]
    procs = [custos(data, "identify", package_id, "--json") for _ in range(2)]
    versions = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
        versions.append(json.loads(out)["packages"][0]["version"])
    assert sorted(versions, key=str) == [2, None]  # one wrote version 2, the other had nothing left
    assert visible_packages(data)[package_id][1] == 2
    assert_consistent(data)
    assert staging_debris(data / "staging") == []
