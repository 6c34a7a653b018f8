"""Format migration on real tools, with samples every clone has (the sample holding, two CC0
files in tests/data, and files written here): each pathway's output is valid and keeps the
significant properties; originals are untouched; a failure or a hanging tool leaves nothing
behind; the CLI, the report and a catalog rebuild."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy import select

from archive.catalog.rebuild import rebuild
from archive.catalog.tables import File
from archive.journal import Journal
from archive.services import Services, open_services
from migration import service
from migration.validate import check_output, compare
from policies.load import load_format_policy
from tests.conftest import SAMPLE, MakeServices, MakeSettings
from tests.functional.migrate_helpers import (
    CC0,
    av,
    bmp,
    derivatives,
    dimensions,
    dng,
    fido,
    head,
    migration_events,
    object_root,
    pages,
    policy_folder,
    store,
    stored_payload_digests,
    tiff,
    validate_storage,
    wav,
)
from tests.functional.test_cli import custos, runner
from tests.helpers import make_bag, staging_debris

POLICY = load_format_policy()
D = "custos/derivatives"


def payload() -> dict[str, bytes]:
    return {
        "documents/site-report.pdf": (SAMPLE / "data/documents/site-report.pdf").read_bytes(),
        "images/site-photo.png": (SAMPLE / "data/images/site-photo.png").read_bytes(),
        "images/bitmap.bmp": bmp(),
        "audio/tone.wav": wav(seconds=2),
        "office/letter.odt": (CC0 / "LibreOfficeWriter_odt_1.3.odt").read_bytes(),
        "video/clip.mov": (CC0 / "photo-jpeg.mov").read_bytes(),
        "images/raw.dng": dng(),
    }


EXPECTED = {
    f"{D}/preservation/bag/data/documents/site-report.pdf.pdf": "pdf-to-pdfa-2b",
    f"{D}/preservation/bag/data/images/bitmap.bmp.png": "image-to-png",
    f"{D}/preservation/bag/data/audio/tone.wav.flac": "audio-to-flac",
    f"{D}/preservation/bag/data/office/letter.odt.pdf": "office-to-pdfa-2b",
    f"{D}/preservation/bag/data/video/clip.mov.mkv": "video-to-ffv1-mkv",
    f"{D}/access/bag/data/video/clip.mov.mp4": "video-to-mp4-access",
    f"{D}/preservation/bag/data/images/raw.dng.tiff": "raw-to-tiff",
}


def test_every_pathway_makes_a_valid_copy_and_leaves_the_originals(
    services: Services, tmp_path: Path
) -> None:
    package_id = store(services, tmp_path / "bag", payload())
    before = stored_payload_digests(services, package_id)
    plan = {r.puid: r for r in service.plan_formats(services).rows}
    assert plan["fmt/11"].action == "keep" and plan["fmt/11"].to_do == 0
    assert sum(r.to_do for r in plan.values()) == len(EXPECTED)

    result = service.migrate(services, package_id.removeprefix("urn:uuid:")[:8])
    assert [(p.package_id, p.version, p.succeeded, p.failed) for p in result.packages] == [
        (package_id, 3, len(EXPECTED), 0)
    ]
    assert head(services, package_id) == 3

    # Originals: the same bytes as deposited, and still where they were.
    assert stored_payload_digests(services, package_id) == before
    made = derivatives(services, package_id)
    assert set(made) == set(EXPECTED)
    root = object_root(services, package_id)
    for logical, pathway_name in EXPECTED.items():
        row = made[logical]
        pathway = POLICY.pathways[pathway_name]
        assert row.version == 3 and row.content_path == f"v3/content/{logical}"
        assert row.puid in pathway.target_puids, (logical, row.puid)
        assert fido(root / row.content_path) == row.puid  # FIDO, run by the test itself

    src = root / "v1/content/bag/data"
    out = {p: root / made[p].content_path for p in made}
    assert pages(out[f"{D}/preservation/bag/data/documents/site-report.pdf.pdf"]) == pages(
        src / "documents/site-report.pdf"
    )
    assert pages(out[f"{D}/preservation/bag/data/office/letter.odt.pdf"]) >= 1
    assert dimensions(out[f"{D}/preservation/bag/data/images/bitmap.bmp.png"]) == "9x6"
    assert dimensions(out[f"{D}/preservation/bag/data/images/raw.dng.tiff"]) == "64x48"
    flac = av(out[f"{D}/preservation/bag/data/audio/tone.wav.flac"])
    assert flac["audio"] == [("flac", 2)] and abs(flac["duration"] - 2.0) < 0.01
    mov = av(src / "video/clip.mov")
    mkv = av(out[f"{D}/preservation/bag/data/video/clip.mov.mkv"])
    mp4 = av(out[f"{D}/access/bag/data/video/clip.mov.mp4"])
    assert mkv["video"] == [("ffv1", 320, 240)] and mov["video"][0][1:] == (320, 240)
    assert abs(mkv["duration"] - mov["duration"]) <= 0.5
    assert mp4["video"][0][0] == "h264" and abs(mp4["duration"] - mov["duration"]) <= 0.5

    # One event per copy: source and outcome linked, tool and version, arguments, digests.
    events = migration_events(services, package_id)
    assert len(events) == len(EXPECTED) and {e["outcome"] for e in events} == {"success"}
    for e in events:
        outcome = next(oid for t, oid, role in e["links"] if role == "outcome")
        row = made[outcome]
        assert ("package", package_id, "") in e["links"]
        assert ("file", e["source"], "source") in e["links"]
        pathway_name = EXPECTED[outcome]
        assert e["detail"].startswith(f"{pathway_name} (formats v2): ")
        assert f"output sha512:{row.sha512}" in e["detail"]
        assert "source sha512:" in e["detail"] and "with arguments [" in e["detail"]
        assert e["agent"].split()[0] == POLICY.pathways[pathway_name].tool
        assert any(ch.isdigit() for ch in e["agent"])  # the tool's version
    # The object is still valid OCFL, its PREMIS holds the events, staging is clean.
    validate_storage(services)
    premis = (root / "v3/content/custos/premis.xml").read_text(encoding="utf-8")
    assert premis.count("<premis:eventType>migration</premis:eventType>") == len(EXPECTED)
    assert staging_debris(services.store.staging) == []

    # Nothing left to do: a second run makes no version.
    again = service.migrate(services)
    assert again.packages == () and head(services, package_id) == 3


def test_a_raw_file_dcraw_cannot_decode_is_a_recorded_failure(
    services: Services, tmp_path: Path
) -> None:
    raw = dng()
    package_id = store(
        services,
        tmp_path / "bag",
        {"raw/cut.dng": raw[: len(raw) // 2], "raw/whole.dng": raw, "raw/plain.tif": tiff()},
    )
    plan = {r.puid: r for r in service.plan_formats(services).rows}
    assert (plan["fmt/730"].action, plan["fmt/730"].files) == ("migrate", 2)  # DNG 1.4
    assert plan["fmt/353"].action == "keep"  # a plain TIFF is not a raw file
    before = stored_payload_digests(services, package_id)
    (run,) = service.migrate(services).packages
    outcomes = {a.task.file.logical_path: a for a in run.attempts}
    assert set(outcomes) == {"bag/data/raw/cut.dng", "bag/data/raw/whole.dng"}
    cut = outcomes["bag/data/raw/cut.dng"]
    assert cut.outcome == "failure" and cut.reason == "dcraw exited with status 1"
    assert outcomes["bag/data/raw/whole.dng"].outcome == "success"
    assert list(derivatives(services, package_id)) == [
        f"{D}/preservation/bag/data/raw/whole.dng.tiff"
    ]
    events = {e["source"]: e for e in migration_events(services, package_id)}
    assert events["bag/data/raw/cut.dng"]["outcome"] == "failure"
    assert (
        "no preservation copy: dcraw exited with status 1"
        in events["bag/data/raw/cut.dng"]["detail"]
    )
    assert stored_payload_digests(services, package_id) == before
    assert staging_debris(services.store.staging) == []
    assert service.pending_tasks(services) == []  # not tried again under this policy version


def test_derivatives_survive_a_catalog_rebuild(services: Services, tmp_path: Path) -> None:
    package_id = store(services, tmp_path / "bag", {"images/bitmap.bmp": bmp()})
    service.migrate(services)
    before = {p: (f.role, f.puid, f.sha512) for p, f in derivatives(services, package_id).items()}
    assert list(before) == [f"{D}/preservation/bag/data/images/bitmap.bmp.png"]
    rebuild(services)
    after = {p: (f.role, f.puid, f.sha512) for p, f in derivatives(services, package_id).items()}
    assert after == before and after[next(iter(after))][:2] == ("derivative", "fmt/11")
    assert service.pending_tasks(services) == []


def test_an_output_of_the_wrong_kind_fails_validation(tmp_path: Path) -> None:
    """The checks can fail: a PDF offered as the PNG pathway's output, and a changed count."""
    check = check_output(
        POLICY.pathways["image-to-png"],
        SAMPLE / "data/documents/site-report.pdf",
        {"pixel_dimensions": "9x6", "frame_count": 1},
        tmp_path,
    )
    assert not check.ok
    codes = {f.code for f in check.findings if f.severity == "error"}
    assert "MIGRATION-FORMAT" in codes
    findings = compare(POLICY.pathways["pdf-to-pdfa-2b"], {"page_count": 3}, {"page_count": 2})
    assert [(f.severity, f.message) for f in findings] == [("error", "page count changed: 3 -> 2")]
    ok = compare(POLICY.pathways["audio-to-flac"], {"duration": 2.0, "audio_channels": 2},
                 {"duration": 2.05, "audio_channels": 2})  # fmt: skip
    assert all(f.severity == "info" for f in ok)


