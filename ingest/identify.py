"""Format identification to PRONOM PUIDs with FIDO (opf-fido), in worker processes.

Each worker process loads FIDO once (:mod:`ingest.fido_engine`, which sets FIDO's signature
files as its own command line does) and identifies chunks of files; a chunk past its time
limit stops the whole pool. Where FIDO offers several matches, its first (best) one is kept,
as its command line prints it first; the basis (signature, container or extension) is
recorded with it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from archive.errors import CustosError
from ingest import fido_engine


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


#: Files sent to a worker process at a time: small enough for steady progress and for the
#: processes to share the work evenly, large enough to keep the hand-over cheap.
CHUNK = 200


def identify(
    paths: Sequence[Path],
    *,
    workers: int = 2,
    timeout_per_file: float = 5.0,
    progress: Callable[[int], None] | None = None,
) -> dict[Path, Identification]:
    """Identify every file; a file FIDO cannot match gets ``puid=None`` and basis ``none``.

    FIDO is loaded once in each of up to ``workers`` processes, which share the files
    (:mod:`ingest.fido_engine`: FIDO's own matching, the same verdicts, less work).
    Raises :class:`IdentificationError` if the identifier fails or exceeds its time limit
    (``timeout_per_file`` per file of a chunk, plus start-up).
    """
    if not paths:
        return {}
    chunks = [[str(p) for p in paths[i : i + CHUNK]] for i in range(0, len(paths), CHUNK)]
    processes = max(1, min(workers, len(chunks)))
    found: dict[Path, Identification] = {}
    pool = multiprocessing.get_context("spawn").Pool(processes, initializer=fido_engine.load)
    try:
        results = pool.imap(fido_engine.identify_paths, chunks)
        for chunk in chunks:
            try:
                verdicts = results.next(timeout=60 + timeout_per_file * len(chunk))
            except multiprocessing.TimeoutError as exc:
                raise IdentificationError(
                    f"format identification of {len(chunk)} files (from {chunk[0]}) timed out",
                    hint="retry later; the package itself is stored and unaffected",
                ) from exc
            except Exception as exc:
                raise IdentificationError(f"FIDO failed on files from {chunk[0]}: {exc}") from exc
            for path, (puid, mime, name, basis) in zip(chunk, verdicts, strict=True):
                found[Path(path)] = Identification(puid, mime, name, basis)
            if progress:
                progress(len(chunk))
        pool.close()
    finally:
        pool.terminate()  # also stops a worker stuck past its time limit
        pool.join()
    return found
