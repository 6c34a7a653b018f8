"""The ``custos`` command line.

``shell`` holds the root app, the shared options, the output and the error handler; the core
commands live beside it by subject (``catalog``: db, catalog, list, show; ``proofs``: seal,
verify, audit; ``status``). Commands are thin: parse, call one service function, render.
Sub-apps of the function packages (ingest, ...) are registered through the
``custos.commands`` entry points in ``pyproject.toml``, so the core never imports upward.
"""

from __future__ import annotations

from archive.cli import catalog, proofs, status  # noqa: F401 - registers the core commands
from archive.cli.shell import (
    JsonOpt,
    State,
    app,
    emit_json,
    err,
    fail,
    get_app,
    human_bytes,
    main,
    operator,
    out,
    progress_bar,
    run,
    state,
)

__all__ = [
    "JsonOpt",
    "State",
    "app",
    "emit_json",
    "err",
    "fail",
    "get_app",
    "human_bytes",
    "main",
    "operator",
    "out",
    "progress_bar",
    "run",
    "state",
]
