"""The programs pathways run: found on PATH, asked their version, run with a time limit.

A tool runs from an argument list (never through a shell), in a folder under staging, with
standard input closed, its output and errors streamed to files in that folder (never held in
memory), ``HOME`` and ``TMPDIR`` pointed at that folder, and in a session of its own: when the
time limit passes, the whole process group is killed (LibreOffice, for one, starts a child that
does the work), and so is anything of the group still alive after the tool exits.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from archive.errors import ConfigError
from policies.formats import PLACEHOLDER, Tool

#: Bytes of a tool's error output kept for the operator (never written to the custody log).
STDERR_TAIL = 2000
VERSION_TIME_LIMIT = 30.0
TOOL_PATH = "/usr/local/bin:/usr/bin:/bin"


class ToolUnavailable(ConfigError):
    """A program the format policy names is not installed (or is another program)."""


@dataclass(frozen=True, slots=True)
class ResolvedTool:
    """A tool as found on this machine."""

    name: str
    executable: str  # absolute path
    version: str  # the first line of its version text

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


_resolved: dict[tuple[str, Tool], ResolvedTool] = {}


def resolve(name: str, tool: Tool) -> ResolvedTool:
    """The first of the tool's commands on PATH whose version text holds ``identifies_as``.

    Remembered for the life of the process. Raises :class:`ToolUnavailable` naming every
    command tried and the Debian package that provides the tool."""
    key = (name, tool)
    if key in _resolved:
        return _resolved[key]
    tried: list[str] = []
    for command in tool.commands:
        path = shutil.which(command)
        if path is None:
            tried.append(f"{command}: not on PATH")
            continue
        text = _version_text(path, tool.version_args)
        if text is None:
            tried.append(f"{command} ({path}): its version could not be read")
            continue
        if tool.identifies_as and tool.identifies_as not in text:
            tried.append(f"{command} ({path}): not {tool.identifies_as}")
            continue
        found = ResolvedTool(name, path, _version_of(text))
        _resolved[key] = found
        return found
    package = f" (Debian: apt-get install {tool.debian_package})" if tool.debian_package else ""
    raise ToolUnavailable(
        f"tool {name!r} of the format policy is not available: {'; '.join(tried)}",
        hint=f"install it{package}, or change the pathways that use it in a new policy version",
    )


_VERSION = re.compile(r"\d+(?:\.\d+)+[^\s,;)]*")


def _version_of(text: str) -> str:
    """The version number in the first line of a version text ("ffmpeg version 5.1.9-0+deb12u1
    Copyright ..." -> "5.1.9-0+deb12u1"), or that line if it holds none."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "unknown")
    found = _VERSION.search(first)
    return found.group(0) if found else first[:120]


def _version_text(executable: str, args: Sequence[str]) -> str | None:
    try:
        proc = subprocess.run(
            [executable, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=VERSION_TIME_LIMIT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    return text if text.strip() else None


def expand(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """The argument template with each ``{name}`` replaced (other braces stay as they are).

    Raises ``KeyError`` for a placeholder without a value (the schema forbids unknown ones)."""
    return [PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in args]


@dataclass(frozen=True, slots=True)
class RunResult:
    status: Literal["exited", "timed-out", "not-started"]
    exit_code: int | None
    seconds: float
    stderr_tail: str  # for the operator, not for the custody log

    @property
    def ok(self) -> bool:
        return self.status == "exited" and self.exit_code == 0

    def describe(self) -> str:
        if self.status == "timed-out":
            return f"killed after the time limit of {self.seconds:.0f} s"
        if self.status == "not-started":
            return "could not be started"
        return f"exited with status {self.exit_code}"


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    time_limit: float,
    env: Mapping[str, str] | None = None,
    stdout: Path | None = None,
) -> RunResult:
    """Run ``argv`` in ``cwd``; kill its process group after ``time_limit`` seconds.

    Standard output goes to ``stdout`` (a tool that writes its copy there), by default to
    ``tool.stdout`` in ``cwd``; errors go to ``tool.stderr`` in ``cwd``."""
    environment = dict(env) if env is not None else tool_environment(cwd)
    started = time.monotonic()
    target = stdout if stdout is not None else cwd / "tool.stdout"
    with open(target, "wb") as out, open(cwd / "tool.stderr", "wb") as err:
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=environment,
                start_new_session=True,
            )
        except OSError as exc:
            return RunResult("not-started", None, 0.0, str(exc))
        status: Literal["exited", "timed-out"] = "exited"
        try:
            proc.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            status = "timed-out"
        finally:
            _kill_group(proc.pid)
            proc.wait()
    seconds = time.monotonic() - started
    code = proc.returncode if status == "exited" else None
    return RunResult(status, code, seconds, _tail(cwd / "tool.stderr"))


def _kill_group(pgid: int) -> None:
    """Kill what is left of the tool's session (nothing, after a clean exit, usually)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - STDERR_TAIL))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def tool_environment(workdir: Path) -> dict[str, str]:
    """A small, fixed environment (tools are started by absolute path; PATH serves the helper
    programs they run): UTF-8 locale, HOME and TMPDIR in the work folder."""
    return {
        "PATH": TOOL_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
    }
