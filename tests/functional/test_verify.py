"""`custos verify`: every step holds for an untouched package; any alteration is named."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SAMPLE
from tests.functional.test_cli import custos


def ingest(tmp_path: Path, *extra: str) -> tuple[str, Path]:
    code, body, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "V", "--new-depositor", "--json", *extra
    )
    assert code == 0
    return body["package_id"], tmp_path / "storage" / body["object_path"]


def test_every_seal_verifies(tmp_path: Path) -> None:
    package_id, _ = ingest(tmp_path)
    code, report, _ = custos(tmp_path, "verify", package_id, "--json")
    assert code == 0 and report["verified"] is True
    texts = [s["text"] for s in report["steps"]]
    assert sum("is sealed by" in t for t in texts) == 6 + 2  # and v1, v2's file seals
    assert all("certificate chain verify" in t for t in texts if "is sealed by" in t)


def test_a_file_is_proved_through_its_inventory(tmp_path: Path) -> None:
    package_id, _ = ingest(tmp_path)
    code, report, _ = custos(tmp_path, "verify", package_id, "data/images/site-photo.png", "--json")
    assert code == 0 and report["verified"]
    texts = [s["text"] for s in report["steps"]]
    assert any(t.startswith("data/images/site-photo.png: the stored bytes hash") for t in texts)
    assert any(t.startswith("v1/inventory.json") and "sealed by" in t for t in texts)
    # and by itself, the proof a court bundle carries for it
    assert any(
        t.startswith("v1/content/bag/data/images/site-photo.png: sealed on its own") for t in texts
    )


def test_an_altered_file_is_named(tmp_path: Path) -> None:
    package_id, root = ingest(tmp_path)
    target = root / "v1/content/bag/data/documents/transfer-letter.txt"
    target.write_bytes(target.read_bytes().replace(b"complete", b"partial!"))
    code, report, _ = custos(
        tmp_path, "verify", package_id, "data/documents/transfer-letter.txt", "--json"
    )
    assert code == 3 and report["verified"] is False
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert failed and "has been altered" in failed[0]


def test_an_altered_inventory_or_record_fails(tmp_path: Path) -> None:
    package_id, root = ingest(tmp_path)
    record = next((root / "extensions/custos-evidence-records/v1").glob("inventory.json.*.ers"))
    data = bytearray(record.read_bytes())
    data[-20] ^= 0xFF  # inside the token's signature
    record.write_bytes(bytes(data))
    code, report, _ = custos(tmp_path, "verify", package_id, "--json")
    assert code == 3
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert any("v1/inventory.json: its evidence record" in t for t in failed)


def test_unsealed_package_is_not_verified(tmp_path: Path) -> None:
    package_id, _ = ingest(tmp_path, "--no-seal")
    code, report, _ = custos(tmp_path, "verify", package_id, "--json")
    assert code == 3 and "has been sealed yet" in report["steps"][-1]["text"]
