"""Loaded by Python at start-up in the processes the crash tests start (see
``tests.crash.kill_at`` and ``tests.crash.Pause``, which put this folder on PYTHONPATH):

- with ``TESTS_KILL_AT_STEP`` set to ``<step>`` or ``<step>:<n>``, ``archive.steps.reached``
  kills the process (SIGKILL) the n-th time (default the first) the process reaches that step;
- with ``TESTS_PAUSE_AT_STEP`` set the same way and ``TESTS_PAUSE_FOLDER`` to a folder, the
  process writes ``reached`` in that folder there and waits (at most ten minutes) until the
  test writes ``go`` beside it: the test does what it must while the process stands still
  (stops a server the process uses), then lets it go on.

Without either, nothing is imported."""

from __future__ import annotations

import os
from collections.abc import Callable

_KILL = os.environ.get("TESTS_KILL_AT_STEP", "")
_PAUSE = os.environ.get("TESTS_PAUSE_AT_STEP", "")


def _counter(spec: str) -> Callable[[str], bool]:
    """A function of a step's name: True the n-th time ``spec``'s step is reached."""
    name, _, count = spec.partition(":")
    times, seen = int(count or 1), 0

    def due(step: str) -> bool:
        nonlocal seen
        if step != name:
            return False
        seen += 1
        return seen == times

    return due


if _KILL or _PAUSE:
    from archive import steps

    _kill_due = _counter(_KILL) if _KILL else None
    _pause_due = _counter(_PAUSE) if _PAUSE else None
    _folder = os.environ.get("TESTS_PAUSE_FOLDER", "")

    def _reached(name: str) -> None:
        if _pause_due is not None and _pause_due(name):
            import time

            with open(os.path.join(_folder, "reached"), "w") as f:
                f.write(f"{name} {os.getpid()}\n")
            deadline = time.monotonic() + 600
            while not os.path.exists(os.path.join(_folder, "go")):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        if _kill_due is not None and _kill_due(name):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    steps.reached = _reached
