"""Crash injection, from the test side: a process started with :func:`kill_at`'s environment
loads ``sitecustomize.py`` from this folder at start-up, which replaces
``archive.steps.reached`` so that the process kills itself (SIGKILL) at the step named. The
archive's own code holds no fault injection: it only announces its steps."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: The folder put first on the started process's PYTHONPATH (it holds ``sitecustomize.py``).
FOLDER = Path(__file__).resolve().parent
#: ``<step>`` (the first time it is reached) or ``<step>:<n>`` (the n-th time, in that process).
#: Not a ``CUSTOS_`` name: the settings take every one of those as a setting.
ENV = "TESTS_KILL_AT_STEP"


def kill_at(step: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment (``os.environ``'s, or ``environ``) for a process that kills itself at
    ``step``; ``""``: one that never does."""
    env = dict(os.environ if environ is None else environ)
    env.pop(ENV, None)
    if step:
        env[ENV] = step
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(FOLDER), env.get("PYTHONPATH", "")) if p
        )
    return env
