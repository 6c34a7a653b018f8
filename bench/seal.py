"""Sealing throughput: batched (one hash tree, one RFC 3161 token, one evidence record per
manifest) against one TSA request per manifest, on the same local TSA in the same run; and the
time to verify one evidence record.

Targets (issue 3): >= 10,000 manifests sealed per second in batches, one TSA request per
batch, and one record verified in under 10 ms. This measures the proof machinery (tree, token,
records); writing the records into objects and the catalog rows are not included.

Run: .venv/bin/python bench/seal.py [--manifests 10000] [--single 200] [--verify 200]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:  # run as `python bench/seal.py` from anywhere
    sys.path.insert(0, str(PROJECT_DIR))

from archive.proofs import merkle  # noqa: E402
from archive.proofs.evidence import (  # noqa: E402
    RecordWriter,
    build_record,
    parse_record,
    renew_timestamp,
    renewal_leaf,
    verify_record,
)
from archive.proofs.local_tsa import LocalTSAServer  # noqa: E402
from archive.proofs.timestamp import request_token  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=200, help="manifests sealed one by one")
    parser.add_argument("--verify", type=int, default=200, help="records verified")
    args = parser.parse_args()
    digests = [hashlib.sha512(os.urandom(32)).digest() for _ in range(args.manifests)]
    with tempfile.TemporaryDirectory() as tmp, LocalTSAServer(Path(tmp) / "tsa") as tsa:
        roots = [tsa.tsa.root_certificate.read_bytes()]
        request_token(tsa.url, digests[0], "sha512")  # warm up the responder

        start = time.perf_counter()
        batch = merkle.build("sha512", digests)
        token = request_token(tsa.url, batch.root, "sha512")
        writer = RecordWriter("sha512", token)
        records = [writer.record(batch.paths[d]) for d in digests]
        batched = time.perf_counter() - start

        start = time.perf_counter()
        for d in digests[: args.single]:
            build_record("sha512", (), request_token(tsa.url, d, "sha512"))
        single = time.perf_counter() - start

        n = min(args.verify, len(records))
        start = time.perf_counter()
        for d, der in zip(digests[:n], records[:n], strict=True):
            verify_record(der, d, roots=roots)
        per_record_ms = (time.perf_counter() - start) / n * 1000

        # Timestamp renewal of every record in one batch (RFC 4998 §5.2): records of one
        # batch share their last timestamp, so the tree has one leaf and one token covers all.
        start = time.perf_counter()
        views = [parse_record(der) for der in records]
        leaves = sorted({renewal_leaf(v) for v in views})
        renewal = merkle.build("sha512", leaves)
        token2 = request_token(tsa.url, renewal.root, "sha512")
        renewed = [
            renew_timestamp(der, renewal.paths[renewal_leaf(v)], token2.token, v)
            for der, v in zip(records, views, strict=True)
        ]
        renew_rate = len(renewed) / (time.perf_counter() - start)
        start = time.perf_counter()
        for d, der in zip(digests[:n], renewed[:n], strict=True):
            verify_record(der, d, roots=roots)
        renewed_ms = (time.perf_counter() - start) / n * 1000

    batched_rate = args.manifests / batched
    single_rate = args.single / single
    print(f"sealing {args.manifests} manifests, CPUs: {os.cpu_count()}")
    print()
    print(f"  {'case':34} {'manifests/s':>12} {'TSA requests':>13}")
    print(f"  {'one TSA request per manifest':34} {single_rate:>12,.0f} {args.single:>13}")
    print(f"  {'batched (one tree, one token)':34} {batched_rate:>12,.0f} {1:>13}")
    print()
    print(f"  ratio batched / one-by-one: {batched_rate / single_rate:,.0f}x")
    print(f"  batched: {batched_rate:,.0f} manifests/s (target >= 10,000)")
    print(f"  verifying one evidence record: {per_record_ms:.2f} ms (target < 10 ms), mean of {n}")
    print(f"  renewing records (timestamp renewal, one batch): {renew_rate:,.0f} records/s")
    print(f"  verifying one renewed record (two timestamps): {renewed_ms:.2f} ms, mean of {n}")


if __name__ == "__main__":
    main()
