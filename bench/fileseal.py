"""File seals (each file sealed on its own) and court bundles built on them, measured against
baselines from the same run on the same package:

- sealing: the file seal of a deposit's version (salts, the padded tree, the sidecar, one token,
  the root's record) against the seal of the same deposit's manifests (the proof every deposit
  had before: its bag manifests, tag manifests and inventories in one batch);
- export: ``custos export`` of every file (copy with digests, each file's record derived from
  the root's and checked, VERIFY.txt, the bag) against ``cp -r`` of the same stored files.

Run: .venv/bin/python bench/fileseal.py [--files 20000] [--size 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:  # run as `python bench/fileseal.py` from anywhere
    sys.path.insert(0, str(PROJECT_DIR))

from access.export.bundle import export  # noqa: E402
from archive.config import load_settings  # noqa: E402
from archive.proofs.seal import seal_now  # noqa: E402
from archive.services import open_services  # noqa: E402


def make_bag(folder: Path, files: int, size: int) -> None:
    """A bag of ``files`` public files of ``size`` bytes each (own bytes each), in folders of
    1,000, with sha512 manifests."""
    import hashlib

    data = folder / "data"
    lines = []
    for i in range(files):
        rel = f"data/d{i // 1000:04d}/f{i:07d}.txt"
        body = (f"{i:08d} " * (size // 9 + 1)).encode()[:size]
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        lines.append(f"{hashlib.sha512(body).hexdigest()}  {rel}\n")
    data.mkdir(exist_ok=True)
    (folder / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    (folder / "bag-info.txt").write_text(
        "Access-Tier: public\nAccess-Legal-Basis: benchmark\nConsent-Scopes: public, research\n"
    )
    (folder / "manifest-sha512.txt").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        make_bag(root / "bag", args.files, args.size)
        data = root / "data"
        env = {**os.environ, "CUSTOS_TSA__LOCAL": "false", "CUSTOS_FSYNC": "false"}
        custos = [sys.executable, "-c", "from archive.cli import main; main()"]
        done = subprocess.run(
            [*custos, "--data-dir", str(data), "ingest", str(root / "bag"), "--depositor", "B",
             "--new-depositor", "--no-identify", "--json"],
            env=env, cwd=PROJECT_DIR, capture_output=True, text=True,
        )  # fmt: skip
        if '"package_id"' not in done.stdout:
            raise SystemExit(f"ingest failed: {done.stdout[-800:]}{done.stderr[-800:]}")
        import json

        package = json.loads(done.stdout)["package_id"]
        services = open_services(load_settings(data_dir=data, overrides={"fsync": False}))
        try:
            start = time.perf_counter()
            manifests = seal_now(services, files=0)
            t_manifests = time.perf_counter() - start
            start = time.perf_counter()
            files = seal_now(services, manifests=False, files=None)
            t_files = time.perf_counter() - start
            object_root = next(p.parent for p in (data / "storage").rglob("0=ocfl_object_1.1"))
            start = time.perf_counter()
            subprocess.run(
                ["cp", "-r", str(object_root / "v1" / "content"), str(root / "copied")], check=True
            )
            t_copy = time.perf_counter() - start
            start = time.perf_counter()
            result = export(
                services, package, [], to=root / "bundle", requester="bench", purpose="public"
            )
            t_export = time.perf_counter() - start
        finally:
            services.close()
        shutil.rmtree(root / "bundle", ignore_errors=True)
    n = args.files
    print(f"{n:,} files of {args.size} bytes, one version; page cache warm")
    print(
        f"seal, baseline (the deposit's {len(manifests.sealed)} manifests, one batch): "
        f"{t_manifests:.2f} s"
    )
    print(
        f"file seal ({files.files:,} files, each on its own): {t_files:.2f} s, "
        f"{t_files / files.files * 1e6:.0f} µs per file, {t_files / t_manifests:.2f}x the baseline"
    )
    print(f"cp -r of the stored files, baseline: {t_copy:.2f} s")
    print(
        f"export of {len(result.files):,} files ({result.records:,} records): {t_export:.2f} s, "
        f"{t_export / len(result.files) * 1e6:.0f} µs per file, "
        f"{t_export / t_copy:.1f}x the baseline"
    )


if __name__ == "__main__":
    main()
