"""Crash injection, from the test side: a process started with :func:`kill_at`'s environment
loads ``sitecustomize.py`` from this folder at start-up, which replaces
``archive.steps.reached`` so that the process kills itself (SIGKILL) at the step named; one
started with a :class:`Pause`'s environment stands still at the step named until the test lets
it go on (to stop a server under it at a known point). The archive's own code holds no fault
injection: it only announces its steps."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The folder put first on the started process's PYTHONPATH (it holds ``sitecustomize.py``).
FOLDER = Path(__file__).resolve().parent
#: ``<step>`` (the first time it is reached) or ``<step>:<n>`` (the n-th time, in that process).
#: Not a ``CUSTOS_`` name: the settings take every one of those as a setting.
ENV = "TESTS_KILL_AT_STEP"
PAUSE_ENV = "TESTS_PAUSE_AT_STEP"
PAUSE_FOLDER_ENV = "TESTS_PAUSE_FOLDER"


def kill_at(step: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment (``os.environ``'s, or ``environ``) for a process that kills itself at
    ``step``; ``""``: one that never does."""
    env = dict(os.environ if environ is None else environ)
    env.pop(ENV, None)
    if step:
        env[ENV] = step
        _load_from_here(env)
    return env


def _load_from_here(env: dict[str, str]) -> None:
    folder = str(FOLDER)
    if folder not in env.get("PYTHONPATH", "").split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, env.get("PYTHONPATH", "")) if p)


class Pause:
    """A process started with :meth:`environ` stops at ``step`` (``<step>`` or
    ``<step>:<n>``, as for :func:`kill_at`) and waits there until :meth:`release`;
    :meth:`wait` returns once it stands there. ``folder``: an empty folder of the test's,
    through which the two say so."""

    def __init__(self, step: str, folder: Path) -> None:
        self.step, self.folder = step, folder
        folder.mkdir(parents=True, exist_ok=True)

    def environ(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if environ is None else environ)
        env.pop(ENV, None)
        env[PAUSE_ENV] = self.step
        env[PAUSE_FOLDER_ENV] = str(self.folder)
        _load_from_here(env)
        return env

    def reached(self) -> bool:
        return (self.folder / "reached").exists()

    def wait(self, process: Any, timeout: float = 120.0) -> None:
        """Wait until ``process`` (a ``subprocess.Popen``) stands at the step; AssertionError
        if it ends first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not self.reached():
            assert process.poll() is None, f"the process ended before {self.step}"
            assert time.monotonic() < deadline, f"{self.step} not reached in {timeout} s"
            time.sleep(0.05)

    def release(self) -> None:
        (self.folder / "go").write_text("go\n")
