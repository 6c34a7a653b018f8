"""Named steps of work that a crash must not leave half-done: the moments of an ingest (and of
the version that records its formats) and of a fixity batch at which a process killed there
must leave what recovery, or the next run, finishes or undoes.

Production code only announces them: :func:`reached` does nothing, reads no setting and never
stops the process. The crash tests start their processes with a test-only ``sitecustomize``
(``tests/crash/``) that replaces it to kill the process (SIGKILL) at the step they name; so
call it as ``steps.reached(name)``, through this module, never a name imported from it. The
steps are listed in ``tests/e2e/test_kill.py`` (ingest) and used by ``tests/e2e/test_workers.py``
(``fixity-checked``: a batch read and judged, before its results are written).
"""

from __future__ import annotations


def reached(name: str) -> None:
    """The work has reached step ``name``; does nothing (see the module docstring)."""
