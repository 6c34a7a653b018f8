"""Characterisation as queued work, and extracted text in the public search.

An API deposit is answered before its formats are identified; the ``characterise`` job its
commit put in the outbox then identifies it, and running it again does nothing twice. The
text of public documents is found by the researcher search and the reading room; the text
of restricted and protected-identity documents is never read, so no hit, count or facet
reveals it, until a tier change opens the file.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from api.app import create_app
from archive import outbox
from archive.catalog.tables import Event, ExtractedText, File, SearchEntry, Version
from archive.jobs import job_table, run_outbox
from archive.services import Services
from ingest.characterise import characterise
from tests.api_support import Users, make_users
from tests.conftest import SAMPLE, MakeServices
from tests.helpers import deposit, drop_tier_keys_schema, make_bag, make_pdf, zip_folder


def upload(client: TestClient, users: Users, archive: Path) -> dict[str, Any]:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    r = client.put(
        "/deposits",
        params={"filename": "bag.zip"},
        content=archive.read_bytes(),
        headers={**users.bearer("depositor"), "X-Custos-Checksum": f"sha256:{digest}"},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def counts(services: Services, package_id: str) -> tuple[int, int, int]:
    """(unidentified payload files, versions, identification events) of a package."""
    with services.sessions() as session:
        unidentified = session.execute(
            select(func.count()).where(
                File.package_id == package_id,
                File.role == "payload",
                File.format_name.is_(None),
            )
        ).scalar_one()
        versions = session.execute(
            select(func.count()).where(Version.package_id == package_id)
        ).scalar_one()
        events = session.execute(
            select(func.count()).where(Event.type == "format identification")
        ).scalar_one()
    return unidentified, versions, events


def test_api_deposit_is_answered_before_identification_and_the_job_identifies_it_once(
    services: Services, tmp_path: Path
) -> None:
    users = make_users(services)
    archive = zip_folder(SAMPLE, tmp_path / "sample.zip")
    with TestClient(create_app(services.settings)) as client:  # no worker, no serve thread
        body = upload(client, users, archive)
        package_id = body["package_id"]
        # The answer came before identification: every payload file still lacks a format.
        assert body["identification"] == "pending" and body["files_awaiting_identification"] == 5
        assert counts(services, package_id) == (5, 1, 0)
        receipt = client.get(
            f"/deposits/{body['upload_id']}/receipt", headers=users.bearer("depositor")
        )
        assert receipt.status_code == 200 and len(receipt.json()["files"]) == 5
        # The deposit's commit queued its work: characterise it, seal it, replicate it.
        with services.sessions() as session:
            assert outbox.entries(session) == [
                ("characterise", package_id),
                ("seal", ""),
                ("replicate", package_id),
            ]
        # The job registered through the custos.jobs entry point runs from the outbox.
        assert "characterise" in job_table(services.settings).handlers
        ran = run_outbox(services, jobs=["characterise"])
        assert ran.ran == [("characterise", package_id)] and not ran.failed
        with services.sessions() as session:  # no migration queued unless asked for
            assert [job for job, _ in outbox.entries(session)] == ["seal", "replicate"]
        unidentified, versions, events = counts(services, package_id)
        assert unidentified == 0 and versions == 2 and events == 5
        status = client.get(f"/deposits/{body['upload_id']}", headers=users.bearer("depositor"))
        assert status.json()["identification"] == "done"
        assert status.json()["files_awaiting_identification"] == 0
        with services.sessions() as session:
            texts = session.execute(select(func.count(ExtractedText.sha512))).scalar_one()
        # Run again: nothing is identified or read twice, no version is added.
        job = job_table(services.settings).handlers["characterise"]
        job(services, package_id=package_id)
        job(services)
        assert counts(services, package_id) == (0, 2, 5)
        with services.sessions() as session:
            assert session.execute(select(func.count(ExtractedText.sha512))).scalar_one() == texts
        assert characterise(services).as_dict() == {"identified": [], "texts": {}, "failures": []}


def test_serve_identifies_api_deposits_itself_when_no_worker_runs(
    services: Services, tmp_path: Path
) -> None:
    users = make_users(services)
    archive = zip_folder(SAMPLE, tmp_path / "sample.zip")
    app = create_app(services.settings, run_outbox=True)
    with TestClient(app) as client:
        body = upload(client, users, archive)
        deadline = time.monotonic() + 120  # a bound on waiting, not a timing assertion
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = client.get(
                f"/deposits/{body['upload_id']}", headers=users.bearer("depositor")
            ).json()
            if status["identification"] == "done":
                break
            time.sleep(0.2)
        assert status["identification"] == "done"
    assert counts(services, body["package_id"])[0] == 0


# --- extracted text in the public search ---------------------------------------------------

PUBLIC_WORD = "quokkafrond"
RESTRICTED_WORD = "wombatquill"
PROTECTED_WORD = "numbatglade"
NOWHERE_WORD = "dingoplume"

ACCESS_SIDECAR = (
    "data/closed/minutes.pdf\trestricted\t-\t-\tpublic\tClosed by order 1\n"
    "data/closed/witness.pdf\tprotected-identity\t-\t-\tprosecution\tProtects a witness\n"
)


@pytest.fixture
def text_holding(
    make_services: MakeServices, catalog_url: str, tmp_path: Path
) -> Iterator[tuple[Services, TestClient, Users, str]]:
    services = make_services(catalog_url)
    bag = make_bag(
        tmp_path / "bag",
        {
            "open/report.pdf": make_pdf(f"Field report {PUBLIC_WORD} recorded at the site"),
            "open/notes.txt": b"Plain notes about the ferryman crossing\n",
            "closed/minutes.pdf": make_pdf(f"Closed minutes {RESTRICTED_WORD} of the meeting"),
            "closed/witness.pdf": make_pdf(f"Statement {PROTECTED_WORD} of a witness"),
            "open/broken.pdf": make_pdf("cut short")[:120],
        },
        info={
            "Title": "Holding with documents",
            "Access-Tier": "public",
            "Access-Legal-Basis": "Published",
            "Consent-Scopes": "public, research",
        },
        extra_tag_files={"custos-access.txt": ACCESS_SIDECAR.encode()},
    )
    package_id = deposit(services, bag, depositor="Text Mechanism").package_id
    report = characterise(services)
    assert report.failures == []
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        yield services, client, users, package_id.removeprefix("urn:uuid:")


def _search(client: TestClient, word: str, headers: dict[str, str] | None = None) -> Any:
    r = client.get("/public/search", params={"q": word}, headers=headers or {})
    assert r.status_code == 200
    return r.json()


def _sha512(services: Services, path: str) -> str:
    with services.sessions() as session:
        return session.execute(
            select(File.sha512).where(File.logical_path == f"bag/{path}")
        ).scalar_one()


@pytest.mark.postgres
def test_words_of_public_documents_are_found_and_restricted_ones_never(
    text_holding: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, _ = text_holding
    researcher = users.bearer("researcher")
    for headers in (None, researcher):
        found = _search(client, PUBLIC_WORD, headers)
        assert found["total"] == 1
        assert [h["path"] for h in found["results"]] == ["data/open/report.pdf"]
        assert found["facets"]["format"][0]["count"] == 1
        notes = _search(client, "ferryman", headers)
        assert [h["path"] for h in notes["results"]] == ["data/open/notes.txt"]
        # Words only inside restricted and protected-identity documents: no hit, no count,
        # no facet, the same answer as a word that is nowhere.
        nowhere = _search(client, NOWHERE_WORD, headers)
        for word in (RESTRICTED_WORD, PROTECTED_WORD):
            hidden = _search(client, word, headers)
            assert hidden["total"] == 0 and hidden["results"] == []
            assert all(v == [] for v in hidden["facets"].values())
            assert {**hidden, "query": ""} == {**nowhere, "query": ""}
    # The reading room, the same.
    page = client.get("/search", params={"q": PUBLIC_WORD})
    assert page.status_code == 200 and "report.pdf" in page.text
    for word in (RESTRICTED_WORD, PROTECTED_WORD):
        hidden_page = client.get("/search", params={"q": word}).text
        nowhere_page = client.get("/search", params={"q": NOWHERE_WORD}).text
        assert hidden_page.replace(word, "W") == nowhere_page.replace(NOWHERE_WORD, "W")
        assert "minutes" not in hidden_page and "witness" not in hidden_page
    # The restricted bytes were never read for text: no row, nothing in the index.
    with services.sessions() as session:
        held = dict(session.execute(select(ExtractedText.sha512, ExtractedText.outcome)).all())
        documents = " ".join(session.execute(select(SearchEntry.document)).scalars())
    assert _sha512(services, "data/closed/minutes.pdf") not in held
    assert _sha512(services, "data/closed/witness.pdf") not in held
    assert RESTRICTED_WORD not in documents and PROTECTED_WORD not in documents
    # A PDF that pdftotext cannot read is recorded as failed, and nothing else broke.
    assert held[_sha512(services, "data/open/broken.pdf")] == "failed"
    assert held[_sha512(services, "data/open/report.pdf")] == "text"


@pytest.mark.postgres
def test_a_tier_change_to_public_makes_the_text_findable(
    text_holding: tuple[Services, TestClient, Users, str],
) -> None:
    services, client, users, uuid = text_holding
    assert _search(client, RESTRICTED_WORD)["total"] == 0
    r = client.post(
        f"/registrar/packages/{uuid}/tier",
        json={"path": "data/closed/minutes.pdf", "tier": "public", "legal_basis": "Order 9"},
        headers=users.bearer("registrar", totp=True),
    )
    assert r.status_code == 200, r.text
    # The extraction is queued work after the change; a worker (here: the outbox, run once).
    assert ("characterise", f"urn:uuid:{uuid}") in run_outbox(services).ran
    found = _search(client, RESTRICTED_WORD)
    assert [h["path"] for h in found["results"]] == ["data/closed/minutes.pdf"]
    # The protected-identity document stays unread and unfound.
    assert _search(client, PROTECTED_WORD)["total"] == 0
    with services.sessions() as session:
        held = set(session.execute(select(ExtractedText.sha512)).scalars())
    assert _sha512(services, "data/closed/witness.pdf") not in held
    # A catalog rebuilt in place from storage keeps the tier change and finds the text.
    from archive.catalog.rebuild import rebuild

    rebuild(services)
    found = _search(client, RESTRICTED_WORD)
    assert [h["path"] for h in found["results"]] == ["data/closed/minutes.pdf"]
    assert _search(client, PROTECTED_WORD)["total"] == 0


def test_text_limits_are_kept(make_services: MakeServices, tmp_path: Path) -> None:
    services = make_services(characterisation={"source_max_bytes": 2000, "text_max_chars": 20})
    bag = make_bag(
        tmp_path / "bag",
        {
            "big.txt": b"padding " * 400 + b"farawayword\n",
            "small.txt": b"alpha beta gamma delta epsilon zeta eta theta\n",
        },
        info={"Access-Tier": "public", "Access-Legal-Basis": "x", "Consent-Scopes": "public"},
    )
    deposit(services, bag, depositor="Limits Mechanism")
    report = characterise(services)
    assert report.texts == {"text": 1, "too-large": 1}
    with services.sessions() as session:
        texts = dict(session.execute(select(ExtractedText.outcome, ExtractedText.text)).all())
    assert texts["text"] == "alpha beta gamma del" and texts["too-large"] == ""


def test_identification_queues_the_migration_where_asked(
    make_services: MakeServices, tmp_path: Path
) -> None:
    services = make_services(migration={"after_identification": True})
    users = make_users(services)
    archive = zip_folder(SAMPLE, tmp_path / "sample.zip")
    with TestClient(create_app(services.settings)) as client:
        package_id = upload(client, users, archive)["package_id"]
    # characterise: identifies, and its version's commit asks for the migration
    assert run_outbox(services, jobs=["characterise"]).ran == [("characterise", package_id)]
    assert counts(services, package_id)[:2] == (0, 2)
    with services.sessions() as session:
        assert ("migrate", package_id) in outbox.entries(session)
    # migrate: the sample's PDF gets its PDF/A copy
    assert ("migrate", package_id) in run_outbox(services, jobs=["migrate"]).ran
    with services.sessions() as session:
        made = (
            session.execute(
                select(File.logical_path).where(
                    File.package_id == package_id, File.role == "derivative"
                )
            )
            .scalars()
            .all()
        )
    assert any(p.endswith(".pdf") for p in made)
    assert counts(services, package_id)[1] == 3


def test_cli_queues_with_no_identify_and_status_says_what_is_pending(tmp_path: Path) -> None:
    from tests.functional.test_cli import custos

    data = tmp_path / "data"
    code, stored, _ = custos(
        data,
        "ingest",
        str(SAMPLE),
        "--depositor",
        "S",
        "--new-depositor",
        "--no-identify",
        "--json",
    )
    assert code == 0 and stored["identification"] == {"status": "queued"}
    code, status, _ = custos(data, "status", "--json")
    pending_work = status["characterisation"]
    assert pending_work["files_awaiting_identification"] == 5
    assert pending_work["packages_awaiting_identification"] == 1
    assert status["queued"]["by_job"] == {"characterise": 1, "replicate": 1}
    code, done, _ = custos(data, "identify", "--json")
    assert (
        code == 0 and done["packages"][0]["identified"] + done["packages"][0]["unidentified"] == 5
    )
    # The sample's public text files and PDF were read; the restricted letter was not.
    assert done["texts"].get("text", 0) >= 2
    code, status, _ = custos(data, "status", "--json")
    assert status["characterisation"]["files_awaiting_identification"] == 0
    assert status["characterisation"]["public_files_awaiting_text"] == 0
    code, again, _ = custos(data, "identify", "--json")
    assert again == {"status": "ok", "packages": [], "texts": {}}


def test_a_pdf_read_while_pdftotext_is_missing_is_read_once_it_is_installed(
    tmp_path: Path,
) -> None:
    """Without pdftotext on PATH a PDF is ``tool-missing`` (not ``failed``) and left alone
    while the tool stays missing; once it is found, `custos identify` reads it, and its words
    reach the search. A PDF pdftotext cannot read stays ``failed`` and is not read again."""
    from archive.cli import get_app
    from archive.config import load_settings
    from archive.services import open_services
    from tests.functional.test_cli import custos, runner

    no_tools = {"PATH": str(tmp_path / "empty-bin")}  # neither pdftotext nor anything else
    (tmp_path / "empty-bin").mkdir()
    bag = make_bag(
        tmp_path / "bag",
        {
            "report.pdf": make_pdf(f"Field report {PUBLIC_WORD} recorded at the site"),
            "broken.pdf": make_pdf("cut short")[:120],
            "notes.txt": b"Plain notes about the ferryman crossing\n",
        },
        info={"Access-Tier": "public", "Access-Legal-Basis": "x", "Consent-Scopes": "public"},
    )
    data = tmp_path / "data"
    code, _, said = custos(
        data, "ingest", str(bag), "--depositor", "T", "--new-depositor", "--no-seal", env=no_tools
    )
    assert code == 0
    assert "tool-missing 2" in said and "failed" not in said
    assert "pdftotext is not installed (Debian: apt-get install poppler-utils)" in said
    code, status, _ = custos(data, "status", "--json", env=no_tools)
    texts = status["characterisation"]
    assert texts["texts"] == {"text": 1, "tool-missing": 2}
    assert texts["texts_awaiting_tool"] == {"pdftotext": 2}
    human = runner.invoke(get_app(), ["--data-dir", str(data), "status"], env=no_tools)
    assert "2 public file(s) not read for text: pdftotext was not installed" in human.stdout
    # While the tool stays missing, nothing is pending and nothing is tried again.
    code, again, _ = custos(data, "identify", "--json", env=no_tools)
    assert again == {"status": "ok", "packages": [], "texts": {}}

    # pdftotext found (the test machine's PATH): the next run reads both PDFs.
    code, done, _ = custos(data, "identify", "--json")
    assert code == 0 and done["texts"] == {"failed": 1, "text": 1}
    code, status, _ = custos(data, "status", "--json")
    assert status["characterisation"]["texts"] == {"failed": 1, "text": 2}
    assert status["characterisation"]["texts_awaiting_tool"] == {}
    # The PDF that pdftotext cannot read stays failed: not read again.
    code, again, _ = custos(data, "identify", "--json")
    assert again == {"status": "ok", "packages": [], "texts": {}}
    services = open_services(load_settings(data_dir=data))
    try:
        with services.sessions() as session:
            documents = " ".join(session.execute(select(SearchEntry.document)).scalars())
    finally:
        services.close()
    assert PUBLIC_WORD in documents


def test_an_archive_upgraded_reads_the_pdfs_it_failed_for_want_of_pdftotext(
    tmp_path: Path,
) -> None:
    """Before revision 0014 a PDF read without pdftotext was recorded ``failed`` with no tool
    and never read again; the upgrade forgets those rows, so the next run reads the PDF."""
    from archive.catalog.session import make_engine
    from tests.functional.test_cli import custos

    (tmp_path / "empty-bin").mkdir()
    bag = make_bag(
        tmp_path / "bag",
        {"report.pdf": make_pdf(f"Field report {PUBLIC_WORD}")},
        info={"Access-Tier": "public", "Access-Legal-Basis": "x", "Consent-Scopes": "public"},
    )
    data = tmp_path / "data"
    env = {"PATH": str(tmp_path / "empty-bin")}
    code, stored, _ = custos(
        data,
        "ingest",
        str(bag),
        "--depositor",
        "T",
        "--new-depositor",
        "--no-seal",
        "--json",
        env=env,
    )
    assert code == 0 and stored["texts"] == {"tool-missing": 1}
    # What the previous release recorded, at its schema revision.
    engine = make_engine(f"sqlite:///{data / 'catalog.sqlite3'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE extracted_texts SET outcome = 'failed', tool = ''"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0013_event_links_index'"))
            conn.execute(text("DROP TABLE outbox"))  # not in that revision's schema
            conn.execute(text("DROP TABLE pending_installs"))
            drop_tier_keys_schema(conn)
    finally:
        engine.dispose()
    code, done, _ = custos(data, "identify", "--json")  # upgrades the catalog first
    assert code == 0 and done["texts"] == {"text": 1}


def test_the_text_of_a_pdf_left_for_want_of_its_tool_replaces_that_row(
    make_services: MakeServices, catalog_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row that says the tool was missing is replaced by what the tool reads (on both
    catalogs); a row of any other outcome is never written over."""
    services = make_services(catalog_url)
    bag = make_bag(
        tmp_path / "bag",
        {"report.pdf": make_pdf(f"Field report {PUBLIC_WORD}")},
        info={"Access-Tier": "public", "Access-Legal-Basis": "x", "Consent-Scopes": "public"},
    )
    deposit(services, bag, depositor="Tool Mechanism")
    monkeypatch.setenv("PATH", str(tmp_path))  # no pdftotext there
    assert characterise(services).texts == {"tool-missing": 1}
    assert characterise(services).texts == {}  # still missing: nothing tried again
    monkeypatch.undo()
    assert characterise(services).texts == {"text": 1}
    with services.sessions() as session:
        row = session.execute(select(ExtractedText)).scalar_one()
        assert (row.outcome, row.tool[:10]) == ("text", "pdftotext ")
        assert PUBLIC_WORD in row.text
    assert characterise(services).texts == {}