HANGING = """
id = "formats"
version = 7
effective_from = "2026-11-22"

[tools.sh]
commands = ["sh"]
version_args = ["-c", "echo sh 1.0"]

[pathways.hangs]
role = "preservation"
description = "A tool that starts a child and never finishes"
tool = "sh"
args = ["-c", "sleep {marker} & exec sleep {marker} # {output}", "{input}"]
extension = "flac"
target_puids = ["fmt/279"]
target_mime = "audio/flac"
validator = "ffprobe"
properties = ["duration"]
time_limit_seconds = 2

[[rules]]
label = "WAV"
puids = ["fmt/1", "fmt/2", "fmt/6", "fmt/141"]
risk = "medium"
action = "migrate"
migrate = "hangs"
"""


def test_a_hanging_tool_is_killed_and_leaves_no_version(
    make_services: MakeServices, tmp_path: Path, catalog_url: str
) -> None:
    # The sleep length, to find any process left behind: this run's own (another suite may
    # be running the same test on the machine).
    marker = f"412.{uuid.uuid4().int % 10**9:09d}"
    folder = policy_folder(tmp_path, HANGING.replace("{marker}", marker))
    services = make_services(catalog_url, policy_dir=folder)
    package_id = store(services, tmp_path / "bag", {"audio/tone.wav": wav()})
    before = stored_payload_digests(services, package_id)
    started = time.monotonic()
    result = service.migrate(services)
    assert time.monotonic() - started < 30
    (run,) = result.packages
    assert (run.version, run.succeeded, run.failed) == (None, 0, 1)
    (attempt,) = run.attempts
    assert attempt.reason == "sh was killed after the pathway's time limit of 2 s"
    # Nothing stored: no version, no derivative, no stray file in the object or staging.
    assert head(services, package_id) == 2
    root = object_root(services, package_id)
    assert not (root / "v3").exists()
    assert derivatives(services, package_id) == {}
    assert staging_debris(services.store.staging) == []
    assert stored_payload_digests(services, package_id) == before
    assert not any(
        marker in p.read_text(errors="replace")
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if p.exists()
    )
    # The failure is recorded, with the reason; the next run does not try again unasked.
    (event,) = migration_events(services, package_id)
    assert event["outcome"] == "failure"
    assert event["detail"].startswith("hangs (formats v7): no preservation copy: sh was killed")
    assert event["source"] == "bag/data/audio/tone.wav"
    assert service.pending_tasks(services) == []
    assert len(service.pending_tasks(services, retry_failed=True)) == 1
    plan = {r.puid: r for r in service.plan_formats(services).rows}
    assert plan["fmt/141"].failed == 1 and plan["fmt/141"].to_do == 0
    validate_storage(services)


