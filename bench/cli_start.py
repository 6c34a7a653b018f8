"""Start-up of the command line: `custos --help` and `custos status` against `python -c pass`
(the same interpreter, site-packages and all) measured in the same run.

Each command runs as a new process, as a user runs it; the runs of the three are interleaved
so that other work on the machine weighs on each alike. `custos status` reads an archive
made in a temporary folder by one ingest of samples/sample-holding (not timed). Reported:
the median wall time of each (and the median CPU time, user and system, which other work on
the machine inflates less), its ratio to the baseline, and whether it is under the target
(0.3 s). One untimed run of each comes first (Python's bytecode caches).

`--source DIR` times the command line of another source tree (an export of an earlier commit,
say: `git archive REV | tar -x -C DIR`) with its own archive, for a before-and-after.

Run from the project folder::

    .venv/bin/python bench/cli_start.py
    .venv/bin/python bench/cli_start.py --runs 20 --source /tmp/custos-before
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT_DIR / "samples" / "sample-holding"
TARGET = 0.3  # seconds, for `custos --help` and `custos status`


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    parser.add_argument(
        "--source",
        type=Path,
        action="append",
        help="a source tree whose command line to time (repeatable; default: this one)",
    )
    return parser.parse_args()


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    args = parse_args()
    sources = [p.resolve() for p in args.source] if args.source else [PROJECT_DIR]
    # As a user's shell runs it: Python writes its bytecode caches (an environment that
    # forbids it, PYTHONDONTWRITEBYTECODE, would time the compiling of every module instead).
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "CUSTOS_FSYNC": "false",
        "COLUMNS": "100",
    }
    # `python -c` puts the working folder first on sys.path: each source tree's own code runs.
    custos = [sys.executable, "-c", "from archive.cli import main; main()"]
    cases: list[tuple[str, list[str], Path]] = [
        ("python -c pass, baseline", [sys.executable, "-c", "pass"], PROJECT_DIR)
    ]
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for n, source in enumerate(sources):
            data = Path(tmp) / f"data{n}"
            ingest = [*custos, "--data-dir", str(data), "ingest", str(SAMPLE), "--depositor", "B"]
            if (source / "archive" / "depositors.py").exists():  # a registry of depositors
                ingest.append("--new-depositor")
            timed(ingest, source, env)
            label = "" if len(sources) == 1 else f" ({source})"
            cases.append((f"custos --help{label}", [*custos, "--help"], source))
            cases.append(
                (f"custos status{label}", [*custos, "--data-dir", str(data), "status"], source)
            )
        load_before = os.getloadavg()[0]
        for _, command, cwd in cases:
            timed(command, cwd, env)
        walls: list[list[float]] = [[] for _ in cases]
        cpus: list[list[float]] = [[] for _ in cases]
        for _ in range(args.runs):
            for i, (_, command, cwd) in enumerate(cases):
                wall, cpu = timed(command, cwd, env)
                walls[i].append(wall)
                cpus[i].append(cpu)
        load_after = os.getloadavg()[0]
    print(
        f"{args.runs} runs each, median; load average {load_before:.1f} before, "
        f"{load_after:.1f} after ({os.cpu_count()} CPUs)"
    )
    base = statistics.median(walls[0])
    width = max(len(name) for name, _, _ in cases)
    for i, (name, _, _) in enumerate(cases):
        wall, cpu = statistics.median(walls[i]), statistics.median(cpus[i])
        line = f"{name:<{width}}  {wall:.3f} s wall, {cpu:.3f} s CPU"
        if i:
            verdict = "met" if wall < TARGET else "not met"
            line += f", {wall / base:.1f}x the baseline; target < {TARGET} s: {verdict}"
        print(line)


if __name__ == "__main__":
    main()
