"""Real files of many formats (../shared/corpora/format-samples): stored byte for byte, and every
one identified or recorded as unidentified. Skipped, saying so, in a clone without ../shared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bagit
import pytest
from sqlalchemy import select

from archive.catalog.tables import File
from archive.services import Services
from ingest.service import identify_package
from tests.conftest import SHARED_CORPORA
from tests.helpers import deposit

SAMPLES = SHARED_CORPORA / "format-samples"


@pytest.fixture(scope="module")
def catalogue() -> list[dict[str, str]]:
    if not (SAMPLES / "files.json").is_file():
        pytest.skip(
            f"{SAMPLES} is absent: these tests need the shared corpora beside the project "
            "(../shared/corpora); every other test runs without them"
        )
    return list(json.loads((SAMPLES / "files.json").read_text()))


def test_format_samples_stored_and_identified(
    catalogue: list[dict[str, str]], tmp_path: Path, services: Services
) -> None:
    bag = tmp_path / "samples"
    shutil.copytree(SAMPLES, bag, ignore=shutil.ignore_patterns("*.md", "files.json", "SHA256SUMS"))
    bagit.make_bag(str(bag), {"Source-Organization": "format-samples"}, checksums=["sha512"])
    result = deposit(services, bag, depositor="Format Samples")
    assert result.payload_files == len(catalogue)
    identified = identify_package(services, result.package_id)
    assert identified.identified + identified.unidentified == len(catalogue)
    assert identified.identified >= len(catalogue) * 0.9

    with services.sessions() as s:
        rows = {
            f.logical_path.removeprefix("bag/data/"): f
            for f in s.execute(
                select(File).where(File.package_id == result.package_id, File.role == "payload")
            ).scalars()
        }
    for item in catalogue:
        row = rows[item["path"]]
        assert row.sha256 == item["sha256"], item["path"]  # the bytes as received
        assert row.size == int(item["bytes"])
        assert row.format_name, f"{item['path']}: no format recorded"
    pdfs = [
        row for path, row in rows.items() if path.startswith("documents/") and path.endswith(".pdf")
    ]
    assert pdfs and all(r.mime_type == "application/pdf" and r.puid for r in pdfs)
    # Raw camera files, which the format policy migrates to TIFF: FIDO names the NEF a NEF
    # (libmagic says TIFF) and the Kodak KDC TIFF/EP, never plain TIFF (fmt/353, kept).
    raws = {path: row.puid for path, row in rows.items() if path.startswith("raw-camera/")}
    assert raws == {
        "raw-camera/RAW_CANON_S30.CRW": "fmt/593",
        "raw-camera/RAW_KODAK_DC120.KDC": "fmt/154",
        "raw-camera/RAW_NIKON_D1.NEF": "fmt/202",
    }
    pngs = [row for path, row in rows.items() if path.endswith(".png")]
    assert all(r.puid in {"fmt/11", "fmt/12", "fmt/13"} for r in pngs)
