"""Benchmark: what the archive seal (PAdES B-LTA) adds to a PDF/A migration.

Custos: ``archive.proofs.pades``: sealing each PDF/A copy (signature, signature timestamp from
the local TSA, validation data, document timestamp: three timestamp requests, two incremental
updates) and then verifying it with ``ades_lta_validation``, as a migration does before it
stores the copy.

Baseline, in the same run on the same files: Ghostscript making the PDF/A-2b copy (the
shipped pathway's command), the work the seal is added to. The ratio is the seal's time over
the conversion's: how much longer a PDF/A migration takes because its copy carries its proof.
The median of ``--repeat`` runs is reported.

Run from the project folder (needs ../shared/corpora/format-samples, Ghostscript, openssl)::

    .venv/bin/python bench/pades.py
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from common import PROJECT_DIR, cpu_summary, fmt_secs, log, median, timed

from archive.config import load_settings
from archive.proofs.pades import pdf_sealer, verify_pdf
from migration.tools import expand
from policies.load import POLICY_DIR, load_format_policy

CORPUS = PROJECT_DIR.parent / "shared" / "corpora" / "format-samples" / "documents"
SOURCES = (
    CORPUS / "article.pdf",
    CORPUS / "FRPEnForm.pdf",
    CORPUS / "Report_2017DigitalPreservationStaffingSurvey.pdf",
    PROJECT_DIR / "samples/sample-holding/data/documents/site-report.pdf",
)


def convert(source: Path, out: Path) -> None:
    pathway = load_format_policy().pathways["pdf-to-pdfa-2b"]
    values = {"input": str(source), "output": str(out), "policy_dir": str(POLICY_DIR)}
    subprocess.run(["gs", *expand(pathway.args, values)], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    log(cpu_summary())
    with tempfile.TemporaryDirectory(prefix="custos-bench-pades-") as tmp:
        folder = Path(tmp)
        settings = load_settings(data_dir=folder / "data", environ={})
        copies = [folder / f"copy-{i}.pdf" for i in range(len(SOURCES))]
        base, ours = [], []
        with pdf_sealer(settings) as sealer:  # the PKI is made here, outside the timings
            for _ in range(args.repeat):
                t, _ = timed(lambda: [convert(s, c) for s, c in zip(SOURCES, copies, strict=True)])
                base.append(t)

                def seal_all() -> None:
                    for i, c in enumerate(copies):
                        target = folder / f"sealed-{i}.pdf"
                        sealer.seal(c, target)
                        verify_pdf(target, sealer.roots)

                t, _ = timed(seal_all)
                ours.append(t)
        n = len(SOURCES)
        log(f"{n} PDF files, {args.repeat} runs")
        log(f"baseline (Ghostscript to PDF/A-2b): {fmt_secs(base)}; median {median(base):.2f}s")
        log(f"Custos (seal + verify):              {fmt_secs(ours)}; median {median(ours):.2f}s")
        log(
            f"per file: conversion {median(base) / n:.2f}s, seal and verify "
            f"{median(ours) / n:.2f}s; ratio seal/conversion {median(ours) / median(base):.2f}"
        )


if __name__ == "__main__":
    main()
