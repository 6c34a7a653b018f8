"""One deposit workflow, whichever shell is used.

The same bag deposited with `custos ingest` (told to leave its follow-up work queued) and
with `PUT /deposits` to a running `custos serve` (with `queue.in_serve = false`: no thread
of its own runs that work) leaves the same catalog rows, the same custody events, the same
(absent) seals and the same queued work. After `custos worker --until-idle` both packages
are identified, sealed, and on every location the replication policy asks for; a deposit
with `custos ingest` as a user types it (identifying and sealing at once) ends the same.
Every command and the server run as real processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from archive.catalog.tables import Event, File, OutboxEntry, Package, Seal, Version
from archive.config import load_settings
from archive.services import open_services
from tests.conftest import SAMPLE
from tests.helpers import zip_folder
from tests.servers import free_port, wait_until_serving

DEPOSITOR = "Sample Mechanism"
ENV = {**os.environ, "CUSTOS_FSYNC": "false"}


def custos(data: Path, config: Path, *args: str) -> tuple[int, Any, str]:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "custos"),
            "--data-dir",
            str(data),
            "--config",
            str(config),
            *args,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    body = json.loads(done.stdout) if "--json" in args and done.stdout.strip() else done.stdout
    return done.returncode, body, done.stderr


def archive_with_a_second_location(base: Path) -> tuple[Path, Path]:
    """A data folder and a settings file: a second local folder as a location (the default
    replication policy asks for two copies of every tier), and no serve thread."""
    base.mkdir()
    config = base / "custos.toml"
    config.write_text(
        "fsync = false\n"
        "[queue]\nin_serve = false\n"
        f'[locations.second]\nkind = "local"\npath = "{base / "replica"}"\n'
    )
    return base / "data", config


def snapshot(data: Path, config: Path) -> dict[str, Any]:
    """What the catalog holds, with what differs by nature (ids, times, the source's name)
    left out: files, versions, events by type and outcome, seals, queued work."""
    settings = load_settings(data_dir=data, config_file=config, environ={})
    services = open_services(settings, recover=False)
    try:
        with services.sessions() as session:
            (package_id,) = session.execute(select(Package.id)).scalars().all()

            def plain(key: str) -> str:
                return "PACKAGE" if key == package_id else key

            files = session.execute(
                select(
                    File.version, File.logical_path, File.role, File.size, File.sha512, File.puid
                )
            ).all()
            return {
                # The bag's own files byte for byte; Custos's metadata files (the deposit's
                # id and time, the PREMIS events' ids) by name.
                "files": sorted(
                    (v, path, role, *((size, sha512) if role != "metadata" else ()), puid)
                    for v, path, role, size, sha512, puid in files
                ),
                "versions": session.execute(select(Version.number)).scalars().all(),
                "events": Counter(session.execute(select(Event.type, Event.outcome)).all()),
                "seals": sorted(  # the custody log's chain is named by a random id
                    re.sub(r"custos-custody-log/[0-9a-f-]{36}/", "custos-custody-log/CHAIN/", p)
                    for p in session.execute(select(Seal.subject_path)).scalars()
                ),
                "queued": [
                    (job, plain(key))
                    for job, key in session.execute(
                        select(OutboxEntry.job, OutboxEntry.key).order_by(OutboxEntry.id)
                    ).all()
                ],
            }
    finally:
        services.close()


def status(data: Path, config: Path) -> dict[str, Any]:
    code, body, said = custos(data, config, "status", "--json")
    assert code == 0, said
    return dict(body)


def add_depositor_user(data: Path, config: Path) -> dict[str, Any]:
    """The depositor's user (in both archives, so that both custody logs record it)."""
    code, user, said = custos(
        data,
        config,
        "users",
        "add",
        "dora",
        "--role",
        "depositor",
        "--organisation",
        DEPOSITOR,
        "--new-organisation",
        "--json",
    )
    assert code == 0, said
    return dict(user)


def deposit_through_the_api(data: Path, config: Path, bag: Path, tmp: Path) -> dict[str, Any]:
    user = add_depositor_user(data, config)
    archive = zip_folder(bag, tmp / "bag.zip")
    port = free_port()
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "custos"),
                "--data-dir",
                str(data),
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, server, log)
        r = httpx.put(
            f"{url}/deposits",
            params={"filename": "bag.zip"},
            content=archive.read_bytes(),
            headers={
                "Authorization": f"Bearer {user['token']}",
                "X-Custos-Checksum": "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest(),
            },
            timeout=120,
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return body


def test_a_deposit_through_the_cli_and_through_the_api_is_one_workflow(tmp_path: Path) -> None:
    cli_data, cli_config = archive_with_a_second_location(tmp_path / "cli")
    api_data, api_config = archive_with_a_second_location(tmp_path / "api")

    add_depositor_user(cli_data, cli_config)
    code, stored, said = custos(
        cli_data,
        cli_config,
        "ingest",
        str(SAMPLE),
        "--depositor",
        DEPOSITOR,
        "--no-identify",
        "--no-seal",
        "--json",
    )
    assert code == 0, said
    assert stored["identification"] == {"status": "queued"}
    assert stored["queued"] == [
        {"job": "characterise", "key": stored["package_id"]},
        {"job": "seal", "key": ""},
        {"job": "replicate", "key": stored["package_id"]},
    ]
    uploaded = deposit_through_the_api(api_data, api_config, SAMPLE, tmp_path)
    assert uploaded["state"] == "stored"

    before = snapshot(cli_data, cli_config)
    assert before == snapshot(api_data, api_config)
    # What both hold before any worker: version 1, unidentified, no seal, three jobs queued.
    assert before["versions"] == [1] and before["seals"] == []
    assert all(puid is None for *_, puid in before["files"])
    assert before["queued"] == [("characterise", "PACKAGE"), ("seal", ""), ("replicate", "PACKAGE")]
    assert status(api_data, api_config)["queued"]["by_job"] == {
        "characterise": 1,
        "seal": 1,
        "replicate": 1,
    }

    for data, config in ((cli_data, cli_config), (api_data, api_config)):
        code, ran, said = custos(data, config, "worker", "--until-idle", "--json")
        assert code == 0, said
        assert ran["status"] == "ok" and ran["failed"] == []
        assert {r["job"] for r in ran["ran"]} == {"characterise", "seal", "replicate"}

    after = snapshot(cli_data, cli_config)
    assert after == snapshot(api_data, api_config)
    assert after["versions"] == [1, 2] and after["queued"] == []
    payload = [f for f in after["files"] if f[2] == "payload"]
    assert payload and all(puid for *_, puid in payload)  # identified
    for data, config in ((cli_data, cli_config), (api_data, api_config)):
        st = status(data, config)
        assert st["characterisation"]["files_awaiting_identification"] == 0
        assert st["seal_backlog"]["pending"] == 0
        assert st["seal_backlog"]["file_seals_pending"]["versions"] == 0
        assert st["replication"]["safely_stored"] == st["replication"]["packages"] == 1
        assert st["queued"]["waiting"] == 0

    # As a user types it, `custos ingest` identifies and seals at once, leaves replication
    # to a worker, and ends where the others did.
    typed_data, typed_config = archive_with_a_second_location(tmp_path / "typed")
    add_depositor_user(typed_data, typed_config)
    code, stored, said = custos(
        typed_data, typed_config, "ingest", str(SAMPLE), "--depositor", DEPOSITOR, "--json"
    )
    assert code == 0, said
    assert stored["identification"]["status"] == "ok" and stored["seal"]["status"] == "sealed"
    assert stored["queued"] == [{"job": "replicate", "key": stored["package_id"]}]
    code, ran, said = custos(typed_data, typed_config, "worker", "--until-idle", "--json")
    assert code == 0 and [r["job"] for r in ran["ran"]] == ["replicate"], said
    assert snapshot(typed_data, typed_config) == after


def test_work_that_fails_stays_queued_with_its_reason(tmp_path: Path) -> None:
    """A location that cannot be written: the worker exits 5, the replication stays queued
    with the location's error, `custos status` shows it, and once the location can be
    written a later run completes it."""
    data, config = archive_with_a_second_location(tmp_path / "a")
    replica = tmp_path / "a" / "replica"
    replica.write_text("a file where the location's folder should be\n")
    code, _, said = custos(
        data, config, "ingest", str(SAMPLE), "--depositor", DEPOSITOR, "--new-depositor"
    )
    assert code == 0, said
    code, ran, said = custos(data, config, "worker", "--until-idle", "--json")
    assert code == 5, said
    assert ran["status"] == "partly-done"
    assert [f["job"] for f in ran["failed"]] == ["replicate"]
    assert "second" in ran["failed"][0]["error"]
    st = status(data, config)
    assert st["queued"]["by_job"] == {"replicate": 1} and st["queued"]["failing"] == 1
    failure = st["queued"]["failures"][0]
    assert failure["attempts"] == 1 and "second" in failure["last_error"]
    assert failure["not_before"] > st["at"]  # put off, not dropped
    code, text, _ = custos(data, config, "status")
    assert code == 0 and "failed 1 time(s): replicate" in text and "second" in text
    # Put off: a run now leaves it alone, and says nothing failed anew.
    code, ran, said = custos(data, config, "worker", "--until-idle", "--json")
    assert code == 0 and ran["ran"] == [] and ran["failed"] == [], said
    # The location fixed and the back-off over (moved into the past here), it completes.
    replica.unlink()
    settings = load_settings(data_dir=data, config_file=config, environ={})
    services = open_services(settings, recover=False)
    try:
        with services.session_scope() as session:
            entry = session.execute(select(OutboxEntry)).scalar_one()
            entry.not_before = entry.created_at
    finally:
        services.close()
    code, ran, said = custos(data, config, "worker", "--until-idle", "--json")
    assert code == 0 and [r["job"] for r in ran["ran"]] == ["replicate"], said
    assert status(data, config)["replication"]["safely_stored"] == 1
