"""Benchmark: `custos policies apply` per package, beside a registrar's tier change.

Custos: ``access.decisions.sunset.apply_due()`` over N packages, each holding one restricted
assignment whose sunset is today: per package, the object's ``custos/access.json`` is read, the move
is decided (``policies.sunset``), a new OCFL version (access.json + premis.xml) is written with its
journal, then the catalog (version, access rows, the ``tier change`` event in the hash-chained
custody log) and the public search index, in one transaction (fsync on). Finding the due packages
(one query on the sunset index) is timed on its own.

Baseline, in the same run on the same packages: the registrar's tier change
(``access.registrar.change_tier``) that gave each package that assignment: the same kind
of work (one version, the catalog, one event, the index) for one package at a time. The
ratio is apply's time per package over the tier change's: what the sunset run costs beyond
writing the version. Ingest is not timed. Each round closes every package again (a tier
change) and applies its sunset; medians of the rounds are reported.

Run from the project folder::

    .venv/bin/python bench/sunset.py
    .venv/bin/python bench/sunset.py --packages 500 --repeat 5
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date
from pathlib import Path

import bagit
from common import DEFAULT_OUT, cpu_summary, custos_services, log, median, timed

from access.decisions.rules import Principal
from access.decisions.sunset import apply_due, due_packages
from access.registrar import change_tier
from ingest.service import ingest


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--packages", type=int, default=200, help="packages with a due sunset")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians reported)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="scratch folder")
    return parser.parse_args()


def make_bag(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    (folder / f"statement-{n}.txt").write_text(f"statement {n}: closed until the trial ends\n")
    bagit.make_bag(
        str(folder),
        {"Source-Organization": "bench", "Title": f"Holding {n}", "Access-Tier": "public"}
        | {"Access-Legal-Basis": "bench", "Consent-Scopes": "public"},
        checksums=["sha512"],
    )
    return folder


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    board = Principal("bench", "registrar", None, True)
    today = date.today()
    log(cpu_summary())
    with (
        tempfile.TemporaryDirectory(prefix="bags-", dir=args.out) as tmp,
        custos_services(args.out, "sqlite", None) as services,
    ):
        ids = []
        for n in range(args.packages):
            ids.append(
                ingest(
                    services,
                    make_bag(Path(tmp) / f"b{n}", n),
                    depositor="bench",
                    new_depositor=True,
                ).package_id
            )
        log(f"{len(ids)} packages ingested (not timed)")

        def restrict_all() -> None:
            for pid in ids:
                change_tier(
                    services, board, pid, path="", tier="restricted",
                    legal_basis="bench: closed until today", sunset=today, successor="public",
                )  # fmt: skip

        base_runs, apply_runs, query_runs, again_runs = [], [], [], []
        for i in range(1, args.repeat + 1):  # each round closes the packages again
            base_secs, _ = timed(restrict_all)
            with services.sessions() as session:
                query_secs, due = timed(lambda s=session: due_packages(s, today))
            assert len(due) == len(ids)
            apply_secs, report = timed(lambda: apply_due(services))
            assert report.moved == len(ids) and report.versions == len(ids)
            assert not report.failed
            again_secs, again = timed(lambda: apply_due(services))
            assert again.transitions == []
            log(
                f"  round {i}/{args.repeat}: tier changes {base_secs:.2f}s, apply {apply_secs:.2f}s"
            )
            base_runs.append(base_secs)
            apply_runs.append(apply_secs)
            query_runs.append(query_secs)
            again_runs.append(again_secs)
    base_secs, apply_secs = median(base_runs), median(apply_runs)
    query_secs, again_secs = median(query_runs), median(again_runs)
    per_base = base_secs / len(ids) * 1000
    per_apply = apply_secs / len(ids) * 1000
    log("")
    log(f"packages: {len(ids)}, medians of {args.repeat} rounds (SQLite, local root, fsync on)")
    log(f"baseline (registrar tier change, one package at a time): {per_base:.1f} ms/package")
    log(f"custos policies apply (one version per package):          {per_apply:.1f} ms/package")
    log(f"ratio apply / tier change: {per_apply / per_base:.2f}x")
    log(f"finding the due packages (one indexed query): {query_secs * 1000:.1f} ms")
    log(f"running again, nothing due: {again_secs * 1000:.1f} ms")


if __name__ == "__main__":
    main()
