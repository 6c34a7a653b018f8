"""Format migration on the real files of ../shared/corpora/format-samples: a sample of each
kind through its pathway, and every edge case (zero-byte, truncated, encrypted, wrong
extension, non-conforming MKV) ending with a recorded outcome and no crash. Skipped, saying
so, in a clone without ../shared."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from archive.services import Services
from migration import service
from policies.load import POLICY_DIR, load_format_policy
from tests.conftest import MakeServices
from tests.functional.migrate_helpers import (
    CORPUS,
    av,
    corpus,
    derivatives,
    dimensions,
    fido,
    migration_events,
    object_root,
    pages,
    policy_folder,
    store,
    stored_payload_digests,
    validate_storage,
)
from tests.helpers import staging_debris

POLICY = load_format_policy()


@pytest.fixture(autouse=True)
def _needs_corpus() -> None:
    if not (CORPUS / "files.json").is_file():
        pytest.skip(
            f"{CORPUS} is absent: these tests need the shared corpora beside the project "
            "(../shared/corpora); tests/functional/test_migrate.py covers every pathway without"
        )


KINDS = (
    "documents/article.pdf",
    "documents/Records_transfer.rtf",
    "office/Club-Report.doc",
    "office/samplexlsx.xlsx",
    "office/PPT_test.ppt",
    "office/testWordPerfect_6_61.wpd",
    "images/WFPC01.GIF",
    "images/799px-Euroleague-LE Roma vs Toulouse IC-27.bmp",
    "audio/funky_breakbeat_4.wav",
    "audio/sample.aif",
    "video/BlastOff.wmv",
    "video/YawSpinHeadSkin.mp4",
    "video/SampleVideo_1280x720_1mb.mkv",
)


def test_a_sample_of_each_kind_migrates(services: Services, tmp_path: Path) -> None:
    package_id = store(services, tmp_path / "bag", corpus(*KINDS))
    before = stored_payload_digests(services, package_id)
    result = service.migrate(services)
    failures = [(a.task.file.logical_path, a.reason) for a in result.packages[0].attempts
                if a.outcome == "failure"]  # fmt: skip
    assert failures == []
    made = derivatives(services, package_id)
    # WMV and MP4 get two copies each, the MKV an access copy only, the rest one copy.
    assert len(made) == len(KINDS) + 2
    root = object_root(services, package_id)
    src = root / "v1/content/bag/data"
    for logical, row in made.items():
        role = logical.split("/")[2]
        source = logical.removeprefix(f"custos/derivatives/{role}/bag/data/").rpartition(".")[0]
        assert (src / source).is_file(), logical
        assert row.puid, logical
    pdf = made["custos/derivatives/preservation/bag/data/documents/article.pdf.pdf"]
    assert pages(root / pdf.content_path) == pages(src / "documents/article.pdf") == 16
    wmv = av(src / "video/BlastOff.wmv")
    mkv = av(
        root / made["custos/derivatives/preservation/bag/data/video/BlastOff.wmv.mkv"].content_path
    )
    assert mkv["video"][0] == ("ffv1", *wmv["video"][0][1:])
    assert mkv["audio"] == [("flac", wmv["audio"][0][1])]
    assert abs(mkv["duration"] - wmv["duration"]) <= 0.5
    assert stored_payload_digests(services, package_id) == before
    validate_storage(services)


EDGE = (
    "edge-cases/empty_file_six.pdf",  # 0 bytes
    "edge-cases/text_file_six.pdf",  # 4 bytes of text named .pdf
    "edge-cases/Syllabus FINAL.doc",  # RTF behind a .doc extension
    "edge-cases/aaa_password_is_password.doc",  # encrypted Word 97
    "edge-cases/password-is-peanut.odt",  # encrypted ODT
    "edge-cases/mkv-not-conforms-spec.mkv",  # Matroska not conforming to the spec
    "edge-cases/fmt-134-signature-id-266-skeleton.mp3",  # MP3 skeleton: kept
    "jhove-pass-fail/aiff-hul/fail.aiff",  # truncated AIFF (46 bytes)
    "jhove-pass-fail/gif-hul/fail.gif",  # corrupt GIF
    "jhove-pass-fail/wave-hul/fail.wav",  # WAV header without samples
)


def test_edge_cases_end_with_a_recorded_outcome(
    make_services: MakeServices, tmp_path: Path
) -> None:
    # FIDO names any .pdf that no signature matches PDF/A (fmt/95), which the shipped policy
    # keeps; this test policy sends fmt/95 through the PDF pathway, so that the zero-byte
    # and the text "PDF" meet a tool.
    text = (POLICY_DIR / "formats.toml").read_text(encoding="utf-8")
    text = text.replace('puids = ["fmt/95", ', "puids = [").replace(
        '"fmt/276", "fmt/1129"]', '"fmt/276", "fmt/1129", "fmt/95"]'
    )
    services = make_services(policy_dir=policy_folder(tmp_path, text))
    package_id = store(services, tmp_path / "bag", corpus(*EDGE))
    before = stored_payload_digests(services, package_id)
    result = service.migrate(services)  # no crash, whatever the files hold
    (run,) = result.packages
    outcomes = {(a.task.file.logical_path, a.task.pathway_name): a for a in run.attempts}
    events = migration_events(services, package_id)
    assert len(events) == len(outcomes)  # every attempt recorded, once
    for e in events:
        assert (e["outcome"] == "success") == ("no preservation copy" not in e["detail"]
                                               and "no access copy" not in e["detail"])  # fmt: skip

    def reason(path: str, pathway: str) -> str:
        a = outcomes[(f"bag/data/{path}", pathway)]
        assert a.outcome == "failure", (path, a.reason)
        return a.reason

    assert "empty (0 bytes)" in reason("edge-cases/empty_file_six.pdf", "pdf-to-pdfa-2b")
    text_pdf = reason("edge-cases/text_file_six.pdf", "pdf-to-pdfa-2b")
    assert "the original cannot be read" in text_pdf
    for encrypted in (
        "edge-cases/aaa_password_is_password.doc",
        "edge-cases/password-is-peanut.odt",
    ):
        assert "wrote no output" in reason(encrypted, "office-to-pdfa-2b")
    assert "the original cannot be read" in reason(
        "jhove-pass-fail/gif-hul/fail.gif", "image-to-png"
    )
    assert "the original cannot be read: ffprobe" in reason(
        "jhove-pass-fail/aiff-hul/fail.aiff", "audio-to-flac"
    )
    wrong_ext = outcomes[("bag/data/edge-cases/Syllabus FINAL.doc", "office-to-pdfa-2b")]
    assert wrong_ext.outcome == "success"
    assert ("bag/data/edge-cases/mkv-not-conforms-spec.mkv", "video-to-mp4-access") in outcomes
    assert not any("skeleton.mp3" in path for path, _ in outcomes)  # MP3: kept, no attempt

    made = derivatives(services, package_id)
    assert len(made) == sum(a.outcome == "success" for a in run.attempts)
    assert all(a.task.output_path not in made for a in run.attempts if a.outcome == "failure")
    assert stored_payload_digests(services, package_id) == before
    assert staging_debris(services.store.staging) == []
    validate_storage(services)
    rows = {r.puid: r for r in service.plan_formats(services).rows}
    assert rows["fmt/134"].action == "keep"
    assert sum(r.failed for r in rows.values()) == sum(a.outcome == "failure" for a in run.attempts)


RAW = {  # sample: the PUID FIDO gives it
    "raw-camera/RAW_CANON_S30.CRW": "fmt/593",  # Canon CRW
    "raw-camera/RAW_KODAK_DC120.KDC": "fmt/154",  # TIFF/EP (a Kodak raw built on it)
    "raw-camera/RAW_NIKON_D1.NEF": "fmt/202",  # NEF (libmagic calls it TIFF; FIDO does not)
}


def test_raw_camera_samples_migrate_to_tiff(services: Services, tmp_path: Path) -> None:
    payload = corpus(*RAW, "images/G31DS.TIF")
    crw = payload["raw-camera/RAW_CANON_S30.CRW"]
    kdc = payload["raw-camera/RAW_KODAK_DC120.KDC"]
    payload["cut/crw-tenth.CRW"] = crw[: len(crw) // 10]  # dcraw cannot even read its size
    payload["cut/kdc-half.KDC"] = kdc[: len(kdc) // 2]  # its size reads, its pixels do not
    package_id = store(services, tmp_path / "bag", payload)
    before = stored_payload_digests(services, package_id)

    plan = {r.puid: r for r in service.plan_formats(services).rows}
    for puid in RAW.values():
        row = plan[puid]
        assert (row.action, row.risk, row.migrate) == ("migrate", "high", "raw-to-tiff"), puid
        assert row.to_do == row.files, puid
    assert plan["fmt/353"].action == "keep"  # a plain TIFF is not a raw file
    assert plan["fmt/154"].files == 2 and plan["fmt/593"].files == 2  # the cut ones too
    listed = service.plan_formats(services).tools
    tools_ = {t.name: t for t in listed}
    assert len(tools_) == len(listed)  # dcraw, tool and source reader, listed once
    assert tools_["dcraw"].available and "9.28" in tools_["dcraw"].detail

    result = service.migrate(services)  # no crash, whatever the files hold
    (run,) = result.packages
    outcomes = {a.task.file.logical_path.removeprefix("bag/data/"): a for a in run.attempts}
    assert set(outcomes) == {*RAW, "cut/crw-tenth.CRW", "cut/kdc-half.KDC"}  # TIFF: kept
    made = derivatives(services, package_id)
    root = object_root(services, package_id)
    for sample in RAW:
        attempt = outcomes[sample]
        assert attempt.outcome == "success", (sample, attempt.reason)
        tiff = made[f"custos/derivatives/preservation/bag/data/{sample}.tiff"]
        assert tiff.puid == "fmt/353" and tiff.mime_type == "image/tiff"
        path = root / tiff.content_path
        assert fido(path) == "fmt/353"
        assert (
            dimensions(path)
            == dcraw_size(CORPUS / sample)
            == attempt.reason.split("pixel dimensions kept: ")[1].split(" -> ")[1]
        )
        assert depth(path) == 16
    assert dimensions(root / made[
        "custos/derivatives/preservation/bag/data/raw-camera/RAW_KODAK_DC120.KDC.tiff"
    ].content_path) == "1301x976"  # fmt: skip  # 848 sensor columns, stretched to square pixels

    cut_crw, cut_kdc = outcomes["cut/crw-tenth.CRW"], outcomes["cut/kdc-half.KDC"]
    assert cut_crw.outcome == cut_kdc.outcome == "failure"
    assert cut_crw.reason.startswith("the original cannot be read: dcraw exited with status")
    assert cut_kdc.reason.startswith("dcraw exited with status 1")
    events = {
        e["source"].removeprefix("bag/data/"): e for e in migration_events(services, package_id)
    }
    assert events["cut/kdc-half.KDC"]["outcome"] == "failure"
    assert "raw-to-tiff (formats v2): no preservation copy" in events["cut/kdc-half.KDC"]["detail"]
    assert events["raw-camera/RAW_NIKON_D1.NEF"]["agent"].startswith("dcraw 9.28")
    assert len(made) == 3
    assert stored_payload_digests(services, package_id) == before
    assert staging_debris(services.store.staging) == []
    validate_storage(services)


def dcraw_size(path: Path) -> str:
    """The "Output size" dcraw reports for a raw file, read here without migration.probe."""
    out = subprocess.run(["dcraw", "-i", "-v", str(path)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    line = next(ln for ln in out.splitlines() if ln.startswith("Output size:"))
    width, _, height = line.removeprefix("Output size:").split()
    return f"{width}x{height}"


def depth(path: Path) -> int:
    exe = shutil.which("identify") or "identify-im6.q16"
    out = subprocess.run([exe, "-format", "%z", str(path)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return int(out)
