"""Running tools: argument templates, finding programs, and killing one that hangs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from migration import tools
from policies.formats import Tool


def test_placeholders_are_replaced_and_other_braces_kept() -> None:
    args = ["-i", "{input}", 'pdf:x:{"v":{"type":"long"}}', "png:{output}", "{workdir_url}/p"]
    values = {"input": "/w/in/input.doc", "output": "/w/out/input.png", "workdir_url": "file:///w"}
    assert tools.expand(args, values) == [
        "-i",
        "/w/in/input.doc",
        'pdf:x:{"v":{"type":"long"}}',
        "png:/w/out/input.png",
        "file:///w/p",
    ]


def test_a_missing_tool_is_named_with_its_debian_package() -> None:
    tool = Tool(commands=("no-such-program-here",), debian_package="some-package")
    with pytest.raises(tools.ToolUnavailable) as info:
        tools.resolve("absent", tool)
    text = info.value.diagnostics()
    assert "no-such-program-here: not on PATH" in text
    assert "apt-get install some-package" in text


def test_a_program_that_is_not_the_one_named_is_refused() -> None:
    # `sleep --version` answers, but it is not ImageMagick (the check that keeps a stand-in
    # `convert` from being taken for ImageMagick's).
    tool = Tool(commands=("sleep",), version_args=("--version",), identifies_as="ImageMagick")
    with pytest.raises(tools.ToolUnavailable, match="not ImageMagick"):
        tools.resolve("imagemagick-test", tool)
    found = tools.resolve("sleep-test", Tool(commands=("sleep",)))
    assert found.executable.endswith("/sleep") and found.version[0].isdigit()


def _alive(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def test_a_hanging_tool_and_its_children_are_killed(tmp_path: Path) -> None:
    marker = f"{os.getpid() % 1000 + 3000}.5"  # a sleep length no other test uses
    # A tool that starts a child and then hangs itself: the whole group must go.
    argv = ["/bin/sh", "-c", f"sleep {marker} & exec sleep {marker}"]
    started = time.monotonic()
    result = tools.run(argv, cwd=tmp_path, time_limit=1.0)
    assert time.monotonic() - started < 10
    assert result.status == "timed-out" and not result.ok
    assert "killed after the time limit" in result.describe()
    deadline = time.monotonic() + 5
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(marker) == []


def test_output_is_streamed_to_files_and_the_exit_status_kept(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", "head -c 3000000 /dev/zero; echo oops >&2; exit 3"]
    result = tools.run(argv, cwd=tmp_path, time_limit=30)
    assert (result.status, result.exit_code, result.ok) == ("exited", 3, False)
    assert result.describe() == "exited with status 3"
    assert result.stderr_tail == "oops"
    assert (tmp_path / "tool.stdout").stat().st_size == 3_000_000


def test_a_program_that_cannot_start_is_reported(tmp_path: Path) -> None:
    result = tools.run([str(tmp_path / "missing")], cwd=tmp_path, time_limit=5)
    assert result.status == "not-started" and result.describe() == "could not be started"


def test_standard_output_can_be_the_copy(tmp_path: Path) -> None:
    # A pathway with output_is_stdout (dcraw -c) has its copy streamed to the output file.
    (tmp_path / "out").mkdir()
    output = tmp_path / "out" / "input.tiff"
    argv = ["/bin/sh", "-c", "head -c 2000000 /dev/zero; echo note >&2"]
    result = tools.run(argv, cwd=tmp_path, time_limit=30, stdout=output)
    assert result.ok and result.stderr_tail == "note"
    assert output.stat().st_size == 2_000_000
    assert not (tmp_path / "tool.stdout").exists()
