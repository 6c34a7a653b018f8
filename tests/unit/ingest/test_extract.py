"""Text extraction: what is read, what is refused, and the bounds kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.extract import extract, pdftotext_version, tool_missing_hint, tools_found
from tests.helpers import make_pdf


def run(
    path: Path,
    mime: str | None,
    *,
    source_max_bytes: int = 10_000,
    max_chars: int = 1000,
    time_limit: float = 30.0,
) -> tuple[str, str]:
    got = extract(
        path,
        mime,
        source_max_bytes=source_max_bytes,
        max_chars=max_chars,
        time_limit=time_limit,
        pdf_tool=pdftotext_version(),
    )
    return got.outcome, got.text


def test_pdf_and_plain_text_are_read_within_bounds(tmp_path: Path) -> None:
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf("words   from a  pdf"))
    assert run(pdf, "application/pdf") == ("text", "words from a pdf")
    txt = tmp_path / "a.txt"
    txt.write_bytes("one two\n\nthree caf\u00e9\n".encode())
    assert run(txt, "text/plain") == ("text", "one two three caf\u00e9")
    assert run(txt, "text/plain", max_chars=7) == ("text", "one two")
    assert run(txt, "text/plain", source_max_bytes=5) == ("too-large", "")


def test_what_is_not_read_and_what_fails(tmp_path: Path) -> None:
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"text\0with a nul")
    assert run(binary, "text/plain") == ("none", "")  # binary content is not text
    image = tmp_path / "i.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert run(image, "image/png") == ("none", "")
    assert run(tmp_path / "missing.pdf", "application/pdf")[0] == "failed"
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(make_pdf("cut")[:100])
    assert run(broken, "application/pdf") == ("failed", "")
    got = extract(
        broken, "application/pdf", source_max_bytes=10_000, max_chars=10, time_limit=5.0,
        pdf_tool=None,
    )  # fmt: skip
    # pdftotext not installed: not a failure of the file, the tool named, retried later.
    assert got.outcome == "tool-missing" and got.tool == "pdftotext"
    assert "poppler-utils" in got.why


def test_the_tool_is_looked_up_on_path_at_each_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that started before poppler-utils was installed finds pdftotext after."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pdftotext_version() is None and tools_found() == ()
    assert tool_missing_hint({"tool-missing": 1}) == (
        "pdftotext is not installed (Debian: apt-get install poppler-utils); once it is, "
        "`custos identify` (or a worker, or `custos serve`) reads those files"
    )
    assert tool_missing_hint({"failed": 1, "text": 2}) is None
    monkeypatch.undo()
    assert (pdftotext_version() or "").startswith("pdftotext ")
    assert tools_found() == ("pdftotext",)
