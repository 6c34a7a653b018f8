"""Benchmark: format migrations per minute per worker, on the shared format samples.

Custos: ``migration.service.migrate()`` with ``workers=1`` on a package holding one sample of
each kind the shipped policy migrates (PDF, RTF, DOC, XLSX, PPT, WordPerfect, GIF, BMP, WAV,
AIFF, WMV, MP4, MKV, and the Canon, Kodak and Nikon raw camera files: 18 copies,
LibreOffice, Ghostscript, ImageMagick, FLAC, FFmpeg and dcraw). It
counts everything a migration is: copying the original into staging with its digest,
reading the original's significant properties, the tool, FIDO and the validator on the
output, the digests, one new OCFL version and the catalog rows and events (fsync on).
Ingest and identification are not timed.

Baseline, in the same run on the same files: the same tool commands (the pathways' argument
templates, expanded) run directly one after the other on copies of the files, nothing else.
The ratio is Custos' migrations per minute over the baseline's: what the checks and the
bookkeeping cost. The median of ``--repeat`` runs is reported (page cache warm: tools and
their libraries dominate, not the disk).

Run from the project folder (needs ../shared/corpora/format-samples and the Debian tools)::

    .venv/bin/python bench/migrate.py
    .venv/bin/python bench/migrate.py --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import bagit
from common import DEFAULT_OUT, PROJECT_DIR, custos_services, fmt_secs, log, median, timed

from ingest.service import identify_package, ingest
from migration import service, tools
from migration.plan import Task
from policies.load import POLICY_DIR, load_format_policy

CORPUS = PROJECT_DIR.parent / "shared" / "corpora" / "format-samples"
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
    "raw-camera/RAW_CANON_S30.CRW",
    "raw-camera/RAW_KODAK_DC120.KDC",
    "raw-camera/RAW_NIKON_D1.NEF",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each (median)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="scratch folder")
    return parser.parse_args()


def make_bag(folder: Path) -> Path:
    for rel in KINDS:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / rel, target)
    bagit.make_bag(str(folder), {"Source-Organization": "bench"}, checksums=["sha512"])
    return folder


def baseline(tasks: list[Task], originals: Path) -> float:
    """Seconds to run each task's tool command directly on a copy of its file."""
    policy = load_format_policy()
    total = 0.0
    for i, task in enumerate(tasks):
        pathway = policy.pathways[task.pathway_name]
        tool = tools.resolve(pathway.tool, policy.tools[pathway.tool])
        with tempfile.TemporaryDirectory(prefix="custos-bench-") as tmp:
            work = Path(tmp)
            (work / "out").mkdir()
            name = task.file.logical_path.removeprefix("bag/data/")
            source = work / f"input{Path(name).suffix.lower()}"
            shutil.copyfile(originals / name, source)
            output = work / "out" / f"input.{pathway.extension}"
            values = {
                "input": str(source), "output": str(output), "outdir": str(output.parent),
                "workdir": str(work), "workdir_url": work.as_uri(), "policy_dir": str(POLICY_DIR),
            }  # fmt: skip
            argv = [tool.executable, *tools.expand(pathway.args, values)]
            secs, result = timed(
                lambda a=argv, w=work, p=pathway, o=output: tools.run(
                    a,
                    cwd=w,
                    time_limit=p.time_limit_seconds,
                    stdout=o if p.output_is_stdout else None,
                )
            )
            if not result.ok or not output.is_file():
                raise RuntimeError(f"baseline task {i} ({task.pathway_name}) failed")
            total += secs
    return total


def main() -> None:
    args = parse_args()
    if not (CORPUS / "files.json").is_file():
        raise SystemExit(f"{CORPUS} is absent: this benchmark needs the shared format samples")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bag-", dir=args.out) as tmp:
        bag = make_bag(Path(tmp) / "samples")
        custos_secs: list[float] = []
        base_secs: list[float] = []
        copies = 0
        for i in range(1, args.repeat + 1):
            with custos_services(args.out, "sqlite", None, workers=1) as services:
                package_id = ingest(services, bag, depositor="bench", new_depositor=True).package_id
                identify_package(services, package_id)
                todo = service.pending_tasks(services)
                copies = len(todo)
                secs, report = timed(lambda s=services, t=todo: service.run_tasks(s, t))
                failed = sum(p.failed for p in report.packages)
                if failed:
                    raise RuntimeError(f"{failed} migration(s) failed: {report.as_dict()}")
            custos_secs.append(secs)
            base_secs.append(baseline(todo, bag / "data"))
            log(
                f"  run {i}/{args.repeat}: {copies} copies; baseline {base_secs[-1]:.2f}s, "
                f"custos {custos_secs[-1]:.2f}s"
            )
    base_rate = copies / median(base_secs) * 60
    custos_rate = copies / median(custos_secs) * 60
    log("")
    log(f"copies per run: {copies} (workers = 1)")
    log(f"baseline (tool commands alone): {base_rate:.1f} migrations/min  [{fmt_secs(base_secs)}]")
    log(
        f"custos migrate run:             {custos_rate:.1f} migrations/min per worker  "
        f"[{fmt_secs(custos_secs)}]"
    )
    log(f"ratio custos / baseline: {custos_rate / base_rate:.2f}x")


if __name__ == "__main__":
    main()
