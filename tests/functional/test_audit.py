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
from archive.custody import event_hash, log_entry_hash, merkle_root
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


def entries(conn: Connection) -> list[dict[str, Any]]:
    """The log's entries (format 2), in order."""
    return [
        dict(r._mapping) for r in conn.execute(text("SELECT * FROM custody_entries ORDER BY seq"))
    ]


def events_of(conn: Connection, entry_id: int) -> list[dict[str, Any]]:
    return [
        dict(r._mapping)
        for r in conn.execute(
            text("SELECT * FROM events WHERE entry_id = :e ORDER BY pos"), {"e": entry_id}
        )
    ]


def links_of(conn: Connection, event_id: int) -> list[tuple[str, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in conn.execute(
            text("SELECT object_type, object_id, role FROM event_links WHERE event_id = :i"),
            {"i": event_id},
        )
    ]


def own_hash(conn: Connection, row: dict[str, Any]) -> str:
    return event_hash(
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


def a_big_entry(conn: Connection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An entry of the first deposit with several events, and its events."""
    for entry in entries(conn):
        held = events_of(conn, entry["id"])
        if len(held) >= 3:
            return entry, held
    raise AssertionError("no entry of three events or more")


def delete_entry(conn: Connection, entry_id: int) -> None:
    for event in events_of(conn, entry_id):
        conn.execute(text("DELETE FROM event_links WHERE event_id = :i"), {"i": event["id"]})
    conn.execute(text("DELETE FROM events WHERE entry_id = :e"), {"e": entry_id})
    conn.execute(text("DELETE FROM custody_entries WHERE id = :e"), {"e": entry_id})


def test_a_clean_log_verifies(log: Log) -> None:
    code, body = log.audit()
    assert code == 0 and body["verified"] and body["problems"] == []
    assert body["entries"] == body["head"]["seq"] > 5 and body["events"] > body["entries"]
    assert body["checkpoints_sealed"] == 1
    assert 0 < body["unanchored_entries"] < body["entries"]
    # Sealing now anchors the rest; the log still verifies, with nothing left unanchored but
    # the seal's own entries.
    code, sealed, _ = log.cli("seal", "--json")
    assert code == 0 and any(s["package_id"] is None for s in sealed["sealed"])
    code, body = log.audit()
    assert code == 0 and body["checkpoints_sealed"] == 2
    assert body["unanchored_entries"] == body["head"]["seq"] - body["last_sealed"]["seq"]


def test_a_modified_event(log: Log) -> None:
    def modify(conn: Connection) -> None:
        _, held = a_big_entry(conn)
        conn.execute(
            text("UPDATE events SET detail = 'nothing' WHERE id = :i"), {"i": held[1]["id"]}
        )

    log.tamper(modify)
    code, body = log.audit()
    assert code == 3 and not body["verified"]
    assert codes(body) == {"log-altered"}
    assert body["problems"][0]["text"].startswith("event 2 of entry ")


def test_a_modified_event_with_its_hash_rewritten(log: Log) -> None:
    """The event's own hash made to match its new content: the entry's root no longer does."""

    def modify(conn: Connection) -> None:
        _, held = a_big_entry(conn)
        row = dict(held[0], detail="a rewritten detail")
        conn.execute(
            text("UPDATE events SET detail = :d, hash = :h WHERE id = :i"),
            {"d": row["detail"], "h": own_hash(conn, row), "i": row["id"]},
        )

    log.tamper(modify)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-altered"}
    assert "Merkle root" in body["problems"][0]["text"]


def test_a_modified_link(log: Log) -> None:
    def modify(conn: Connection) -> None:
        linked = conn.execute(
            text("SELECT min(event_id) FROM event_links WHERE object_type = 'package'")
        ).scalar()
        conn.execute(
            text("UPDATE event_links SET object_id = 'elsewhere' WHERE event_id = :i"),
            {"i": linked},
        )

    log.tamper(modify)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-altered"}


def test_a_deleted_event(log: Log) -> None:
    def delete(conn: Connection) -> None:
        _, held = a_big_entry(conn)
        conn.execute(text("DELETE FROM event_links WHERE event_id = :i"), {"i": held[1]["id"]})
        conn.execute(text("DELETE FROM events WHERE id = :i"), {"i": held[1]["id"]})

    log.tamper(delete)
    code, body = log.audit()
    assert code == 3 and "log-gap" in codes(body)
    assert any(p["text"].startswith("event 2 of entry ") for p in body["problems"])


def test_an_event_added_to_an_entry(log: Log) -> None:
    def add(conn: Connection) -> None:
        _, held = a_big_entry(conn)
        forged = dict(held[-1], uuid="forged-event", detail="a forged event", id=None)
        forged["pos"] = len(held)
        forged["hash"] = own_hash(conn, forged)
        conn.execute(
            text(
                "INSERT INTO events (entry_id, pos, hash, uuid, type, occurred_at, agent, "
                "outcome, detail, package_id) VALUES (:entry_id, :pos, :hash, :uuid, :type, "
                ":occurred_at, :agent, :outcome, :detail, :package_id)"
            ),
            forged,
        )

    log.tamper(add)
    code, body = log.audit()
    assert code == 3 and "log-link" in codes(body)
    assert any("events were added to it" in p["text"] for p in body["problems"])


def test_events_moved_within_an_entry(log: Log) -> None:
    def swap(conn: Connection) -> None:
        _, held = a_big_entry(conn)
        a, b = held[0], held[1]
        conn.execute(text("UPDATE events SET pos = -1 WHERE id = :i"), {"i": a["id"]})
        conn.execute(
            text("UPDATE events SET pos = :p WHERE id = :i"), {"p": a["pos"], "i": b["id"]}
        )
        conn.execute(
            text("UPDATE events SET pos = :p WHERE id = :i"), {"p": b["pos"], "i": a["id"]}
        )

    log.tamper(swap)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-altered"}
    assert "Merkle root" in body["problems"][0]["text"]


def test_an_event_outside_every_entry(log: Log) -> None:
    def add(conn: Connection) -> None:
        _, held = a_big_entry(conn)
        conn.execute(
            text(
                "INSERT INTO events (hash, uuid, type, occurred_at, agent, outcome, detail) "
                "VALUES (:h, 'stray', 'ingestion', :t, 'Custos', 'success', 'stray')"
            ),
            {"h": held[0]["hash"], "t": held[0]["occurred_at"]},
        )

    log.tamper(add)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-stray"}
    assert "1 event(s) in the catalog belong to no entry" in body["problems"][0]["text"]


def test_a_deleted_entry(log: Log) -> None:
    log.tamper(lambda c: delete_entry(c, entries(c)[3]["id"]))
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-gap"}
    assert any("entry 4 of the custody log is missing" in p["text"] for p in body["problems"])


def test_an_inserted_entry(log: Log) -> None:
    """An entry slipped in after entry 3, well formed, with every later number moved up."""

    def insert(conn: Connection) -> None:
        held = entries(conn)
        for row in reversed(held[3:]):  # make room at 4, highest first (unique numbers)
            conn.execute(
                text("UPDATE custody_entries SET seq = seq + 1 WHERE id = :i"), {"i": row["id"]}
            )
        root = merkle_root([])
        forged = log_entry_hash(
            chain=held[2]["chain"], seq=4, prev=held[2]["hash"], root=root, events=0
        )
        conn.execute(
            text(
                "INSERT INTO custody_entries (chain, seq, prev_hash, hash, root, events) "
                "VALUES (:c, 4, :p, :h, :r, 0)"
            ),
            {"c": held[2]["chain"], "p": held[2]["hash"], "h": forged, "r": root},
        )

    log.tamper(insert)
    code, body = log.audit()
    assert code == 3
    assert {"log-link", "log-altered"} <= codes(body)
    assert any("entry 5 " in p["text"] for p in body["problems"])


def test_reordered_entries(log: Log) -> None:
    def swap(conn: Connection) -> None:
        held = entries(conn)
        a, b = held[4], held[5]
        conn.execute(text("UPDATE custody_entries SET seq = -1 WHERE id = :i"), {"i": a["id"]})
        conn.execute(
            text("UPDATE custody_entries SET seq = :s WHERE id = :i"),
            {"s": a["seq"], "i": b["id"]},
        )
        conn.execute(
            text("UPDATE custody_entries SET seq = :s WHERE id = :i"),
            {"s": b["seq"], "i": a["id"]},
        )

    log.tamper(swap)
    code, body = log.audit()
    assert code == 3 and {"log-link", "log-altered"} <= codes(body)


def test_a_rewritten_tail_is_caught_by_the_sealed_checkpoint(log: Log) -> None:
    """An event of entry 2 changed, its hash, the entry's root and every later entry's hash
    recomputed, the head too: the log is consistent again, but the sealed checkpoint still
    names the old hash."""

    def rewrite(conn: Connection) -> None:
        held = entries(conn)
        prev = held[0]["hash"]
        for entry in held[1:]:
            if entry["seq"] == 2:
                events = events_of(conn, entry["id"])
                first = dict(events[0], detail="a rewritten history")
                first["hash"] = own_hash(conn, first)
                conn.execute(
                    text("UPDATE events SET detail = :d, hash = :h WHERE id = :i"),
                    {"d": first["detail"], "h": first["hash"], "i": first["id"]},
                )
                entry["root"] = merkle_root([first["hash"], *(e["hash"] for e in events[1:])])
            digest = log_entry_hash(
                chain=entry["chain"],
                seq=entry["seq"],
                prev=prev,
                root=entry["root"],
                events=entry["events"],
            )
            conn.execute(
                text(
                    "UPDATE custody_entries SET root = :r, prev_hash = :p, hash = :h WHERE id = :i"
                ),
                {"r": entry["root"], "p": prev, "h": digest, "i": entry["id"]},
            )
            prev = digest
        conn.execute(text("UPDATE custody_head SET hash = :h"), {"h": prev})

    log.tamper(rewrite)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-rewritten"}
    assert "rewritten" in body["problems"][0]["text"]


def test_a_cut_tail_is_caught_by_the_sealed_checkpoint(log: Log) -> None:
    def cut(conn: Connection) -> None:
        held = entries(conn)  # the sealed checkpoint names entry 3
        for entry in held[2:]:
            delete_entry(conn, entry["id"])
        conn.execute(
            text("UPDATE custody_head SET seq = :s, hash = :h"),
            {"s": held[1]["seq"], "h": held[1]["hash"]},
        )

    log.tamper(cut)
    code, body = log.audit()
    assert code == 3 and codes(body) == {"log-truncated"}


def test_a_removed_last_entry_is_caught_by_the_head(log: Log) -> None:
    log.tamper(lambda c: delete_entry(c, entries(c)[-1]["id"]))
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
        conn.execute(text("UPDATE custody_entries SET chain = 'forged-chain'"))
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
