"""The replication and fixity commands as scripts use them: exit statuses, --json, files."""

from __future__ import annotations

import csv
import json
import re
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from typer.testing import CliRunner

from archive.catalog.session import make_engine
from archive.catalog.tables import Event, FixityCoverage
from archive.cli import get_app
from archive.config import load_settings
from archive.storage import ocfl
from tests.conftest import SAMPLE
from tests.servers import start_seaweedfs

runner = CliRunner()


def custos(data: Path, *args: str, config: Path | None = None) -> tuple[int, Any, str]:
    root = ["--data-dir", str(data)] + (["--config", str(config)] if config else [])
    result = runner.invoke(get_app(), [*root, *args], env={"CUSTOS_FSYNC": "false"})
    body: Any = None
    if "--json" in args and result.stdout.strip():
        body = json.loads(result.stdout)
    return result.exit_code, body, result.stderr


def test_help_lists_what_works() -> None:
    text = runner.invoke(get_app(), ["--help"]).stdout
    for command in ("replicate", "fixity", "worker"):
        assert command in text
    sub = runner.invoke(get_app(), ["fixity", "--help"]).stdout
    for command in ("run", "status", "report"):
        assert command in sub


def test_replicate_fixity_status_and_report(tmp_path: Path) -> None:
    config = tmp_path / "custos.toml"
    config.write_text(f'[locations.second]\nkind = "local"\npath = "{tmp_path / "replica"}"\n')
    data = tmp_path / "data"
    code, body, _ = custos(
        data, "ingest", str(SAMPLE), "--depositor", "M", "--new-depositor", "--json", config=config
    )
    assert code == 0 and body["replication"] == {"status": "queued"}
    pid = body["package_id"]

    code, shown, _ = custos(data, "show", pid, "--json", config=config)
    assert shown["replication"]["safely_stored"] is False

    code, body, _ = custos(data, "replicate", "--json", config=config)
    assert code == 0 and body["status"] == "ok", body
    assert body["packages"][pid]["safely_stored"] is True
    code, shown, _ = custos(data, "show", pid, "--json", config=config)
    assert shown["replication"]["replicas"][0]["location"] == "second"
    code, status, _ = custos(data, "status", "--json", config=config)
    assert status["replication"]["safely_stored"] == 1

    code, body, _ = custos(data, "fixity", "run", "--json", config=config)
    assert code == 0 and body["checked"] > 0 and body["damage"] == []
    copies = body["checked"]
    code, cov, _ = custos(data, "fixity", "status", "--json", config=config)
    assert cov["copies_covered"] == cov["copies_expected"] == copies
    assert cov["oldest_check"] is not None

    victim = next((tmp_path / "replica").rglob("site-report.pdf"))
    victim.write_bytes(b"not the report")
    code, body, err = custos(data, "fixity", "run", "--all", config=config)
    assert code == 0 and "repaired" in err

    html, table = tmp_path / "r.html", tmp_path / "r.csv"
    code, rep, _ = custos(
        data, "fixity", "report", "--json", "--csv", str(table), "--html", str(html),
        config=config,
    )  # fmt: skip
    assert code == 0
    second = [r for r in rep["rows"] if r["location"] == "second"]
    assert len({r["tier"] for r in second}) > 1  # the sample's files have their own tiers
    # two cycles, half the copies each
    assert sum(r["files_checked"] for r in second) == copies
    assert sum(r["failures"] for r in second) == 1 and sum(r["repairs"] for r in second) == 1
    assert len(rep["coverage_over_time"]) == 2
    with open(table, newline="") as fh:
        found = [(r["location"], r["tier"]) for r in csv.DictReader(fh)]
    assert found == [(r["location"], r["tier"]) for r in rep["rows"]]
    assert {loc for loc, _ in found} == {"primary", "second"}
    page = html.read_text()
    assert "<svg" in page and "<polyline" in page
    assert "<script" not in page.lower() and not re.search(r'(src|href)="(http|//)', page)


