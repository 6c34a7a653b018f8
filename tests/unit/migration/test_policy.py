"""The format policy: the shipped file loads, and loading refuses what would break pathways."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from policies.formats import FormatPolicy, derivative_path, source_of
from policies.load import POLICY_DIR, PolicyFileError, load_format_policy


def shipped() -> dict[str, Any]:
    return tomllib.loads((POLICY_DIR / "formats.toml").read_text(encoding="utf-8"))


def test_shipped_policy_loads_and_covers_the_issue_formats() -> None:
    policy = load_format_policy()
    assert policy.label == "formats v2"
    expect = {
        "fmt/18": ("migrate", "pdf-to-pdfa-2b"),  # PDF 1.4
        "fmt/40": ("migrate", "office-to-pdfa-2b"),  # DOC
        "fido-fmt/189.word": ("migrate", "office-to-pdfa-2b"),  # DOCX as FIDO names it
        "fmt/412": ("migrate", "office-to-pdfa-2b"),  # DOCX
        "fmt/50": ("migrate", "office-to-pdfa-2b"),  # RTF
        "fmt/290": ("migrate", "office-to-pdfa-2b"),  # ODT
        "fmt/61": ("migrate", "office-to-pdfa-2b"),  # XLS
        "fmt/214": ("migrate", "office-to-pdfa-2b"),  # XLSX
        "fmt/126": ("migrate", "office-to-pdfa-2b"),  # PPT
        "x-fmt/44": ("migrate", "office-to-pdfa-2b"),  # WordPerfect
        "fmt/116": ("migrate", "image-to-png"),  # BMP
        "fmt/4": ("migrate", "image-to-png"),  # GIF
        "fmt/141": ("migrate", "audio-to-flac"),  # WAV
        "fmt/414": ("migrate", "audio-to-flac"),  # AIFF
        "fmt/5": ("migrate+access", "video-to-ffv1-mkv"),  # AVI
        "x-fmt/384": ("migrate+access", "video-to-ffv1-mkv"),  # MOV
        "fmt/131": ("migrate+access", "video-to-ffv1-mkv"),  # WMV (ASF)
        "fmt/199": ("migrate+access", "video-to-ffv1-mkv"),  # MP4
        "fmt/593": ("migrate", "raw-to-tiff"),  # Canon CRW
        "fmt/592": ("migrate", "raw-to-tiff"),  # Canon CR2
        "fmt/202": ("migrate", "raw-to-tiff"),  # Nikon NEF
        "fmt/1127": ("migrate", "raw-to-tiff"),  # Sony ARW
        "fmt/436": ("migrate", "raw-to-tiff"),  # DNG
        "fmt/668": ("migrate", "raw-to-tiff"),  # Olympus ORF
        "fmt/642": ("migrate", "raw-to-tiff"),  # Fujifilm RAF
        "fmt/662": ("migrate", "raw-to-tiff"),  # Panasonic RW2
        "fmt/1781": ("migrate", "raw-to-tiff"),  # Pentax PEF
        "fmt/154": ("migrate", "raw-to-tiff"),  # TIFF/EP (Kodak KDC, as FIDO names it)
    }
    for puid, (action, migrate) in expect.items():
        rule = policy.rule_for(puid)
        assert rule is not None, puid
        assert (rule.action, rule.migrate) == (action, migrate), puid
    for safe in ("fmt/11", "fmt/43", "fmt/353", "fmt/477", "fmt/134", "x-fmt/111"):
        rule = policy.rule_for(safe)
        assert rule is not None and rule.action == "keep", safe
    assert policy.rule_for("fmt/199").access == "video-to-mp4-access"  # type: ignore[union-attr]
    raw = policy.pathways["raw-to-tiff"]
    assert (raw.tool, raw.validator, raw.reads_source_with) == ("dcraw", "identify", "dcraw")
    assert raw.output_is_stdout and "-6" in raw.args  # 16 bits per sample
    assert policy.rule_for("fmt/353").action == "keep"  # type: ignore[union-attr]  # plain TIFF
    cr3 = policy.rule_for("fmt/1595")  # no Debian decoder: kept, at risk
    assert cr3 is not None and (cr3.action, cr3.risk) == ("keep", "high")
    assert policy.rule_for("fmt/999999") is None
    assert policy.rule_for(None) is None
    assert (POLICY_DIR / "pdfa_def.ps").is_file()  # named by the PDF/A pathway's arguments


def refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as info:
        FormatPolicy.model_validate(raw)
    return str(info.value)


def test_unknown_keys_and_placeholders_are_refused() -> None:
    raw = shipped()
    raw["rules"][0]["colour"] = "red"
    assert "colour" in refused(raw)

    raw = shipped()
    raw["pathways"]["audio-to-flac"]["args"] = ["-o", "{output}", "{inptu}"]
    text = refused(raw)
    assert "unknown placeholder {inptu}" in text and "never name {input}" in text

    raw = shipped()  # braces that are not a placeholder name (JSON filter options) are fine
    FormatPolicy.model_validate(raw)


def test_links_between_rules_pathways_and_tools_are_checked() -> None:
    raw = shipped()
    raw["pathways"]["audio-to-flac"]["tool"] = "sox"
    assert "tool 'sox' is not in [tools]" in refused(raw)

    raw = shipped()
    raw["rules"][0]["migrate"] = "video-to-mp4-access"
    assert "makes a access copy, not a preservation copy" in refused(raw)

    raw = shipped()
    raw["rules"][0]["migrate"] = "no-such-pathway"
    assert "'no-such-pathway' is not in [pathways]" in refused(raw)

    raw = shipped()
    raw["rules"][1]["puids"] = [*raw["rules"][1]["puids"], "fmt/18"]
    assert "fmt/18 is already in rules[0]" in refused(raw)

    raw = shipped()
    raw["rules"][0]["action"] = "keep"
    assert "takes no 'migrate' pathway" in refused(raw)

    raw = shipped()
    del raw["rules"][0]["migrate"]
    assert "needs a 'migrate' pathway" in refused(raw)


def test_properties_must_be_readable_by_the_validator() -> None:
    raw = shipped()
    raw["pathways"]["pdf-to-pdfa-2b"]["properties"] = ["page_count", "duration"]
    assert "validator pdfinfo cannot read duration" in refused(raw)

    raw = shipped()
    raw["pathways"]["audio-to-flac"]["declares_pdfa"] = "2B"
    assert "declares_pdfa needs validator = 'pdfinfo'" in refused(raw)

    raw = shipped()
    raw["pathways"]["audio-to-flac"]["time_limit_seconds"] = 0
    assert "time_limit_seconds" in refused(raw)


def test_source_readers_and_standard_output_are_checked() -> None:
    raw = shipped()
    raw["pathways"]["raw-to-tiff"]["properties"] = ["pixel_dimensions", "frame_count"]
    assert "source_reader dcraw cannot read frame_count" in refused(raw)

    raw = shipped()
    raw["pathways"]["raw-to-tiff"]["source_reader"] = "exiftool"
    assert "source_reader" in refused(raw)

    raw = shipped()
    raw["pathways"]["raw-to-tiff"]["validator"] = "dcraw"  # reads raw files, not TIFFs
    assert "validator" in refused(raw)

    raw = shipped()
    raw["pathways"]["raw-to-tiff"]["args"] = ["-c", "-T", "{input}", "{output}"]
    assert "must name neither {output} nor {outdir}" in refused(raw)

    raw = shipped()
    del raw["pathways"]["raw-to-tiff"]["output_is_stdout"]
    assert "or set output_is_stdout = true" in refused(raw)


def test_a_broken_policy_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "formats.toml").write_text('id = "formats"\nversion = 0\n', encoding="utf-8")
    with pytest.raises(PolicyFileError, match=r"formats.toml is invalid: version"):
        load_format_policy(tmp_path)
    with pytest.raises(PolicyFileError, match="does not exist"):
        load_format_policy(tmp_path / "nowhere")


def test_derivative_paths_round_trip() -> None:
    path = derivative_path("preservation", "bag/data/a b/évidence.v1.doc", "pdf")
    assert path == "custos/derivatives/preservation/bag/data/a b/évidence.v1.doc.pdf"
    assert source_of(path) == ("preservation", "bag/data/a b/évidence.v1.doc")
    assert source_of("custos/derivatives/access/bag/data/x.mov.mp4") == (
        "access",
        "bag/data/x.mov",
    )
    assert source_of("bag/data/x.pdf") is None
    assert source_of("custos/derivatives/other/bag/data/x.pdf") is None
