"""`custos audit verify` against a custody log tampered with directly in the database, on
SQLite and PostgreSQL: each way of tampering is named; a clean log passes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, create_engine, text

from archive.catalog.session import _alembic_config, make_engine
from archive.custody import entry_hash
from tests.conftest import SAMPLE
from tests.functional.test_cli import custos
from tests.helpers import make_bag

Tamper = Callable[[Connection], None]


class Log:
    """A data folder whose log has a sealed checkpoint, and entries after it."""

    def __init__(self, data: Path, url: str) -> None:
        self.data = data
        self.url = url or f"sqlite:///{data / 'catalog.sqlite3'}"
        self.env = {"CUSTOS_DATABASE_URL": url} if url else {}

    def cli(self, *args: str) -> tuple[int, Any, str]:
        return custos(self.data, *args, env=self.env)

    def audit(self) -> tuple[int, dict[str, Any]]:
        code, body, _ = self.cli("audit", "verify", "--json")
        return code, body

    def engine(self) -> Engine:
        return create_engine(self.url)

    def tamper(self, change: Tamper) -> None:
        engine = self.engine()
        try:
            with engine.begin() as conn:
                change(conn)
        finally:
            engine.dispose()


@pytest.fixture
def log(tmp_path: Path, catalog_url: str) -> Iterator[Log]:
    log = Log(tmp_path / "data", catalog_url)
    code, body, _ = log.cli("ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json")
    assert code == 0 and body["seal"]["status"] == "sealed"
    bag = make_bag(tmp_path / "bag", {"note.txt": b"after the checkpoint\n"})
    code, body, _ = log.cli(
        "ingest", str(bag), "--depositor", "T", "--new-depositor", "--no-seal", "--json"
    )
    assert code == 0
    yield log


def codes(body: dict[str, Any]) -> set[str]:
    return {p["code"] for p in body["problems"]}


def rows(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM events ORDER BY seq"))]


def links_of(conn: Connection, event_id: int) -> list[tuple[str, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in conn.execute(
            text("SELECT object_type, object_id, role FROM event_links WHERE event_id = :i"),
            {"i": event_id},
        )
    ]


def rehash(conn: Connection, row: dict[str, Any], prev: str) -> str:
    return entry_hash(
        chain=row["chain"],
        seq=row["seq"],
        prev=prev,
        uuid=row["uuid"],
        type_=row["type"],
        occurred_at=_aware(row["occurred_at"]),
        agent=row["agent"],
        outcome=row["outcome"],
        detail=row["detail"],
        package_id=row["package_id"],
        links=links_of(conn, row["id"]),
    )


def _aware(value: Any) -> Any:
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_a_clean_log_verifies(log: Log) -> None:
    code, body = log.audit()
    assert code == 0 and body["verified"] and body["problems"] == []
    assert body["entries"] == body["head"]["seq"] > 10
    assert body["checkpoints_sealed"] == 1
    assert 0 < body["unanchored_entries"] < body["entries"]
    # Sealing now anchors the rest; the log still verifies, with nothing left unanchored but
    # the seal's own entries.
    code, sealed, _ = log.cli("seal", "--json")
    assert code == 0 and any(s["package_id"] is None for s in sealed["sealed"])
    code, body = log.audit()
    assert code == 0 and body["checkpoints_sealed"] == 2
    assert body["unanchored_entries"] == body["head"]["seq"] - body["last_sealed"]["seq"]


def test_a_modified_entry(log: Log) -> None:
    log.tamper(lambda c: c.execute(text("UPDATE events SET detail = 'nothing' WHERE seq = 3")))
    code, body = log.audit()
    assert code == 3 and not body["verified"]
    assert codes(body) == {"log-altered"}
    assert "entry 3 " in body["problems"][0]["text"]


def test_a_modified_link(log: Log) -> None:
    log.tamper(
        lambda c: c.execute(
            text(
                "UPDATE event_links SET object_id = 'elsewhere' WHERE event_id = "
                "(SELECT id FROM events WHERE seq = 2)"
            )
        )
    )
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-altered"}


def test_a_deleted_entry(log: Log) -> None:
    def delete(conn: Connection) -> None:
        conn.execute(
            text("DELETE FROM event_links WHERE event_id = (SELECT id FROM events WHERE seq = 4)")
        )
        conn.execute(text("DELETE FROM events WHERE seq = 4"))

    log.tamper(delete)
    code, body = log.audit()
    assert code == 3 and "log-gap" in codes(body)
    assert any("entry 4 of the custody log is missing" in p["text"] for p in body["problems"])


def test_an_inserted_entry(log: Log) -> None:
    """An entry slipped in after entry 3, well formed, with every later number moved up."""

    def insert(conn: Connection) -> None:
        entries = rows(conn)
        for row in reversed(entries[3:]):  # make room at 4, highest first (unique numbers)
            conn.execute(text("UPDATE events SET seq = seq + 1 WHERE id = :i"), {"i": row["id"]})
        forged = dict(entries[2], seq=4, uuid="forged-entry", detail="a forged entry")
        forged["hash"] = entry_hash(
            chain=forged["chain"],
            seq=4,
            prev=entries[2]["hash"],
            uuid=forged["uuid"],
            type_=forged["type"],
            occurred_at=_aware(forged["occurred_at"]),
            agent=forged["agent"],
            outcome=forged["outcome"],
            detail=forged["detail"],
            package_id=forged["package_id"],
            links=[],
        )
        conn.execute(
            text(
                "INSERT INTO events (chain, seq, prev_hash, hash, uuid, type, occurred_at, "
                "agent, outcome, detail, package_id) VALUES (:chain, 4, :prev, :hash, :uuid, "
                ":type, :occurred_at, :agent, :outcome, :detail, :package_id)"
            ),
            dict(forged, prev=entries[2]["hash"]),
        )

    log.tamper(insert)
    code, body = log.audit()
    assert code == 3
    assert {"log-link", "log-altered"} <= codes(body)
    assert any("entry 5 " in p["text"] for p in body["problems"])


def test_reordered_entries(log: Log) -> None:
    def swap(conn: Connection) -> None:
        entries = rows(conn)
        a, b = entries[4], entries[5]
        conn.execute(text("UPDATE events SET seq = -1 WHERE id = :i"), {"i": a["id"]})
        conn.execute(
            text("UPDATE events SET seq = :s WHERE id = :i"), {"s": a["seq"], "i": b["id"]}
        )
        conn.execute(
            text("UPDATE events SET seq = :s WHERE id = :i"), {"s": b["seq"], "i": a["id"]}
        )

    log.tamper(swap)
    code, body = log.audit()
    assert code == 3 and {"log-link", "log-altered"} <= codes(body)


def test_a_rewritten_tail_is_caught_by_the_sealed_checkpoint(log: Log) -> None:
    """Entry 2 changed and every later hash recomputed, the head too: the chain is consistent
    again, but the sealed checkpoint still names the old hash."""

    def rewrite(conn: Connection) -> None:
        entries = rows(conn)
        prev = entries[0]["hash"]
        for row in entries[1:]:
            if row["seq"] == 2:
                row["detail"] = "a rewritten history"
            row["prev_hash"] = prev
            row["hash"] = rehash(conn, row, prev)
            conn.execute(
                text("UPDATE events SET detail = :d, prev_hash = :p, hash = :h WHERE id = :i"),
                {"d": row["detail"], "p": prev, "h": row["hash"], "i": row["id"]},
            )
            prev = row["hash"]
        conn.execute(text("UPDATE custody_head SET hash = :h"), {"h": prev})

    log.tamper(rewrite)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-rewritten"}
    assert "rewritten" in body["problems"][0]["text"]


def test_a_cut_tail_is_caught_by_the_sealed_checkpoint(log: Log) -> None:
    def cut(conn: Connection) -> None:
        entries = rows(conn)
        keep = entries[:3]
        gone = [r["id"] for r in entries[3:]]
        for i in gone:
            conn.execute(text("DELETE FROM event_links WHERE event_id = :i"), {"i": i})
            conn.execute(text("DELETE FROM events WHERE id = :i"), {"i": i})
        conn.execute(
            text("UPDATE custody_head SET seq = :s, hash = :h"),
            {"s": keep[-1]["seq"], "h": keep[-1]["hash"]},
        )

    log.tamper(cut)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-truncated"}


def test_a_removed_last_entry_is_caught_by_the_head(log: Log) -> None:
    def drop_last(conn: Connection) -> None:
        last = rows(conn)[-1]
        conn.execute(text("DELETE FROM event_links WHERE event_id = :i"), {"i": last["id"]})
        conn.execute(text("DELETE FROM events WHERE id = :i"), {"i": last["id"]})

    log.tamper(drop_last)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"head-mismatch"}


def test_a_damaged_checkpoint_seal(log: Log) -> None:
    folder = log.data / "storage" / "extensions" / "custos-custody-log"
    [record] = folder.rglob("*.ers")
    data = bytearray(record.read_bytes())
    data[-40] ^= 0x01
    record.write_bytes(bytes(data))
    code, body = log.audit()
    assert code == 3 and codes(body) == {"checkpoint-seal"}


def test_a_replaced_log_is_named(log: Log) -> None:
    """A log replaced wholesale (a new chain) leaves the sealed checkpoints unexplained."""

    def replace(conn: Connection) -> None:
        conn.execute(text("UPDATE events SET chain = 'forged-chain'"))
        conn.execute(text("UPDATE custody_head SET chain = 'forged-chain'"))

    log.tamper(replace)
    code, body = log.audit()
    assert code == 3 and "checkpoint-foreign-chain" in codes(body)


def test_a_rebuilt_catalog_restarts_the_log_and_says_so(tmp_path: Path) -> None:
    log = Log(tmp_path / "data", "")
    code, _, _ = log.cli("ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json")
    assert code == 0
    for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (log.data / name).unlink(missing_ok=True)
    code, report, _ = log.cli("catalog", "rebuild", "--json")
    assert code == 0 and len(report["earlier_custody_logs"]) == 1
    code, body = log.audit()
    assert code == 0 and body["verified"]
    assert any("earlier custody log" in n for n in body["notes"])
    code, again, _ = log.cli("catalog", "rebuild", "--json")
    assert code == 0 and again["earlier_custody_logs"] == []  # said once only


def test_an_existing_catalog_gets_its_log_chained_on_upgrade(
    tmp_path: Path, catalog_url: str
) -> None:
    """Events recorded before the log was chained are chained, in order, by the upgrade."""
    url = catalog_url or f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}"
    (tmp_path / "data").mkdir()
    engine = make_engine(url)
    try:
        command.upgrade(_alembic_config(engine), "0002")
        with engine.begin() as conn:
            for n in range(3):
                conn.execute(
                    text(
                        "INSERT INTO events (uuid, type, occurred_at, agent, outcome, detail) "
                        "VALUES (:u, 'validation', :t, 'Custos', 'failure', :d)"
                    ),
                    {"u": f"old-{n}", "t": f"2026-01-0{n + 1}T10:00:00+00:00", "d": f"#{n}"},
                )
            conn.execute(
                text(
                    "INSERT INTO event_links (event_id, object_type, object_id, role) "
                    "SELECT id, 'source', 'refused.zip', '' FROM events WHERE uuid = 'old-1'"
                )
            )
    finally:
        engine.dispose()
    log = Log(tmp_path / "data", catalog_url)
    code, body = log.audit()
    assert code == 0 and body["entries"] == 3 and body["head"]["seq"] == 3
    code, body, _ = log.cli("ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json")
    assert code == 0
    code, body = log.audit()
    assert code == 0 and body["entries"] > 3