def test_worker_and_replicate_refuse_clearly(tmp_path: Path) -> None:
    config = tmp_path / "custos.toml"
    config.write_text('[queue]\nbackend = "redis"\n')
    code, _, err = custos(tmp_path / "d", "worker", config=config)
    assert code == 78 and "queue.redis_url" in err
    code, _, err = custos(tmp_path / "e", "replicate", "nope", "--json")
    assert code == 4 and "no package 'nope'" in err
    config.write_text('[locations.primary]\nkind = "local"\npath = "/tmp/x"\n')
    code, _, err = custos(tmp_path / "f", "fixity", "status", config=config)
    assert code == 78 and "primary" in err


def test_replicate_short_of_locations_shows_the_settings_to_add(tmp_path: Path) -> None:
    """The shipped policy wants two copies; with no location configured, replicate says
    where the settings file is and shows a folder's and a bucket's table, which load as they
    are; the folder's, with its path changed, is all it takes."""
    data = tmp_path / "data"
    code, body, _ = custos(
        data,
        "ingest",
        str(SAMPLE),
        "--depositor",
        "M",
        "--new-depositor",
        "--no-identify",
        "--no-seal",
        "--json",
    )
    assert code == 0
    pid = body["package_id"]
    code, _, said = custos(data, "replicate")
    assert code == 5  # partly done: not safely stored
    assert str(data / "custos.toml") in said
    assert '[locations.second-disk]\nkind = "local"\npath = "/mnt/replica/custos"\n' in said
    assert '[locations.offsite]\nkind = "s3"\n' in said
    assert "CUSTOS_LOCATIONS__OFFSITE__SECRET_KEY" in said
    code, body, _ = custos(data, "replicate", "--json")
    assert code == 5 and body["hint"] == said.removeprefix("hint: ").rstrip("\n")
    # Both tables are settings as they stand (the bucket's keys from the environment).
    tables = [block for block in body["hint"].split("\n\n") if block.startswith("[")]
    settings_file = tmp_path / "both.toml"
    settings_file.write_text("\n\n".join(tables) + "\n")
    settings = load_settings(
        data_dir=data,
        config_file=settings_file,
        environ={
            "CUSTOS_LOCATIONS__OFFSITE__ACCESS_KEY": "a",
            "CUSTOS_LOCATIONS__OFFSITE__SECRET_KEY": "s",
        },
    )
    assert {k: v.kind for k, v in settings.locations.items()} == {
        "second-disk": "local",
        "offsite": "s3",
    }
    folder = tables[0].replace("/mnt/replica/custos", str(tmp_path / "replica"))
    (data / "custos.toml").write_text(folder + "\n")
    code, body, said = custos(data, "replicate", "--json")
    assert code == 0 and body["packages"][pid]["safely_stored"] and body["hint"] is None, said


