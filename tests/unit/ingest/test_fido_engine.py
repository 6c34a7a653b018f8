"""The identification engine gives FIDO's own verdicts: the same PUID and basis as FIDO's
command line, file by file, on the shared format samples (when present) and on files made
here (signature, container, extension and no match, an empty file)."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ingest.identify import identify
from tests.conftest import SHARED_CORPORA
from tests.helpers import make_pdf

MATCH = "OK\t%(info.group_index)s\t%(info.puid)s\t%(info.matchtype)s\t%(info.filename)s\n"


def fido_cli(paths: list[Path], listing: Path) -> dict[Path, tuple[str | None, str]]:
    listing.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-c", "from fido.fido import main; main()", "-q",
         "-matchprintf", MATCH, "-nomatchprintf", "KO\t%(info.filename)s\n",
         "-input", str(listing)],
        capture_output=True, check=True,
    ).stdout.decode("utf-8", "surrogateescape")  # fmt: skip
    found: dict[Path, tuple[str | None, str]] = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if fields[0] == "OK" and fields[1] == "1":
            found.setdefault(Path(fields[4]), (fields[2], fields[3]))
        elif fields[0] == "KO":
            found.setdefault(Path(fields[1]), (None, "none"))
    return {p: found.get(p, (None, "none")) for p in paths}


def made_files(folder: Path) -> list[Path]:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("inner.txt", "inside")
    files = {
        "report.pdf": make_pdf("a report"),
        "notes.txt": b"plain words only\n",
        "table.csv": b"a,b\n1,2\n",
        "bundle.zip": archive.getvalue(),
        "empty.txt": b"",
        "mystery.qqq": bytes(range(256)) * 4,
        "page.html": b"<!DOCTYPE html>\n<html><body>x</body></html>\n",
        "pdf-named.txt": make_pdf("a pdf with the wrong extension"),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def corpus_files() -> list[Path]:
    root = SHARED_CORPORA / "format-samples"
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.name not in ("files.json", "SHA256SUMS") and p.suffix != ".md"
    )  # fmt: skip


@pytest.mark.slow
def test_the_engine_agrees_with_fidos_command_line(tmp_path: Path) -> None:
    (tmp_path / "made").mkdir()
    paths = made_files(tmp_path / "made") + corpus_files()
    expected = fido_cli(paths, tmp_path / "listing.txt")
    got = identify(paths, workers=2)
    disagree = {
        str(p): (expected[p], (got[p].puid, got[p].basis))
        for p in paths
        if expected[p] != (got[p].puid, got[p].basis)
    }
    assert disagree == {}
    # The made files cover each kind of verdict.
    made = {p.name: got[p] for p in paths[:8]}
    assert made["report.pdf"].basis == "signature" and made["report.pdf"].puid == "fmt/18"
    assert made["bundle.zip"].puid == "x-fmt/263"
    assert made["notes.txt"].basis == "extension"
    assert made["mystery.qqq"].puid is None and made["mystery.qqq"].basis == "none"
    assert made["pdf-named.txt"].puid == "fmt/18"


def test_no_files_need_no_identifier() -> None:
    assert identify([]) == {}