def test_an_interrupted_migration_is_rolled_back_at_the_next_start(
    make_settings: MakeSettings, services: Services
) -> None:
    jr = Journal.begin(services.store, "migration-crashed", kind="migration", package_id="p")
    (jr.folder / "done").mkdir()
    (jr.folder / "done" / "0.pdf").write_bytes(b"%PDF- half written")
    jr.close()  # the process died: its lock is gone, the folder is left
    again = open_services(make_settings())
    try:
        assert again.recovered == [
            "an interrupted format migration was rolled back; none of its outputs was stored"
        ]
        assert staging_debris(again.store.staging) == []
    finally:
        again.close()


def test_cli_plan_run_report(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bag = make_bag(
        tmp_path / "bag",
        {"images/bitmap.bmp": bmp(), "audio/tone.wav": wav(), "notes.txt": b"plain\n"},
    )
    code, body, _ = custos(
        data, "ingest", str(bag), "--depositor", "CLI Tests", "--new-depositor", "--json"
    )
    assert code == 0, body
    package_id = body["package_id"]

    code, plan, _ = custos(data, "migrate", "plan", "--json")
    assert code == 0 and plan["policy"] == "formats v2"
    rows = {r["puid"]: r for r in plan["formats"]}
    assert rows["fmt/116"]["action"] == "migrate" and rows["fmt/116"]["to_do"] == 1
    assert rows["fmt/116"]["format_name"] == "Windows Bitmap"
    assert rows["x-fmt/111"]["action"] == "keep"
    assert {t["name"] for t in plan["tools"] if t["available"]} >= {"flac", "imagemagick"}

    code, ran, _ = custos(data, "migrate", "run", "--json")
    assert code == 0, ran
    assert ran["succeeded"] == 2 and ran["failed"] == 0
    assert ran["packages"][0]["package_id"] == package_id
    assert ran["packages"][0]["version"] == 3
    assert ran["seal"]["status"] == "sealed"
    outputs = {a["output"] for a in ran["packages"][0]["attempts"]}
    assert f"{D}/preservation/bag/data/audio/tone.wav.flac" in outputs

    page = tmp_path / "report.html"
    code, report, _ = custos(data, "migrate", "report", "--json", "--html", str(page))
    assert code == 0
    assert report["totals"]["preserved"] == 2 and report["totals"]["to_do"] == 0
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "Windows Bitmap" in html
    assert "<td>fmt/116</td>" in html

    code, _, err = custos(data, "migrate", "run", "nonexistent-package")
    assert code == 4 and "nonexistent-package" in err
    help_text = runner.invoke(custos_app(), ["migrate", "--help"]).stdout
    for command in ("plan", "run", "report"):
        assert command in help_text


def custos_app():  # type: ignore[no-untyped-def]
    from archive.cli import get_app

    return get_app()


def test_cli_run_exits_5_when_a_copy_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = policy_folder(tmp_path, HANGING.replace("{marker}", "413.25"))
    env = {"CUSTOS_POLICY_DIR": str(folder)}
    bag = make_bag(tmp_path / "bag", {"tone.wav": wav()})
    code, _, _ = custos(
        data, "ingest", str(bag), "--depositor", "CLI", "--new-depositor", "--json", env=env
    )
    assert code == 0
    code, ran, err = custos(data, "migrate", "run", "--json", env=env)
    assert code == 5 and ran["status"] == "failures" and ran["failed"] == 1
    assert "killed after the pathway's time limit" in ran["packages"][0]["attempts"][0]["reason"]
    with_bad_policy = {"CUSTOS_POLICY_DIR": str(tmp_path)}
    code, _, err = custos(data, "migrate", "plan", "--json", env=with_bad_policy)
    assert code == 79 and "formats.tomldoesnotexist" in "".join(err.split())  # wrapped anywhere


def test_files_of_a_pathway_without_a_tool_are_refused_before_anything_runs(
    make_services: MakeServices, tmp_path: Path
) -> None:
    missing = HANGING.replace("{marker}", "1").replace(
        'commands = ["sh"]', 'commands = ["no-such-encoder"]'
    )
    services = make_services(policy_dir=policy_folder(tmp_path, missing))
    store(services, tmp_path / "bag", {"tone.wav": wav()})
    try:
        service.migrate(services)
    except service.tools.ToolUnavailable as exc:
        assert "no-such-encoder: not on PATH" in exc.message
    else:
        raise AssertionError("a missing tool must stop the run")
    with services.sessions() as s:
        assert s.execute(select(File).where(File.role == "derivative")).first() is None
    assert staging_debris(services.store.staging) == []
