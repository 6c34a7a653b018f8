"""Format identification to PRONOM PUIDs with FIDO (opf-fido), in worker processes.

Each worker process loads FIDO once (:mod:`ingest.fido_engine`, which sets FIDO's signature
files as its own command line does), is kept for later calls, and identifies chunks of
files; a chunk past its time limit stops the processes (new ones start on the next call).
Where FIDO offers several matches, its first (best) one is kept, as its command line prints
it first; the basis (signature, container or extension) is recorded with it.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.pool
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

#: The worker processes of this process, kept between calls (each loads FIDO once): a
#: running worker or ``custos serve`` pays the start-up once, not per deposit.
_POOLS: dict[int, multiprocessing.pool.Pool] = {}


def _pool(processes: int) -> multiprocessing.pool.Pool:
    pool = _POOLS.get(processes)
    if pool is None:
        context = multiprocessing.get_context("spawn")  # no inherited threads or locks
        pool = _POOLS[processes] = context.Pool(processes, initializer=fido_engine.load)
    return pool


@atexit.register
def _close_pools() -> None:
    """Stop the worker processes before the interpreter tears its modules down."""
    for processes in list(_POOLS):
        _discard_pool(processes)


def _discard_pool(processes: int) -> None:
    """Stop the worker processes (a chunk ran past its time limit, or a worker failed)."""
    pool = _POOLS.pop(processes, None)
    if pool is not None:
        pool.terminate()
        pool.join()


def identify(
    paths: Sequence[Path],
    *,
    workers: int = 2,
    timeout_per_file: float = 5.0,
    progress: Callable[[int], None] | None = None,
) -> dict[Path, Identification]:
    """Identify every file; a file FIDO cannot match gets ``puid=None`` and basis ``none``.

    ``workers`` processes, each with FIDO loaded once and kept for later calls, share the
    files (:mod:`ingest.fido_engine`: FIDO's own matching, the same verdicts, less work).
    Raises :class:`IdentificationError` if the identifier fails or a chunk exceeds its time
    limit (start-up, plus ``timeout_per_file`` per file); the processes are then stopped.
    """
    if not paths:
        return {}
    processes = max(1, workers)
    # Small sets in small chunks too, so that every process has a share.
    size = max(1, min(CHUNK, -(-len(paths) // (processes * 4))))
    chunks = [[str(p) for p in paths[i : i + size]] for i in range(0, len(paths), size)]
    found: dict[Path, Identification] = {}
    results = _pool(processes).imap(fido_engine.identify_paths, chunks)
    try:
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
    except BaseException:
        _discard_pool(processes)  # also stops a worker stuck past its time limit
        raise
    return found
