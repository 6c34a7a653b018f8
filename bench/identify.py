"""Benchmark: format identification rate (files/s) against FIDO's own command line.

Two corpora: the shared format samples (``../shared/corpora/format-samples``, 81 real files
of many kinds; said clearly if absent) and N small files of twelve common kinds, each with
its own bytes (``bench/small_corpus.py``; default 50,000).

Baseline, in the same run, on the same files: FIDO's command line (``fido -q -input LIST``,
one process, as its users run it, start-up included). Cases measured for Custos:

- *identify, new process*: ``ingest.identify.identify()`` on the files in a new Python
  process, start-up included as for FIDO (a pool of ``workers`` processes, each loading
  FIDO once). Nothing is reused.
- *identify, running*: the same call where the processes are already running (a worker,
  or ``custos serve``, keeps them between deposits).
- *identify_package, cache missed*: what the ``characterise`` job runs on a new package in
  a fresh catalog: the identifier, then recording (one event per file in the hash-chained
  custody log, the catalog rows, a new OCFL version with formats.json and premis.xml).
- *identify_package, cache hit*: a second package holding the same bytes under other
  folder names (same extensions): every result comes from the digest cache, then recording.

The PUIDs of every case are compared with FIDO's, file by file, and disagreements counted
(the target needs the same PUIDs). The page cache is dropped before each timed run when
the process may (root); otherwise the run says "warm". FIDO's command line on 50,000 small
files takes 15 to 20 minutes here: ``--fido-every K`` runs it on every K-th file only (its
rate and the comparison then rest on that sample, and the output says so).

Run from the project folder::

    .venv/bin/python bench/identify.py
    .venv/bin/python bench/identify.py --small 5000 --fido-every 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bagit
import small_corpus
from common import (
    DEFAULT_OUT,
    PROJECT_DIR,
    PageCache,
    cpu_summary,
    custos_services,
    log,
    timed,
)
from sqlalchemy import select

from archive.catalog.tables import File
from archive.services import Services
from ingest.identify import identify, tool_version
from ingest.service import identify_package, ingest

CORPUS = PROJECT_DIR.parent / "shared" / "corpora" / "format-samples"
MATCH = "OK\t%(info.group_index)s\t%(info.puid)s\t%(info.filename)s\n"
TARGET = 5.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=50_000, help="small files (default 50,000)")
    parser.add_argument(
        "--fido-every", type=int, default=1, help="run FIDO's command line on every K-th file"
    )
    parser.add_argument("--workers", type=int, default=2, help="identification processes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="scratch folder")
    return parser.parse_args()


def fido_cli(paths: list[Path], scratch: Path) -> dict[Path, str | None]:
    """FIDO's command line on ``paths``: the PUID of its first match, or None."""
    listing = scratch / "fido-input.txt"
    listing.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-c", "from fido.fido import main; main()", "-q",
         "-matchprintf", MATCH, "-nomatchprintf", "KO\t%(info.filename)s\n",
         "-input", str(listing)],
        capture_output=True, check=True,
    ).stdout.decode("utf-8", "surrogateescape")  # fmt: skip
    found: dict[Path, str | None] = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if fields[0] == "OK" and fields[1] == "1":
            found.setdefault(Path(fields[3]), fields[2])
        elif fields[0] == "KO":
            found.setdefault(Path(fields[1]), None)
    return {p: found.get(p) for p in paths}


NEW_PROCESS = """
import json, sys
from pathlib import Path
from ingest.identify import identify
if __name__ == "__main__":
    paths = [Path(line) for line in open(sys.argv[1], encoding="utf-8").read().splitlines()]
    found = identify(paths, workers=int(sys.argv[2]))
    json.dump({str(p): i.puid for p, i in found.items()}, open(sys.argv[3], "w"))
"""


def identify_in_new_process(paths: list[Path], workers: int, scratch: Path) -> dict[Path, str]:
    """``identify()`` in a new Python process, as a one-shot command would run it."""
    listing, script, out = scratch / "custos-input.txt", scratch / "run.py", scratch / "out.json"
    listing.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    script.write_text(NEW_PROCESS, encoding="utf-8")
    subprocess.run(
        [sys.executable, str(script), str(listing), str(workers), str(out)],
        check=True, cwd=PROJECT_DIR, env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
    )  # fmt: skip
    return {Path(k): v for k, v in json.loads(out.read_text()).items()}


def make_bag(folder: Path, files: list[tuple[str, Path]]) -> Path:
    for rel, source in files:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    bagit.make_bag(str(folder), {"Source-Organization": "bench"}, checksums=["sha512"])
    return folder


def puids_of(services: Services, package_id: str) -> dict[str, str | None]:
    with services.sessions() as session:
        return {
            logical.removeprefix("bag/data/"): puid
            for logical, puid in session.execute(
                select(File.logical_path, File.puid).where(
                    File.package_id == package_id, File.role == "payload"
                )
            )
        }


