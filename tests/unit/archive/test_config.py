from __future__ import annotations

from pathlib import Path

import pytest

from archive.config import load_settings
from archive.errors import ConfigError


def test_embedded_default(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, environ={})
    assert s.catalog_url == f"sqlite:///{tmp_path.resolve() / 'catalog.sqlite3'}"
    assert s.storage_path == (tmp_path / "storage").resolve()
    assert s.staging_path == (tmp_path / "staging").resolve()


def test_default_data_dir_is_relative_custos_data() -> None:
    assert load_settings(environ={}).data_dir == Path("custos-data")


def test_precedence_defaults_toml_env_overrides(tmp_path: Path) -> None:
    (tmp_path / "custos.toml").write_text("workers = 3\n[limits]\nmax_files = 10\nmax_depth = 7\n")
    env = {"CUSTOS_DATA_DIR": str(tmp_path), "CUSTOS_LIMITS__MAX_FILES": "20"}
    s = load_settings(environ=env)
    assert s.data_dir == tmp_path
    assert s.workers == 3  # from the data folder's custos.toml
    assert s.limits.max_depth == 7
    assert s.limits.max_files == 20  # environment beats the file
    assert load_settings(environ=env, overrides={"workers": 5}).workers == 5


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(data_dir=tmp_path, config_file=cfg, environ={})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("workers = = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=bad, environ={})


def test_bad_environment_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"limits\.max_files"):
        load_settings(data_dir=tmp_path, environ={"CUSTOS_LIMITS__MAX_FILES": "-1"})
