from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ocfl.layout_0003_hash_and_id_n_tuple import Layout_0003_Hash_And_Id_N_Tuple

from archive.errors import StorageError
from archive.storage import ocfl


@pytest.mark.parametrize(
    "object_id", ["urn:uuid:0f4b2f0e-2c1b-4a43-9e1b-6a7a3f5e2c11", "a b/c", "x" * 150, "Núñez"]
)
def test_layout_matches_ocfl_py(object_id: str) -> None:
    layout = Layout_0003_Hash_And_Id_N_Tuple()
    assert ocfl.object_rel_path(object_id) == layout.identifier_to_path(object_id)


def test_init_root_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "something.txt").write_text("not ours")
    with pytest.raises(StorageError, match="not an OCFL storage root"):
        ocfl.init_root(tmp_path)


def test_init_root_is_idempotent(tmp_path: Path) -> None:
    ocfl.init_root(tmp_path / "root")
    ocfl.init_root(tmp_path / "root")
    layout = json.loads((tmp_path / "root" / "ocfl_layout.json").read_text())
    assert layout["extension"] == ocfl.LAYOUT_EXTENSION


def _object(tmp_path: Path) -> Path:
    v = ocfl.StagedVersion("urn:test:1", tmp_path / "obj", 1, fsync=False)
    v.add_bytes("a.txt", b"a")
    v.write_inventory(
        v.build_inventory(
            created=datetime(2026, 1, 1, tzinfo=UTC),
            message="m",
            user_name="u",
            user_address="urn:u",
        )
    )
    return tmp_path / "obj"


def test_sidecar_mismatch_is_detected(tmp_path: Path) -> None:
    root = _object(tmp_path)
    assert ocfl.read_inventory(root)["head"] == "v1"
    (root / "inventory.json").write_text((root / "inventory.json").read_text().replace("m", "M", 1))
    with pytest.raises(StorageError, match="sidecar"):
        ocfl.read_inventory(root)


def test_version_two_carries_state_forward(tmp_path: Path) -> None:
    root = _object(tmp_path)
    prev = ocfl.read_inventory(root)
    v2 = ocfl.StagedVersion("urn:test:1", tmp_path / "stage", 2, fsync=False)
    v2.add_bytes("b.txt", b"b")
    inv = v2.build_inventory(
        created=datetime(2026, 1, 2, tzinfo=UTC),
        message="two",
        user_name="u",
        user_address="urn:u",
        previous=prev,
    )
    v2.write_inventory(inv)
    (tmp_path / "stage" / "v2").rename(root / "v2")
    assert ocfl.complete_pending_version(root) == 2
    state = ocfl.head_state(ocfl.read_inventory(root))
    assert state == {"a.txt": "v1/content/a.txt", "b.txt": "v2/content/b.txt"}
    assert ocfl.complete_pending_version(root) is None
