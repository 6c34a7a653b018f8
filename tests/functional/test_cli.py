"""The command line as scripts use it: exit statuses, --json documents, settings sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from archive.cli import get_app
from tests.conftest import CONFORMANCE, SAMPLE
from tests.helpers import make_bag

runner = CliRunner()


def custos(data: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    result = runner.invoke(
        get_app(), ["--data-dir", str(data), *args], env={"CUSTOS_FSYNC": "false", **(env or {})}
    )
    body: Any = None
    if "--json" in args and result.stdout.strip():
        body = json.loads(result.stdout)
    return result.exit_code, body, result.stderr


def test_help_lists_the_commands() -> None:
    result = runner.invoke(get_app(), ["--help"])
    assert result.exit_code == 0
    for command in (
        "ingest",
        "identify",
        "list",
        "show",
        "db",
        "catalog",
        "serve",
        "users",
        "search",
        "policies",
    ):
        assert command in result.stdout


@pytest.mark.parametrize("group", [[], ["users"]])
def test_help_lists_each_command_in_flowing_lines(group: list[str]) -> None:
    """A group's list of commands joins the lines of each first paragraph (the docstrings'
    own line breaks used to cut sentences there), and keeps what markup would eat."""
    result = runner.invoke(get_app(), [*group, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    if not group:
        status = next(line for line in lines if " status " in line)
        assert "the work queued (by job, and what failed and why)" in status
    else:
        disable = next(line for line in lines if " disable " in line)
        assert "custos users token NAME enables the user again" in disable


def test_ingest_list_show(tmp_path: Path, catalog_url: str) -> None:
    env = {"CUSTOS_DATABASE_URL": catalog_url} if catalog_url else {}
    code, body, _ = custos(
        tmp_path,
        "ingest",
        str(SAMPLE),
        "--depositor",
        "Sample Mechanism",
        "--new-depositor",
        "--json",
        env=env,
    )
    assert code == 0, body
    assert body["status"] == "stored"
    assert body["payload_files"] == 5
    assert body["identification"]["status"] == "ok"
    package_id = body["package_id"]
    assert package_id.startswith("urn:uuid:")

    code, listing, _ = custos(tmp_path, "list", "--json", env=env)
    assert code == 0
    assert [p["package_id"] for p in listing["packages"]] == [package_id]
    assert listing["packages"][0]["depositor"] == "Sample Mechanism"
    assert listing["packages"][0]["title"] == "Sample holding (fictional records)"

    code, shown, _ = custos(
        tmp_path, "show", package_id.removeprefix("urn:uuid:")[:8], "--json", env=env
    )
    assert code == 0
    assert shown["package_id"] == package_id
    assert [v["number"] for v in shown["versions"]] == [1, 2]
    payload = {f["logical_path"]: f for f in shown["files"] if f["role"] == "payload"}
    assert payload["bag/data/images/site-photo.png"]["puid"] == "fmt/11"
    assert payload["bag/data/images/site-photo.png"]["mime_type"] == "image/png"
    assert payload["bag/data/documents/site-report.pdf"]["puid"].startswith("fmt/")
    assert all(len(f["sha512"]) == 128 and len(f["sha256"]) == 64 for f in shown["files"])
    types = [e["type"] for e in shown["events"]]
    assert types[:1] == ["validation"] and "ingestion" in types
    assert types.count("format identification") == 5

    code, _, _ = custos(tmp_path, "show", package_id, env=env)
    assert code == 0


@pytest.mark.parametrize("columns", [80, 200])
def test_list_prints_whole_package_ids_at_any_width(tmp_path: Path, columns: int) -> None:
    """The id is what `custos show` takes: never cut, whatever the terminal's width (a table
    where every column fits, one block per package where it does not)."""
    code, stored, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "Sample Closing Mechanism",
        "--new-depositor", "--json", "--no-identify", "--no-seal",
    )  # fmt: skip
    assert code == 0
    result = runner.invoke(
        get_app(), ["--data-dir", str(tmp_path), "list"], env={"COLUMNS": str(columns)}
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(stored["package_id"] in line for line in lines)
    assert all(len(line) <= columns for line in lines)
    assert "Sample holding (fictional records)" in " ".join(" ".join(lines).split())


def test_same_bag_twice_is_reported_not_duplicated(tmp_path: Path) -> None:
    code, first, _ = custos(
        tmp_path,
        "ingest",
        str(SAMPLE),
        "--depositor",
        "A",
        "--new-depositor",
        "--json",
        "--no-identify",
    )
    assert code == 0
    code, second, _ = custos(tmp_path, "ingest", str(SAMPLE), "--depositor", "A", "--json")
    assert code == 0  # "A" is registered now
    assert second["status"] == "already-held"
    assert second["package_id"] == first["package_id"]
    code, listing, _ = custos(tmp_path, "list", "--json")
    assert len(listing["packages"]) == 1


def test_refusal_exit_status_and_findings(tmp_path: Path) -> None:
    bag = CONFORMANCE / "v0.97/invalid/extra-file-in-bag"
    code, body, err = custos(
        tmp_path, "ingest", str(bag), "--depositor", "A", "--new-depositor", "--json"
    )
    assert code == 65
    assert body["status"] == "refused"
    assert {"code": "BAG-FILE-UNLISTED", "path": "data/bar"}.items() <= {
        k: v for f in body["findings"] for k, v in f.items() if f["code"] == "BAG-FILE-UNLISTED"
    }.items()
    assert "BAG-FILE-UNLISTED" in err and "data/bar" in err
    code, listing, _ = custos(tmp_path, "list", "--json")
    assert listing["packages"] == []


def test_refusal_text_keeps_bracketed_paths(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, omit_from_manifest=("a.txt",))
    code, _, err = custos(tmp_path / "d", "ingest", str(bag), "--depositor", "A", "--new-depositor")
    assert code == 65
    assert "[data/a.txt]" in err


def test_unknown_package(tmp_path: Path) -> None:
    code, body, _ = custos(tmp_path, "show", "no-such-package", "--json")
    assert code == 4
    assert body["status"] == "error" and "no-such-package" in body["message"]


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    code, body, _ = custos(tmp_path, "db", "upgrade", "--json")
    assert code == 0 and body["to"] == "0021_sealed_files"
    code, body, _ = custos(tmp_path, "db", "upgrade", "--json")
    assert code == 0 and body["from"] == body["to"] == "0021_sealed_files"


def test_settings_from_environment_and_toml(tmp_path: Path) -> None:
    config = tmp_path / "custos.toml"
    config.write_text("[limits]\nmax_files = 2\n")
    bag = make_bag(tmp_path / "bag", {"a": b"1", "b": b"2", "c": b"3"})
    code, _, _ = custos(
        tmp_path / "d",
        "--config",
        str(config),
        "ingest",
        str(bag),
        "--depositor",
        "A",
        "--new-depositor",
        "--json",
    )
    # --config is a root option: it must come before the command
    assert code != 0
    result = runner.invoke(
        get_app(),
        [
            "--data-dir",
            str(tmp_path / "d"),
            "--config",
            str(config),
            "ingest",
            str(bag),
            "--depositor",
            "A",
            "--new-depositor",
            "--json",
        ],
        env={"CUSTOS_FSYNC": "false"},
    )
    assert result.exit_code == 65
    assert any(f["code"] == "LIMIT-FILE-COUNT" for f in json.loads(result.stdout)["findings"])
    result = runner.invoke(
        get_app(),
        ["ingest", str(bag), "--depositor", "A", "--new-depositor", "--json"],
        env={
            "CUSTOS_FSYNC": "false",
            "CUSTOS_DATA_DIR": str(tmp_path / "e"),
            "CUSTOS_LIMITS__MAX_FILES": "1",
        },
    )
    assert result.exit_code == 65
    assert (tmp_path / "e" / "catalog.sqlite3").exists()


def test_bad_settings_are_named(tmp_path: Path) -> None:
    result = runner.invoke(
        get_app(), ["--data-dir", str(tmp_path), "list"], env={"CUSTOS_LIMITS__MAX_FILES": "many"}
    )
    assert result.exit_code == 78
    assert "limits.max_files" in result.stderr


@pytest.mark.parametrize("name", ["", "   ", "a\nb"])
def test_bad_depositor_name(tmp_path: Path, name: str) -> None:
    code, body, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", name, "--new-depositor", "--json"
    )
    assert code == 65
    assert body["findings"][0]["code"] == "DEPOSITOR-NAME"


def test_catalog_rebuild_command(tmp_path: Path) -> None:
    code, stored, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "A", "--new-depositor", "--json"
    )
    assert code == 0
    (tmp_path / "catalog.sqlite3").unlink()
    for extra in ("-wal", "-shm"):
        (tmp_path / f"catalog.sqlite3{extra}").unlink(missing_ok=True)
    code, listing, _ = custos(tmp_path, "list", "--json")
    assert listing["packages"] == []
    code, report, _ = custos(tmp_path, "catalog", "rebuild", "--json")
    assert code == 0 and report["indexed"] == [stored["package_id"]] and report["failed"] == []
    code, shown, _ = custos(tmp_path, "show", stored["package_id"], "--json")
    assert code == 0 and [v["number"] for v in shown["versions"]] == [1, 2]
    assert any(f["puid"] == "fmt/11" for f in shown["files"])


def test_identify_command_with_nothing_pending(tmp_path: Path) -> None:
    code, _, _ = custos(
        tmp_path, "ingest", str(SAMPLE), "--depositor", "A", "--new-depositor", "--no-identify"
    )
    assert code == 0
    code, first, _ = custos(tmp_path, "identify", "--json")
    assert code == 0 and first["packages"][0]["identified"] == 5
    code, again, _ = custos(tmp_path, "identify", "--json")
    assert code == 0 and again["packages"] == []
