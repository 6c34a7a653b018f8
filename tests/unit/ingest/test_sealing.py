"""Sealing at deposit: protected files encrypted under random sealed names; the access records,
findings and names maps that then name no protected file, and keep the same decisions."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyrage

from archive.digest import CopyResult, digest_bytes
from ingest.sealing import (
    SEALED_FOLDER,
    conceal_records,
    conceal_text,
    names_files,
    revealed_paths,
    seal_bytes,
    seal_payload,
)
from policies.access import Assignment, Consent, effective, effective_consent

KEY = pyrage.x25519.Identity.generate()
TO = [str(KEY.to_public())]
PROTECTED = "data/witnesses/Amina Q/statement.txt"
PAYLOAD = {
    PROTECTED: b"what I saw\n",
    "data/witnesses/Amina Q/photo.jpg": b"\xff\xd8 photo",
    "data/reports/situation.txt": b"public report\n",
}
ASSIGNMENTS = [
    Assignment("", "public", None, None, "Deposit agreement"),
    Assignment(
        "data/witnesses",
        "protected-identity",
        date(2060, 1, 1),
        "restricted",
        "Order 12/2019",
        "protective measures order",
    ),
]
CONSENTS = [
    Consent("", frozenset({"public"})),
    Consent("data/witnesses/Amina Q", frozenset({"prosecution"})),
]


def _result(data: bytes) -> CopyResult:
    return CopyResult(len(data), {a: digest_bytes(data, a) for a in ("sha512", "sha256")})


def _staged(tmp_path: Path) -> tuple[Path, dict[str, CopyResult]]:
    bag = tmp_path / "bag"
    files = {**PAYLOAD, "bagit.txt": b"BagIt-Version: 1.0\n", "bag-info.txt": b"Title: Amina Q\n"}
    for rel, data in files.items():
        (bag / rel).parent.mkdir(parents=True, exist_ok=True)
        (bag / rel).write_bytes(data)
    return bag, {rel: _result(data) for rel, data in files.items()}


def test_protected_files_take_sealed_names_and_the_tag_files_are_encrypted(
    tmp_path: Path,
) -> None:
    bag, files = _staged(tmp_path)
    done = seal_payload(bag, PAYLOAD, ASSIGNMENTS, files, {"protected-identity": TO})

    names = done.names["protected-identity"]
    assert sorted(names.values()) == sorted(p for p in PAYLOAD if p.startswith("data/witnesses"))
    assert all(o.startswith(SEALED_FOLDER) and len(o) == len(SEALED_FOLDER) + 32 for o in names)
    assert not (bag / "data" / "witnesses").exists()  # the folder they left, gone with them
    stored = sorted(str(p.relative_to(bag)) for p in bag.rglob("*") if p.is_file())
    assert "Amina" not in " ".join(stored) and "data/reports/situation.txt" in stored
    for opaque, real in names.items():
        plain = pyrage.decrypt((bag / opaque).read_bytes(), [KEY])
        assert plain == PAYLOAD[real] and files[opaque].size == (bag / opaque).stat().st_size
        entry = done.sealed[f"v1/content/bag/{opaque}"]
        assert entry["logical"] == f"bag/{opaque}" and entry["sha512"] == digest_bytes(
            PAYLOAD[real], "sha512"
        )
        assert real not in files
    assert pyrage.decrypt((bag / "bag-info.txt").read_bytes(), [KEY]) == b"Title: Amina Q\n"
    assert (bag / "bagit.txt").read_bytes() == b"BagIt-Version: 1.0\n"  # names nothing
    assert (bag / "data/reports/situation.txt").read_bytes() == b"public report\n"


def test_nothing_is_sealed_without_recipients(tmp_path: Path) -> None:
    bag, files = _staged(tmp_path)
    before = dict(files)
    done = seal_payload(bag, PAYLOAD, ASSIGNMENTS, files, {})
    assert not done and done.sealed == {} and files == before
    assert (bag / "bag-info.txt").read_bytes() == b"Title: Amina Q\n"


def test_the_access_records_kept_name_no_protected_file_and_decide_the_same(
    tmp_path: Path,
) -> None:
    bag, files = _staged(tmp_path)
    done = seal_payload(bag, PAYLOAD, ASSIGNMENTS, files, {"protected-identity": TO})
    revealed = revealed_paths(PAYLOAD, done)
    assert "data/witnesses" not in revealed and "data/reports/situation.txt" in revealed
    assignments, consents = conceal_records(ASSIGNMENTS, CONSENTS, done, revealed)
    kept = json.dumps([a.path for a in assignments] + [c.path for c in consents])
    assert "witnesses" not in kept and "Amina" not in kept
    for opaque, real in done.names["protected-identity"].items():
        before, after = effective(real, ASSIGNMENTS), effective(opaque, assignments)
        assert before is not None and after is not None
        assert (after.tier, after.sunset, after.legal_basis) == (
            before.tier,
            before.sunset,
            before.legal_basis,
        )
        was, now = effective_consent(real, CONSENTS), effective_consent(opaque, consents)
        assert was is not None and now is not None and was.scopes == now.scopes
    public = effective("data/reports/situation.txt", assignments)
    assert public is not None and public.tier == "public"


def test_findings_and_names_maps_name_no_protected_file(tmp_path: Path) -> None:
    bag, files = _staged(tmp_path)
    done = seal_payload(bag, PAYLOAD, ASSIGNMENTS, files, {"protected-identity": TO})
    revealed = revealed_paths(PAYLOAD, done)
    opaque = done.real_to_sealed[PROTECTED]
    text = conceal_text(
        f"{PROTECTED}: odd name; statement.txt in data/witnesses/Amina Q; see data/reports",
        done,
        revealed,
    )
    assert "Amina" not in text and "witnesses" not in text and "statement.txt" not in text
    assert text.startswith(opaque) and "data/reports" in text

    maps = names_files(done, ["data/witnesses/Amina Q/empty"])
    logical, plain = maps["protected-identity"]
    assert logical == "custos/names-protected-identity.age"
    body = json.loads(plain)
    assert body["files"][f"bag/{opaque}"] == f"bag/{PROTECTED}"
    assert body["empty_folders"] == ["data/witnesses/Amina Q/empty"]
    cipher, entry = seal_bytes(plain, logical, "protected-identity", TO)
    assert b"Amina" not in cipher and pyrage.decrypt(cipher, [KEY]) == plain
    assert entry["sha512"] == digest_bytes(plain, "sha512") and entry["recipients"] == TO
