"""Loaded by Python at start-up in the processes the crash tests start (see
``tests.crash.kill_at``, which puts this folder on PYTHONPATH): with ``TESTS_KILL_AT_STEP`` set
to ``<step>`` or ``<step>:<n>``, ``archive.steps.reached`` kills the process (SIGKILL) the n-th
time (default the first) the process reaches that step. Without it, nothing is imported."""

from __future__ import annotations

import os

_AT = os.environ.get("TESTS_KILL_AT_STEP", "")

if _AT:
    import signal

    from archive import steps

    _name, _, _count = _AT.partition(":")
    _times = int(_count or 1)
    _seen = 0

    def _reached(name: str) -> None:
        global _seen
        if name != _name:
            return
        _seen += 1
        if _seen >= _times:
            os.kill(os.getpid(), signal.SIGKILL)

    steps.reached = _reached