def test_replicate_copies_the_custody_log_and_fixity_counts_it(tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    config = tmp_path / "custos.toml"
    config.write_text(f'[locations.second]\nkind = "local"\npath = "{replica}"\n')
    data = tmp_path / "data"
    code, _, _ = custos(
        data, "ingest", str(SAMPLE), "--depositor", "M", "--new-depositor", "--json", config=config
    )
    assert code == 0
    code, body, _ = custos(data, "seal", "--json", config=config)
    assert code == 0, body

    code, body, _ = custos(data, "replicate", "--json", config=config)
    assert code == 0 and body["status"] == "ok", body
    [log] = body["custody_log"]
    assert log["location"] == "second" and log["files"] >= 3 and "checkpoint" in log["kinds"]
    base = "extensions/custos-custody-log"
    primary = sorted(p.relative_to(data / "storage") for p in (data / "storage" / base).rglob("*"))
    assert primary and primary == sorted(
        p.relative_to(replica) for p in (replica / base).rglob("*")
    )
    result = runner.invoke(
        get_app(), ["--data-dir", str(data), "--config", str(config), "replicate"],
        env={"CUSTOS_FSYNC": "false"},
    )  # fmt: skip
    assert result.exit_code == 0 and "custody log" not in result.stdout  # nothing left to copy

    code, status, _ = custos(data, "status", "--json", config=config)
    rows = len([p for p in primary if (data / "storage" / p).is_file()])
    assert status["replication"]["custody_log"] == {"files": rows, "held": {"second": rows}}

    code, body, _ = custos(data, "fixity", "run", "--json", config=config)
    assert code == 0 and body["damage"] == []
    code, cov, _ = custos(data, "fixity", "status", "--json", config=config)
    assert cov["copies_covered"] == cov["copies_expected"] == body["checked"]
    (replica / next(p for p in primary if p.suffix == ".json")).write_text("{}")
    code, body, _ = custos(data, "fixity", "run", "--all", "--json", config=config)
    assert code == 0 and len(body["repairs"]) == 1 and "custody-log" in body["repairs"][0]
    code, audit, _ = custos(data, "audit", "verify", "--json", config=config)
    assert code == 0 and audit["checkpoints_sealed"] >= 1


def test_a_host_with_wrong_credentials_for_an_s3_primary_checks_nothing(tmp_path: Path) -> None:
    """The primary is a bucket several hosts share; a host whose secret key is wrong exits
    74 naming the primary location and where it is, and records no fixity event and no
    damage: its copies are left for a host that can read them."""
    server = start_seaweedfs(Path("/tmp") / "custos-tests", credentials=True)
    try:
        bucket = f"t-{uuid.uuid4().hex[:12]}"

        def settings(secret_key: str) -> Path:
            config = tmp_path / f"custos-{secret_key}.toml"
            config.write_text(
                f'primary_location = "shared"\n'
                f'storage_root = "{tmp_path / "unused"}"\n'
                f'staging_dir = "{tmp_path / "scratch"}"\n\n'
                f'[locations.shared]\nkind = "s3"\nendpoint_url = "{server.endpoint_url}"\n'
                f'bucket = "{bucket}"\nprefix = "custos"\naccess_key = "{server.access_key}"\n'
                f'secret_key = "{secret_key}"\nretention_days = 1\nconnect_timeout = 1.0\n'
                f"max_attempts = 2\n\n"
                f'[locations.second]\nkind = "local"\npath = "{tmp_path / "replica"}"\n'
            )
            return config

        good, wrong = settings(server.secret_key), settings("not-the-secret-key")
        data = tmp_path / "data"
        code, body, said = custos(
            data, "ingest", str(SAMPLE), "--depositor", "M", "--new-depositor", "--no-seal",
            "--json", config=good,
        )  # fmt: skip
        assert code == 0, said
        code, body, said = custos(data, "replicate", "--json", config=good)
        assert code == 0 and body["status"] == "ok", said
        code, body, said = custos(data, "fixity", "run", "--json", config=good)
        assert code == 0 and body["checked"] > 0 and body["damage"] == [], said

        def recorded() -> tuple[int, int]:
            settings = load_settings(data_dir=data, config_file=good, environ={})
            engine = make_engine(settings.catalog_url)
            try:
                with engine.connect() as c:
                    events = c.execute(
                        select(func.count())
                        .select_from(Event)
                        .where(Event.type.in_(["fixity check", "replication"]))
                    ).scalar_one()
                    damaged = c.execute(
                        select(func.count())
                        .select_from(FixityCoverage)
                        .where(FixityCoverage.last_outcome != "ok")
                    ).scalar_one()
            finally:
                engine.dispose()
            return events, damaged

        before = recorded()
        for args in (("fixity", "run"), ("fixity", "run", "--all", "--json")):
            code, _, said = custos(data, *args, config=wrong)
            assert code == 74, said
            text = " ".join(said.split())
            assert "primary" in text and f"s3://{bucket}/custos/" in text, said
            assert "not-the-secret-key" not in said  # a secret is never shown
            assert recorded() == before
        assert not list((tmp_path / "unused").rglob(ocfl.OBJECT_NAMASTE))
        code, body, said = custos(data, "fixity", "run", "--all", "--json", config=good)
        assert code == 0 and body["damage"] == [], said
    finally:
        server.stop()