class Run:
    def __init__(self, args: argparse.Namespace, cache: PageCache) -> None:
        self.args = args
        self.cache = cache
        self.rows: list[tuple[str, str, float, float, int, int]] = []

    def corpus(self, name: str, files: list[tuple[str, Path]], scratch: Path) -> None:
        """Every case on one corpus; ``files`` are (name in the bag, source path)."""
        args = self.args
        sources = [p for _, p in files]
        sample = sources[:: args.fido_every]
        log(f"\n== {name}: {len(files)} files (FIDO's command line on {len(sample)}) ==")
        self.cache.drop()
        fido_secs, fido = timed(lambda: fido_cli(sample, scratch))
        fido_rate = len(sample) / fido_secs
        log(f"FIDO command line: {len(sample)} files in {fido_secs:.1f}s = {fido_rate:.0f} files/s")

        self.cache.drop()
        secs, fresh = timed(lambda: identify_in_new_process(sources, args.workers, scratch))
        bad = sum(1 for p in sample if fresh[p] != fido[p])
        self.add(name, "identify, new process", fido_rate, len(sources) / secs, bad, len(sample))

        identify(sources[:1], workers=args.workers)  # the processes start and load FIDO
        self.cache.drop()
        secs, found = timed(lambda: identify(sources, workers=args.workers))
        bad = sum(1 for p in sample if found[p].puid != fido[p])
        self.add(name, "identify, running", fido_rate, len(sources) / secs, bad, len(sample))

        by_rel = {rel: src for rel, src in files}
        with tempfile.TemporaryDirectory(prefix="bags-", dir=args.out) as tmp:
            bag = make_bag(Path(tmp) / "a", files)
            again = make_bag(Path(tmp) / "b", [(f"again/{rel}", p) for rel, p in files])
            with custos_services(args.out, "sqlite", None, workers=args.workers) as services:
                first = ingest(services, bag, depositor="bench", new_depositor=True).package_id
                self.cache.drop()
                secs, _ = timed(lambda: identify_package(services, first))
                got = puids_of(services, first)
                bad = sum(1 for rel, p in by_rel.items() if p in fido and got[rel] != fido[p])
                rate = len(files) / secs
                self.add(name, "identify_package, cache missed", fido_rate, rate, bad, len(sample))

                second = ingest(services, again, depositor="bench", new_depositor=True).package_id
                self.cache.drop()
                secs, _ = timed(lambda: identify_package(services, second))
                got = puids_of(services, second)
                bad = sum(
                    1 for rel, p in by_rel.items() if p in fido and got[f"again/{rel}"] != fido[p]
                )
                rate = len(files) / secs
                self.add(name, "identify_package, cache hit", fido_rate, rate, bad, len(sample))

    def add(self, corpus: str, case: str, fido: float, custos: float, bad: int, n: int) -> None:
        log(f"{case}: {custos:.0f} files/s ({custos / fido:.1f}x FIDO); PUIDs differ: {bad}/{n}")
        self.rows.append((corpus, case, fido, custos, bad, n))

    def table(self) -> None:
        log(f"\n{tool_version()}; {self.args.workers} identification processes; "
            f"page cache {self.cache.label}; {cpu_summary()}")  # fmt: skip
        log("| corpus | case | FIDO command line | Custos | ratio | PUIDs differ | target |")
        log("| --- | --- | --- | --- | --- | --- | --- |")
        for corpus, case, fido, custos, bad, n in self.rows:
            ratio = custos / fido
            met = "met" if ratio >= TARGET and bad == 0 else "not met"
            log(
                f"| {corpus} | {case} | {fido:,.0f} files/s | {custos:,.0f} files/s | "
                f"{ratio:.1f}x | {bad} of {n} | ≥ {TARGET:.0f}x, same PUIDs: {met} |"
            )


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args, PageCache())
    with tempfile.TemporaryDirectory(prefix="identify-", dir=args.out) as tmp:
        scratch = Path(tmp)
        if (CORPUS / "files.json").is_file():
            samples = sorted(
                p for p in CORPUS.rglob("*")
                if p.is_file() and p.name not in ("files.json", "SHA256SUMS")
                and p.suffix != ".md"
            )  # fmt: skip
            run.corpus(
                "format samples",
                [(str(p.relative_to(CORPUS)), p) for p in samples],
                scratch,
            )
        else:
            log(f"\n{CORPUS} is ABSENT: the mixed corpus was not measured")
        small = small_corpus.write(scratch / "small", args.small)
        run.corpus(
            f"{args.small:,} small files",
            [(str(p.relative_to(scratch / "small")), p) for p in small],
            scratch,
        )
    run.table()


if __name__ == "__main__":
    main()
