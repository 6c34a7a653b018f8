"""Benchmark: the age layer of protected copies (archive/crypt.py) beside its baselines.

Cases, each measured in the same run on the same file (warm page cache: the file is read
once before; what is measured is CPU, not the disk):

1. encrypt: ``encrypt_copy`` (pyrage, digesting the plain and the stored bytes, sha512 and
   sha256 each) against ``copy_with_digests`` (what a deposit does with a plain file: one
   copy, sha512 and sha256). The ratio is the plain copy's time over the encrypted one's.
2. decrypt: ``decrypt_chunks`` (pyrage on a thread, chunks handed over a bounded queue)
   against Debian's ``age -d`` to /dev/null.
3. rewrap: ``rewrap`` to a new recipient against ``cp`` of the same file (the payload is
   copied byte for byte; only the header is new).

Run (from the project folder)::

    .venv/bin/python bench/encrypt.py              # 512 MiB, 3 runs each (median)
    .venv/bin/python bench/encrypt.py --mib 64     # quick check
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyrage

from archive.crypt import decrypt_chunks, encrypt_copy, identity_text, rewrap
from archive.digest import copy_with_digests


def _median(fn: Callable[[], object], repeat: int, before: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512, help="size of the file (MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (median)")
    args = parser.parse_args()
    if not shutil.which("age"):
        sys.exit("Debian's age is needed for the decrypt baseline: apt-get install age")
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="custos-bench-encrypt-") as tmp:
        folder = Path(tmp)
        plain, sealed = folder / "plain.bin", folder / "sealed.age"
        with plain.open("wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1024 * 1024))
        secret = os.urandom(32)
        identity_str = identity_text(secret)
        identity = pyrage.x25519.Identity.from_str(identity_str)
        recipient = str(identity.to_public())
        other = str(pyrage.x25519.Identity.generate().to_public())
        key_file = folder / "identity.txt"
        key_file.write_text(identity_str + "\n")
        out = folder / "out.bin"
        clear = lambda: out.unlink(missing_ok=True)  # noqa: E731

        def plain_copy() -> None:
            with plain.open("rb") as src:
                copy_with_digests(src, out, size_hint=size)

        def encrypted_copy() -> None:
            with plain.open("rb") as src, out.open("wb") as dst:
                encrypt_copy(src, dst, [recipient])

        with plain.open("rb") as src, sealed.open("wb") as dst:
            encrypt_copy(src, dst, [recipient])

        def age_d() -> None:
            subprocess.run(
                ["age", "-d", "-i", str(key_file), "-o", "/dev/null", str(sealed)], check=True
            )

        def custos_d() -> None:
            with sealed.open("rb") as src:
                for _ in decrypt_chunks(src, identity):
                    pass

        def cp() -> None:
            shutil.copyfile(sealed, out)

        def custos_rewrap() -> None:
            with sealed.open("rb") as src, out.open("wb") as dst:
                rewrap(src, dst, identity_str, [other])

        rows = []
        for case, baseline_name, baseline, custos in (
            ("encrypt (copy + both sides' digests)", "plain copy + digests", plain_copy,
             encrypted_copy),
            ("decrypt (stream of chunks)", "Debian age -d", age_d, custos_d),
            ("rewrap (new header, payload copied)", "cp", cp, custos_rewrap),
        ):  # fmt: skip
            base = _median(baseline, args.repeat, clear)
            ours = _median(custos, args.repeat, clear)
            rows.append((case, baseline_name, base, ours))
    mib = args.mib
    print(f"\nage layer on {mib} MiB (warm cache), median of {args.repeat}; {os.cpu_count()} CPUs")
    print(f"  {'case':40} {'baseline':22} {'baseline MiB/s':>14} {'custos MiB/s':>12} {'ratio':>6}")
    for case, name, base, ours in rows:
        print(f"  {case:40} {name:22} {mib / base:14.0f} {mib / ours:12.0f} {base / ours:5.2f}x")


if __name__ == "__main__":
    main()
