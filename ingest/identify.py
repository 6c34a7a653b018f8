"""Format identification to PRONOM PUIDs with FIDO (opf-fido), one process per batch.

FIDO's Python API depends on module-level defaults set by its own ``main``, so it is driven
through its command line with a machine-readable match format, on a list of files, with a
time limit. Where FIDO offers several matches, its first (best) one is kept; the basis
(signature, container or extension) is recorded with it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from archive.errors import CustosError

MATCH = (
    "OK\t%(info.group_index)s\t%(info.puid)s\t%(info.mimetype)s\t%(info.matchtype)s"
    "\t%(info.formatname)s\t%(info.filename)s\n"
)
NOMATCH = "KO\t%(info.filename)s\n"


class IdentificationError(CustosError):
    """The identifier could not run (not a verdict on any file)."""


@dataclass(frozen=True, slots=True)
class Identification:
    puid: str | None
    mime_type: str | None
    format_name: str | None
    basis: str  # signature | container | extension | none


def tool_version() -> str:
    from fido import __version__

    return f"fido {__version__}"


#: Files per FIDO process: large enough to amortise its start-up (~0.4 s), small enough for
#: steady progress and for both cores to share the work.
BATCH = 1000


def identify(
    paths: Sequence[Path],
    *,
    workers: int = 2,
    timeout_per_file: float = 5.0,
    progress: Callable[[int], None] | None = None,
) -> dict[Path, Identification]:
    """Identify every file; a file FIDO cannot match gets ``puid=None`` and basis ``none``.

    Batches run in up to ``workers`` FIDO processes at once.
    Raises :class:`IdentificationError` if FIDO fails to run or exceeds its time limit.
    """
    batches = [list(paths[i : i + BATCH]) for i in range(0, len(paths), BATCH)]
    found: dict[Path, Identification] = {}
    with ThreadPoolExecutor(max(1, min(workers, len(batches)))) as pool:
        for batch, result in zip(
            batches, pool.map(lambda b: _run_fido(b, timeout_per_file), batches), strict=True
        ):
            found.update(result)
            if progress:
                progress(len(batch))
    return found


def _run_fido(paths: list[Path], timeout_per_file: float) -> dict[Path, Identification]:
    if not paths:
        return {}
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as listing:
        listing.write("".join(f"{p}\n" for p in paths))
        listing.flush()
        cmd = [
            sys.executable,
            "-c",
            "from fido.fido import main; main()",
            "-q",
            "-matchprintf",
            MATCH,
            "-nomatchprintf",
            NOMATCH,
            "-input",
            listing.name,
        ]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                timeout=30 + timeout_per_file * len(paths),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise IdentificationError(
                f"format identification of {len(paths)} files timed out",
                hint="retry later; the package itself is stored and unaffected",
            ) from exc
    if proc.returncode != 0:
        raise IdentificationError(
            f"FIDO exited with status {proc.returncode}: "
            f"{proc.stderr.decode('utf-8', 'replace').strip()[-300:]}"
        )
    found: dict[Path, Identification] = {}
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split("\t")
        if fields[0] == "OK" and len(fields) >= 7:
            path = Path("\t".join(fields[6:]))
            if fields[1] != "1" or path in found:
                continue
            mime = fields[3] if fields[3] not in ("None", "") else None
            found[path] = Identification(fields[2], mime, fields[5], fields[4])
        elif fields[0] == "KO" and len(fields) >= 2:
            found.setdefault(Path("\t".join(fields[1:])), Identification(None, None, None, "none"))
    for p in paths:
        found.setdefault(p, Identification(None, None, None, "none"))
    return found
