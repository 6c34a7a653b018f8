from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from archive.config import LocalLocationSettings, S3LocationSettings, load_settings
from archive.errors import ConfigError
from archive.storage.locations import open_location
from archive.storage.replica import LocalFolderLocation
from archive.storage.s3 import S3Location


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


LOCATIONS_TOML = """
[locations.second-disk]
kind = "local"
path = "/srv/replica"

[locations.offsite]
kind = "s3"
endpoint_url = "https://s3.example.org/"
bucket = "custos-replica"
prefix = "archive/main"
retention_days = 3650
part_size_mib = 32
"""


def test_locations_from_toml_with_credentials_from_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(LOCATIONS_TOML)
    env = {
        "CUSTOS_LOCATIONS__OFFSITE__ACCESS_KEY": "AKIAEXAMPLE",
        "CUSTOS_LOCATIONS__OFFSITE__SECRET_KEY": "very-secret-value",
    }
    s = load_settings(data_dir=tmp_path, config_file=cfg, environ=env)
    local, offsite = s.locations["second-disk"], s.locations["offsite"]
    assert isinstance(local, LocalLocationSettings) and local.path == Path("/srv/replica")
    assert isinstance(offsite, S3LocationSettings)
    assert offsite.endpoint_url == "https://s3.example.org"
    assert offsite.prefix == "archive/main/"
    assert offsite.lock_mode == "COMPLIANCE" and offsite.retention_days == 3650
    assert offsite.secret_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in repr(s) and "very-secret-value" not in str(offsite)

    second = open_location("second-disk", local)
    assert isinstance(second, LocalFolderLocation) and second.uri == "file:///srv/replica"
    remote = open_location("offsite", offsite)  # builds a client; contacts nothing yet
    assert isinstance(remote, S3Location)
    assert remote.uri == "s3://custos-replica/archive/main/"
    assert remote.retention == timedelta(days=3650) and remote.part_size == 32 * 1024 * 1024
    assert "very-secret-value" not in repr(remote) and "AKIAEXAMPLE" not in repr(remote)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[locations.x]\nkind = "ftp"\n', r"locations\.x: .*'local', 's3'"),
        ('[locations.Offsite]\nkind = "local"\npath = "/r"\n', "location key 'Offsite'"),
        ('[locations.x]\nkind = "local"\n', r"locations\.x\.local\.path: Field required"),
        ('[locations.x]\nkind = "local"\npath = "/r"\ncolour = 1\n', r"locations\.x.*colour"),
        ("bucket = 'Bad_Bucket'", r"locations\.x\.s3\.bucket: .*not a valid bucket name"),
        ("bucket = 'ok-bucket'\nprefix = '../up'", r"locations\.x\.s3\.prefix: .*not a safe"),
        ("bucket = 'ok-bucket'\nprefix = '/abs'", r"locations\.x\.s3\.prefix"),
        ("bucket = 'ok-bucket'\nretention_days = 0", r"locations\.x\.s3\.retention_days"),
        ("bucket = 'ok-bucket'\nlock_mode = 'NONE'", r"locations\.x\.s3\.lock_mode"),
        ("bucket = 'ok-bucket'\nendpoint_url = 'ftp://h'", r"locations\.x\.s3\.endpoint_url"),
        ("bucket = 'ok-bucket'\npart_size_mib = 1", r"locations\.x\.s3\.part_size_mib"),
    ],
)
def test_bad_locations_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    if not toml.startswith("["):  # an s3 location, complete but for the line under test
        base = {
            "kind": "'s3'",
            "endpoint_url": "'http://127.0.0.1:9'",
            "access_key": "'k'",
            "secret_key": "'s'",
            "retention_days": "1",
        }
        given = dict(line.split(" = ", 1) for line in toml.splitlines())
        toml = "[locations.x]\n" + "".join(f"{k} = {v}\n" for k, v in (base | given).items())
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(data_dir=tmp_path, config_file=cfg, environ={})
