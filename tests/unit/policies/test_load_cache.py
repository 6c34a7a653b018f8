"""A policy file is parsed once per process and again only when it changes; a broken file is
reported at every use, never cached."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from policies import load
from policies.load import POLICY_DIR, PolicyFileError, load_access_policy, load_ingest_policy


def test_a_policy_is_parsed_once_and_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(POLICY_DIR / "access.toml", tmp_path / "access.toml")
    parsed: list[Path] = []
    real = load._parse

    def counting(model: type, path: Path):  # type: ignore[no-untyped-def]
        parsed.append(path)
        return real(model, path)

    monkeypatch.setattr(load, "_parse", counting)
    first = load_access_policy(tmp_path)
    assert load_access_policy(tmp_path) is first
    assert parsed == [tmp_path / "access.toml"]
    # The same folder's other policy is a file of its own.
    shutil.copy(POLICY_DIR / "ingest.toml", tmp_path / "ingest.toml")
    load_ingest_policy(tmp_path)
    assert len(parsed) == 2
    # Edited (a later modification time): read again.
    path = tmp_path / "access.toml"
    path.write_text(path.read_text() + "\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = load_access_policy(tmp_path)
    assert again is not first and again == first
    assert len(parsed) == 3


def test_a_broken_policy_is_refused_at_every_use(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    path.write_text("this is = not [valid\n")
    for _ in range(2):
        with pytest.raises(PolicyFileError, match="not valid TOML"):
            load_access_policy(tmp_path)
    # Fixed: loaded (the broken version was never kept).
    shutil.copy(POLICY_DIR / "access.toml", path)
    assert load_access_policy(tmp_path).id == load_access_policy(None).id
    path.unlink()
    with pytest.raises(PolicyFileError, match="does not exist"):
        load_access_policy(tmp_path)
