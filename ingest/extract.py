"""Plain text out of a document, for the public search: ``pdftotext`` (poppler-utils) for PDF,
plain text files read directly. Bounded: a file above ``source_max_bytes`` is not read, at
most ``max_chars`` characters are kept, pdftotext is killed after ``time_limit`` seconds.

A PDF read while pdftotext is not installed is ``tool-missing`` (the tool named), not
``failed``: the caller tries it again once :func:`tools_found` lists the tool. The tool is
looked up on PATH at each call, so a long-running process finds it once it is installed.

The adapter decides nothing about access: callers hand it only files the public may see.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from archive.catalog.tables import TOOL_MISSING

#: MIME types read as they are (FIDO's results); other text types (HTML, XML) hold markup.
PLAIN_TEXT = ("text/plain", "text/csv", "text/markdown")
PDF = "application/pdf"
PDFTOTEXT = "pdftotext"
#: The Debian package of each tool the adapter runs, for the operator's hint.
DEBIAN_PACKAGES = {PDFTOTEXT: "poppler-utils"}


@dataclass(frozen=True, slots=True)
class Extracted:
    outcome: str  # text | none | too-large | failed | tool-missing (TOOL_MISSING)
    tool: str  # the tool that read it (with its version), or the tool missing
    text: str = ""
    why: str = ""


def extractable(mime_type: str | None) -> bool:
    """Whether a file of this MIME type is read for text at all."""
    return mime_type == PDF or mime_type in PLAIN_TEXT


def pdftotext_version() -> str | None:
    """``pdftotext <version>``, or None when poppler-utils is not installed (looked up on
    PATH at each call; the version is asked once per executable)."""
    exe = shutil.which(PDFTOTEXT)
    return None if exe is None else _version(exe)


def tools_found() -> tuple[str, ...]:
    """The tools of this adapter installed now: files recorded ``tool-missing`` for one of
    them are to be read again."""
    return (PDFTOTEXT,) if pdftotext_version() is not None else ()


def tool_missing_hint(counts: Mapping[str, int]) -> str | None:
    """Given a run's outcome counts, what to install so that the files it left
    ``tool-missing`` are read; None if it left none."""
    if not counts.get(TOOL_MISSING):
        return None
    found = tools_found()
    names = [t for t in DEBIAN_PACKAGES if t not in found] or list(DEBIAN_PACKAGES)
    debian = " ".join(DEBIAN_PACKAGES[t] for t in names)
    return (
        f"{', '.join(names)} is not installed (Debian: apt-get install {debian}); once it "
        "is, `custos identify` (or a worker, or `custos serve`) reads those files"
    )


@functools.cache
def _version(exe: str) -> str | None:
    try:
        proc = subprocess.run(
            [exe, "-v"], capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = (proc.stderr or proc.stdout).decode("utf-8", "replace").split()
    version = next((w for w in words if w[:1].isdigit()), "")
    return f"pdftotext {version}".strip()


def not_read(mime_type: str | None, size: int, source_max_bytes: int) -> Extracted | None:
    """The outcome for a file that is not read at all (not a document, or too large), or
    None: known from its type and size, before its bytes are fetched from storage."""
    if not extractable(mime_type):
        return Extracted("none", "", why="not a document read for text")
    if size > source_max_bytes:
        return Extracted("too-large", "", why=f"{size} bytes > {source_max_bytes}")
    return None


def extract(
    path: Path,
    mime_type: str | None,
    *,
    source_max_bytes: int,
    max_chars: int,
    time_limit: float,
    pdf_tool: str | None,
) -> Extracted:
    """The text of ``path`` (of type ``mime_type``); never raises for a bad file: a file the
    tool cannot read is ``failed`` with the reason, and the caller records it. A PDF with
    ``pdf_tool`` None (pdftotext not installed) is ``tool-missing``, tool ``pdftotext``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return Extracted("failed", "", why=f"cannot read the stored file: {exc.strerror}")
    skipped = not_read(mime_type, size, source_max_bytes)
    if skipped is not None:
        return skipped
    if mime_type == PDF:
        if pdf_tool is None:
            return _missing(PDFTOTEXT)
        return _pdftotext(path, max_chars, time_limit, pdf_tool)
    with open(path, "rb") as fh:
        raw = fh.read(max_chars * 4)  # UTF-8: at most 4 bytes a character
    if b"\0" in raw:
        return Extracted("none", "plain text", why="binary content")
    return _kept(raw.decode("utf-8", "replace"), max_chars, "plain text")


def _missing(tool: str) -> Extracted:
    return Extracted(
        TOOL_MISSING, tool, why=f"{tool} is not installed ({DEBIAN_PACKAGES.get(tool, tool)})"
    )


def _kept(text: str, max_chars: int, tool: str) -> Extracted:
    # Whitespace runs made one space; NUL (which PostgreSQL text cannot hold) made a space.
    text = " ".join(text.replace("\0", " ").split())[:max_chars]
    return Extracted("text" if text else "none", tool, text)


def _pdftotext(path: Path, max_chars: int, time_limit: float, tool: str) -> Extracted:
    exe = shutil.which(PDFTOTEXT)
    if exe is None:  # removed since it was looked up
        return _missing(PDFTOTEXT)
    # Standard input closed, no shell, its own process group (killed whole on the time
    # limit), the text read from stdout only up to what is kept; -q: no messages.
    try:
        proc = subprocess.Popen(
            [exe, "-q", "-enc", "UTF-8", "-nopgbrk", str(path), "-"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError:
        return _missing(PDFTOTEXT)
    except OSError as exc:
        return Extracted("failed", tool, why=f"pdftotext could not start: {exc.strerror}")
    timer = threading.Timer(time_limit, _kill, (proc,))
    timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read(max_chars * 4)  # UTF-8: at most 4 bytes a character
        if proc.stdout.read(1):
            _kill(proc)  # more text than is kept: no need to wait for the rest
            cut = True
        else:
            cut = False
        proc.stdout.close()
        status = proc.wait()
    finally:
        timer.cancel()
    if not cut and status == -signal.SIGKILL:
        return Extracted("failed", tool, why=f"pdftotext ran past {time_limit:g} s and was killed")
    if not cut and status != 0:
        # 1: cannot open, 3: copying text not permitted (encrypted) ... see pdftotext(1)
        return Extracted("failed", tool, why=f"pdftotext exited with status {status}")
    return _kept(out.decode("utf-8", "replace"), max_chars, tool)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
