"""Depositors are registered on purpose: `custos depositors add` and `list`; a deposit (command
line or API) or a depositor user naming a depositor that is not registered is refused, naming
the registered ones close to it, and leaves nothing behind; --new-depositor and
--new-organisation register it explicitly; a catalog rebuilt from storage has its depositors
again; an upgraded catalog registers the organisations of its depositor users."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from api.app import create_app
from archive.catalog.session import make_engine
from archive.catalog.tables import Depositor, Event, Upload, User
from archive.services import Services
from tests.api_support import make_users
from tests.conftest import ROOT, SAMPLE, MakeServices
from tests.functional.test_cli import custos
from tests.helpers import (
    catalog_counts,
    drop_tier_keys_schema,
    make_bag,
    staging_debris,
    zip_folder,
)

REGISTERED = "Sample Closing Mechanism"
TYPO = "sample closing mechanisms"  # case and a letter apart


def depositor_rows(services: Services) -> list[str]:
    with services.sessions() as session:
        return sorted(session.execute(select(Depositor.name)).scalars())


def events(services: Services) -> list[dict[str, Any]]:
    with services.sessions() as session:
        return [
            {
                "type": e.type,
                "outcome": e.outcome,
                "agent": e.agent,
                "detail": e.detail,
                "links": sorted((k.object_type, k.object_id) for k in e.links),
            }
            for e in session.execute(select(Event).order_by(Event.id)).scalars()
        ]


def test_an_unregistered_depositor_is_refused_before_anything_is_read(
    make_services: MakeServices, catalog_url: str
) -> None:
    services = make_services(catalog_url)
    data, env = services.settings.data_dir, {"CUSTOS_DATABASE_URL": catalog_url}
    code, _, err = custos(data, "depositors", "add", REGISTERED, env=env)
    assert code == 0, err
    before = events(services)

    code, _, err = custos(data, "ingest", str(SAMPLE), "--depositor", TYPO, env=env)
    assert code == 65
    said = " ".join(err.split())  # the terminal's line breaks aside
    assert "DEPOSITOR-UNKNOWN [--depositor]" in said
    assert f"registered depositors with a close name: '{REGISTERED}'" in said
    assert f"if you meant '{REGISTERED}', give that name as registered" in said
    assert f'`custos depositors add "{TYPO}"`, or add --new-depositor to this command' in said

    # The check comes first: a source that does not exist is not even looked at.
    code, body, _ = custos(
        data, "ingest", str(data / "no-such-bag"), "--depositor", TYPO, "--json", env=env
    )
    assert code == 65 and body["status"] == "refused"
    assert [(f["code"], f["path"]) for f in body["findings"]] == [
        ("DEPOSITOR-UNKNOWN", "--depositor")
    ]
    assert repr(REGISTERED) in body["findings"][0]["message"]

    # Nothing behind: no package, no object, no staging, no depositor; one event per refusal.
    assert depositor_rows(services) == [REGISTERED]
    assert catalog_counts(services)["packages"] == catalog_counts(services)["deposits"] == 0
    assert list(services.store.iter_objects()) == []
    assert staging_debris(services.store.staging) == []
    after = events(services)[len(before) :]
    assert [(e["type"], e["outcome"]) for e in after] == [("ingestion", "failure")] * 2
    assert all(e["detail"].startswith("deposit refused (DEPOSITOR-UNKNOWN)") for e in after)
    assert ("depositor", TYPO) in after[0]["links"] and ("source", "sample-holding") in after[0][
        "links"
    ]
    code, audit, err = custos(data, "audit", "verify", "--json", env=env)
    assert code == 0 and audit["verified"], err

    # The name as registered is accepted.
    code, body, err = custos(
        data, "ingest", str(SAMPLE), "--depositor", REGISTERED, "--json", env=env
    )
    assert code == 0 and body["status"] == "stored" and not body["depositor_registered"], err


def test_new_depositor_registers_it_for_its_first_deposit(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"first deposit\n"})
    code, body, err = custos(
        tmp_path / "d", "ingest", str(bag), "--depositor", "Commission of Inquiry",
        "--new-depositor", "--no-identify", "--no-seal", "--json",
    )  # fmt: skip
    assert code == 0 and body["status"] == "stored" and body["depositor_registered"], err
    # The next deposits need no flag; with it, a registered name is kept as it is.
    code, body, err = custos(
        tmp_path / "d", "ingest", str(SAMPLE), "--depositor", "Commission of Inquiry",
        "--new-depositor", "--no-identify", "--no-seal",
    )  # fmt: skip
    assert code == 0 and "registered the depositor" not in err, err
    code, listing, _ = custos(tmp_path / "d", "depositors", "list", "--json")
    assert [(d["name"], d["deposits"], d["packages"]) for d in listing["depositors"]] == [
        ("Commission of Inquiry", 2, 2)
    ]
    # A new name close to a registered one is registered (it was asked for), with a note.
    bag2 = make_bag(tmp_path / "bag2", {"b.txt": b"another\n"})
    code, _, err = custos(
        tmp_path / "d", "ingest", str(bag2), "--depositor", "Commission of Enquiry",
        "--new-depositor", "--no-identify", "--no-seal",
    )  # fmt: skip
    said = " ".join(err.split())
    assert code == 0
    assert "registered the depositor Commission of Enquiry" in said
    assert "registered depositors with a close name: Commission of Inquiry (a typo?" in said
    # A spelling that differs only in case or spaces is refused, naming the registered one.
    code, body, _ = custos(
        tmp_path / "d", "ingest", str(bag2), "--depositor", "commission of  inquiry",
        "--new-depositor", "--json",
    )  # fmt: skip
    assert code == 65
    assert body["findings"][0]["code"] == "DEPOSITOR-REGISTERED-AS"
    assert "'Commission of Inquiry'" in body["findings"][0]["message"]


def test_depositors_add_and_list(make_services: MakeServices, catalog_url: str) -> None:
    services = make_services(catalog_url)
    data, env = services.settings.data_dir, {"CUSTOS_DATABASE_URL": catalog_url}
    code, said, _ = custos_text(data, env, "depositors", "list")
    assert code == 0 and said.startswith("no depositor registered: `custos depositors add")
    code, body, _ = custos(
        data, "depositors", "add", "Sample Mechanism", "--reason", "agreement 7", "--json", env=env
    )
    assert code == 0 and body["status"] == "registered" and body["name"] == "Sample Mechanism"
    result = custos_text(data, env, "depositors", "add", "Sample Mechanism")
    assert result[0] == 0 and "depositor Sample Mechanism already registered (since " in result[1]
    assert "nothing changed" in result[1]
    code, body, _ = custos(data, "depositors", "add", " Sample Mechanism ", "--json", env=env)
    assert code == 0 and body["status"] == "already-registered"
    code, body, _ = custos(data, "depositors", "add", "SAMPLE MECHANISM", "--json", env=env)
    assert code == 65 and body["findings"][0]["code"] == "DEPOSITOR-REGISTERED-AS"
    code, body, _ = custos(data, "depositors", "add", "  ", "--json", env=env)
    assert code == 65 and body["findings"][0]["code"] == "DEPOSITOR-NAME"
    result = custos_text(data, env, "depositors", "add", "Other Mechanism")
    assert result[0] == 0 and result[1] == "depositor Other Mechanism registered\n"
    # A deposit for one of them.
    code, _, err = custos(
        data, "ingest", str(SAMPLE), "--depositor", "Sample Mechanism", "--no-identify",
        "--no-seal", env=env,
    )  # fmt: skip
    assert code == 0, err

    code, listing, _ = custos(data, "depositors", "list", "--json", env=env)
    assert code == 0 and listing["status"] == "ok"
    assert [(d["name"], d["deposits"], d["packages"]) for d in listing["depositors"]] == [
        ("Other Mechanism", 0, 0),
        ("Sample Mechanism", 1, 1),
    ]
    assert all(d["registered_at"].endswith("+00:00") for d in listing["depositors"])
    code, lines, _ = custos_text(data, env, "depositors", "list")
    assert code == 0
    assert [line.split("; registered ")[0] for line in lines.splitlines()] == [
        "Other Mechanism: 0 deposit(s), 0 package(s)",
        "Sample Mechanism: 1 deposit(s), 1 package(s)",
    ]
    # One custody event per registration, naming who and why; none for a repeat or a refusal.
    registered = [e for e in events(services) if e["type"] == "depositor administration"]
    assert [e["links"] for e in registered] == [
        [("depositor", "Sample Mechanism")],
        [("depositor", "Other Mechanism")],
    ]
    assert registered[0]["agent"].startswith("operator ")
    assert registered[0]["detail"].endswith("reason: agreement 7")
    code, audit, err = custos(data, "audit", "verify", "--json", env=env)
    assert code == 0 and audit["verified"], err


def custos_text(data: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`custos ARGS` without --json: its exit status, stdout and stderr."""
    from tests.functional.test_cli import get_app, runner

    result = runner.invoke(
        get_app(), ["--data-dir", str(data), *args], env={"CUSTOS_FSYNC": "false", **env}
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_rebuilt_catalog_has_its_depositors_again(tmp_path: Path) -> None:
    data = tmp_path / "d"
    stored = {}
    for name, bag in (("Sample Mechanism", SAMPLE), ("Other Mechanism", None)):
        source = bag or make_bag(tmp_path / "other", {"o.txt": b"other\n"})
        code, body, err = custos(
            data, "ingest", str(source), "--depositor", name, "--new-depositor", "--no-identify",
            "--no-seal", "--json",
        )  # fmt: skip
        assert code == 0, err
        stored[name] = body["package_id"]
    code, _, _ = custos(data, "depositors", "add", "Quiet Mechanism")
    assert code == 0
    expected = [("Other Mechanism", 1, 1), ("Quiet Mechanism", 0, 0), ("Sample Mechanism", 1, 1)]

    # Rebuilt in place: every registration stays, deposits counted again.
    code, report, err = custos(data, "catalog", "rebuild", "--json")
    assert code == 0 and sorted(report["indexed"]) == sorted(stored.values()), err
    code, listing, _ = custos(data, "depositors", "list", "--json")
    assert [(d["name"], d["deposits"], d["packages"]) for d in listing["depositors"]] == expected

    # From storage alone: each object's custos/deposit.json names its depositor. One
    # registered without a deposit is known to the catalog only, and is not restored.
    for suffix in ("", "-wal", "-shm"):
        (data / f"catalog.sqlite3{suffix}").unlink(missing_ok=True)
    code, report, err = custos(data, "catalog", "rebuild", "--json")
    assert code == 0 and report["failed"] == [], err
    code, listing, _ = custos(data, "depositors", "list", "--json")
    assert [(d["name"], d["deposits"], d["packages"]) for d in listing["depositors"]] == [
        ("Other Mechanism", 1, 1),
        ("Sample Mechanism", 1, 1),
    ]
    code, shown, _ = custos(data, "list", "--json")
    assert {p["package_id"]: p["depositor"] for p in shown["packages"]} == {
        v: k for k, v in stored.items()
    }
    # A restored depositor deposits again without registering.
    bag = make_bag(tmp_path / "again", {"n.txt": b"new\n"})
    code, _, err = custos(data, "ingest", str(bag), "--depositor", "Other Mechanism", "--no-seal")
    assert code == 0, err


def test_users_add_refuses_an_organisation_that_is_not_registered(
    make_services: MakeServices, catalog_url: str
) -> None:
    services = make_services(catalog_url)
    data, env = services.settings.data_dir, {"CUSTOS_DATABASE_URL": catalog_url}
    code, _, _ = custos(data, "depositors", "add", "Sample Mechanism", env=env)
    assert code == 0
    users_before = catalog_users(services)
    code, _, err = custos(
        data, "users", "add", "dora", "--role", "depositor", "--organisation", "Sampel Mechanism",
        env=env,
    )  # fmt: skip
    said = " ".join(err.split())
    assert code == 65
    assert "DEPOSITOR-UNKNOWN [--organisation]" in said
    assert "registered depositors with a close name: 'Sample Mechanism'" in said
    assert '`custos depositors add "Sampel Mechanism"`, or add --new-organisation' in said
    assert catalog_users(services) == users_before == []
    assert depositor_rows(services) == ["Sample Mechanism"]

    # As registered: accepted. With --new-organisation: registered with the user.
    code, body, err = custos(
        data, "users", "add", "dora", "--role", "depositor", "--organisation", "Sample Mechanism",
        "--json", env=env,
    )  # fmt: skip
    assert code == 0 and body["organisation"] == "Sample Mechanism", err
    assert not body["organisation_registered"]
    code, body, err = custos(
        data, "users", "add", "otto", "--role", "depositor", "--organisation", "Other Mechanism",
        "--new-organisation", "--json", env=env,
    )  # fmt: skip
    assert code == 0 and body["organisation_registered"], err
    code, said, err = custos_text(
        data, env, "users", "add", "ulla", "--role", "depositor", "--organisation",
        "Sample Mechanisms", "--new-organisation",
    )  # fmt: skip
    assert code == 0 and said.startswith("user ulla (depositor) created")
    assert "registered the depositor Sample Mechanisms" in err
    said = " ".join(err.split())
    assert "registered depositors with a close name: Sample Mechanism, Other Mechanism (a" in said
    assert depositor_rows(services) == ["Other Mechanism", "Sample Mechanism", "Sample Mechanisms"]
    registration = [e for e in events(services) if e["type"] == "depositor administration"][-2]
    assert registration["detail"].endswith("reason: the organisation of user otto")
    # Only a depositor has an organisation to register.
    code, body, _ = custos(data, "users", "add", "rita", "--new-organisation", "--json", env=env)
    assert code == 65 and body["findings"][0]["code"] == "USER-ORGANISATION"
    assert catalog_users(services) == ["dora", "otto", "ulla"]


def catalog_users(services: Services) -> list[str]:
    with services.sessions() as session:
        return sorted(session.execute(select(User.name)).scalars())


def test_the_api_refuses_an_upload_for_an_organisation_not_registered(
    services: Services, tmp_path: Path
) -> None:
    """A depositor user bound to an organisation that is not registered (made before
    depositors were registered, or its row edited) is refused before its upload is read,
    and not told the names of other depositors."""
    users = make_users(services, organisation="Sample Mechanism")
    with services.session_scope() as session:
        session.execute(
            update(User).where(User.name == "dora").values(organisation="Sampel Mechanism")
        )
    archive = zip_folder(SAMPLE, tmp_path / "sample.zip")
    checksum = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    before = catalog_counts(services)
    with TestClient(create_app(services.settings)) as client:
        r = client.put(
            "/deposits",
            params={"filename": "sample.zip"},
            content=archive.read_bytes(),
            headers={**users.bearer("depositor"), "X-Custos-Checksum": checksum},
        )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert [(f["code"], f["path"]) for f in problem["findings"]] == [
        ("DEPOSITOR-UNKNOWN", "organisation")
    ]
    assert "'Sampel Mechanism' is not a registered depositor" in problem["detail"]
    assert "custos depositors add" in problem["hint"]
    assert "Sample Mechanism'" not in r.text  # no other depositor is named
    assert catalog_counts(services) == before
    assert depositor_rows(services) == ["Sample Mechanism"]
    assert staging_debris(services.store.staging) == []
    assert list(services.store.iter_objects()) == []
    with services.sessions() as session:
        assert session.execute(select(Upload)).first() is None


def test_an_upgraded_catalog_registers_the_organisations_of_its_depositor_users(
    make_services: MakeServices, catalog_url: str, tmp_path: Path
) -> None:
    """Before revision 0016 a depositors row was made by a first deposit: a depositor user's
    organisation that had not deposited had none. The upgrade registers it, so that the
    user's uploads are accepted as they were."""
    services = make_services(catalog_url)
    users = make_users(services, organisation="Legacy Mechanism")
    with services.session_scope() as session:
        made = session.execute(select(User.created_at).where(User.name == "dora")).scalar_one()
        session.execute(text("DELETE FROM depositors"))  # as the previous release left it
    url = services.settings.catalog_url
    services.close()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0015_outbox'"))
            conn.execute(text("DROP TABLE pending_installs"))  # not in that revision's schema
            drop_tier_keys_schema(conn)
    finally:
        engine.dispose()
    services = make_services(catalog_url)  # upgrades the catalog
    with services.sessions() as session:
        rows = session.execute(select(Depositor.name, Depositor.created_at)).all()
    assert [tuple(r) for r in rows] == [("Legacy Mechanism", made)]
    archive = zip_folder(SAMPLE, tmp_path / "sample.zip")
    checksum = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    with TestClient(create_app(services.settings)) as client:
        r = client.put(
            "/deposits",
            params={"filename": "sample.zip"},
            content=archive.read_bytes(),
            headers={**users.bearer("depositor"), "X-Custos-Checksum": checksum},
        )
    assert r.status_code == 201, r.text


def test_the_demo_deposits_on_an_empty_data_folder_and_again(tmp_path: Path) -> None:
    """`make demo`'s deposit (its first lines, before it serves) on a new data folder, then
    run again: the sample is already held."""
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), "demo", f"DATA={tmp_path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [x for x in plan.splitlines() if " ingest " in x]
    env = {**os.environ, "CUSTOS_FSYNC": "false"}
    for expected in ("stored 5 files", "already held"):
        done = subprocess.run(
            ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert expected in done.stderr
