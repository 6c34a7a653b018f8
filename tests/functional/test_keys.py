"""`custos keys` on SQLite and PostgreSQL: a tier's key is made and split into shares that
leave the archive once (files 0600 in a new 0700 folder, or a terminal, one at a time); the
catalog keeps the recipient alone; any two shares open the key; new shares are made from
old ones; every refusal leaves nothing recorded, and no share, secret or identity is found
in the catalog, the data folder or what the commands print."""

from __future__ import annotations

import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyrage
from sqlalchemy import select as sql_select

from access.keys.shares import identity_text, recipient_of, recover
from archive.catalog.tables import Event, TierKey
from archive.config import load_settings
from archive.services import open_services
from tests.functional.test_cli import custos

WORDS = re.compile(r"^[a-z]+(?: [a-z]+){19,}$", re.M)


def _env(catalog_url: str) -> dict[str, str]:
    return {"CUSTOS_DATABASE_URL": catalog_url} if catalog_url else {}


def _shares(folder: Path) -> list[tuple[str, str]]:
    out = []
    for f in sorted(folder.iterdir()):
        words = [ln for ln in f.read_text().splitlines() if not ln.startswith("#")]
        out.append((f.name, " ".join(words)))
    return out


def _rows(data: Path, catalog_url: str) -> tuple[list[TierKey], list[Event]]:
    overrides = {"database_url": catalog_url} if catalog_url else {}
    services = open_services(load_settings(data_dir=data, environ={}, overrides=overrides))
    try:
        with services.sessions() as session:
            keys = list(session.execute(sql_select(TierKey)).scalars())
            events = list(
                session.execute(
                    sql_select(Event)
                    .where(Event.type.in_(["key administration", "key custody"]))
                    .order_by(Event.id)
                ).scalars()
            )
            session.expunge_all()
            return keys, events
    finally:
        services.close()


def _secret_forms(shares: list[tuple[str, str]]) -> list[bytes]:
    """Every form a leak of the key could take: the secret, its hex, the identity, each
    share's words."""
    secret = recover(shares[:2])
    return [
        secret,
        secret.hex().encode(),
        identity_text(secret).encode(),
        identity_text(secret).lower().encode(),
        *(words.encode() for _, words in shares),
    ]


def _files_holding(root: Path, forms: list[bytes], skip: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and skip not in path.parents:
            data = path.read_bytes()
            found += [f"{path}: {form[:12]!r}" for form in forms if form in data]
    return found


def test_init_hands_out_shares_once_and_keeps_only_the_recipient(
    tmp_path: Path, catalog_url: str
) -> None:
    data, out = tmp_path / "data", tmp_path / "shares"
    env = _env(catalog_url)
    code, body, stderr = custos(
        data,
        "keys", "init", "--tier", "protected-identity", "--shares", "5", "--threshold", "2",
        "--out-dir", str(out), "--json",
        env=env,
    )  # fmt: skip
    assert code == 0, stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"share-{n}-of-5.txt" for n in range(1, 6)]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    shares = _shares(out)
    assert body["recipient"] == recipient_of(recover([shares[1], shares[4]]))
    assert (body["shares"], body["threshold"]) == (5, 2)
    assert not WORDS.search(str(body)) and not WORDS.search(stderr)

    keys, events = _rows(data, catalog_url)
    assert [(k.tier, k.recipient, k.kind, k.shares, k.threshold) for k in keys] == [
        ("protected-identity", body["recipient"], "shares", 5, 2)
    ]
    assert keys[0].share_set == body["share_set"]
    (made,) = events
    assert made.type == "key administration"
    assert body["recipient"] in made.detail and "operator" in made.detail

    # Nothing of the key is anywhere in the data folder: catalog, storage, logs.
    assert _files_holding(data, _secret_forms(shares), skip=out) == []

    # The recipient encrypts; any two shares decrypt.
    sealed = pyrage.encrypt(b"x", [pyrage.x25519.Recipient.from_str(body["recipient"])])
    identity = pyrage.x25519.Identity.from_str(identity_text(recover([shares[0], shares[2]])))
    assert pyrage.decrypt(sealed, [identity]) == b"x"

    code, status, _ = custos(data, "keys", "status", "--json", env=env)
    assert code == 0
    (row,) = status["keys"]
    assert row["recipient"] == body["recipient"] and row["last_opened_at"] is None


def test_refusals_record_nothing(tmp_path: Path, catalog_url: str) -> None:
    data = tmp_path / "data"
    env = _env(catalog_url)
    full = tmp_path / "full"
    full.mkdir()
    (full / "other.txt").write_text("kept")
    for args, finding in [
        (["--tier", "public", "--out-dir", str(tmp_path / "a")], "KEY-TIER"),
        (["--threshold", "1", "--out-dir", str(tmp_path / "b")], "KEY-SHARES"),
        (["--shares", "2", "--threshold", "3", "--out-dir", str(tmp_path / "c")], "KEY-SHARES"),
        (["--out-dir", str(full)], "KEY-OUT-DIR"),
        ([], "KEY-NO-TERMINAL"),  # the test runner's output is no terminal
    ]:
        code, body, stderr = custos(data, "keys", "init", *args, "--json", env=env)
        assert code == 65, (args, stderr)
        assert body["findings"][0]["code"] == finding, args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "full"]
    assert [p.name for p in full.iterdir()] == ["other.txt"]
    assert _rows(data, catalog_url) == ([], [])


def test_a_second_key_for_a_tier_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert custos(data, "keys", "init", "--out-dir", str(tmp_path / "one"))[0] == 0
    code, body, _ = custos(data, "keys", "init", "--out-dir", str(tmp_path / "two"), "--json")
    assert code == 65 and body["findings"][0]["code"] == "KEY-EXISTS"
    assert not (tmp_path / "two").exists()
    assert len(_rows(data, "")[0]) == 1


def test_reshare_makes_a_new_set_and_custos_then_refuses_the_old_one(
    tmp_path: Path, catalog_url: str
) -> None:
    data, env = tmp_path / "data", _env(catalog_url)
    code, made, _ = custos(
        data, "keys", "init", "--out-dir", str(tmp_path / "old"), "--json", env=env
    )
    assert code == 0
    old = sorted((tmp_path / "old").iterdir())

    # Too few, or a file that is no share: refused, nothing written.
    code, body, _ = custos(
        data, "keys", "reshare", "--share-file", str(old[0]), "--out-dir", str(tmp_path / "x"),
        "--json", env=env,
    )  # fmt: skip
    assert code == 65 and body["findings"][0]["code"] == "KEY-SHARES-TOO-FEW"
    junk = tmp_path / "junk.txt"
    junk.write_text("not a share at all")
    code, body, _ = custos(
        data, "keys", "reshare", "--share-file", str(old[0]), "--share-file", str(junk),
        "--out-dir", str(tmp_path / "x"), "--json", env=env,
    )  # fmt: skip
    assert code == 65 and body["findings"][0]["code"] == "KEY-SHARE-INVALID"
    assert not (tmp_path / "x").exists()

    code, new, stderr = custos(
        data, "keys", "reshare", "--share-file", str(old[1]), "--share-file", str(old[3]),
        "--shares", "3", "--threshold", "2", "--out-dir", str(tmp_path / "new"), "--json",
        env=env,
    )  # fmt: skip
    assert code == 0, stderr
    assert new["recipient"] == made["recipient"] and new["share_set"] != made["share_set"]
    fresh = _shares(tmp_path / "new")
    assert len(fresh) == 3 and recipient_of(recover(fresh[1:])) == made["recipient"]

    code, body, _ = custos(
        data, "keys", "reshare", "--share-file", str(old[0]), "--share-file", str(old[2]),
        "--out-dir", str(tmp_path / "y"), "--json", env=env,
    )  # fmt: skip
    assert code == 65 and body["findings"][0]["code"] == "KEY-SHARE-SET"

    keys, events = _rows(data, catalog_url)
    assert (keys[0].shares, keys[0].threshold, keys[0].share_set) == (3, 2, new["share_set"])
    assert [e.type for e in events] == ["key administration"] * 2
    assert f"set {made['share_set']}" in events[1].detail
    forms = _secret_forms(_shares(tmp_path / "old"))
    assert all(form.decode(errors="replace") not in e.detail for e in events for form in forms)


def _terminal(args: list[str], answers: int) -> tuple[int, str]:
    """Run ``custos`` on a pseudo-terminal, pressing Enter ``answers`` times as it asks."""
    main, child = pty.openpty()
    custos_bin = Path(sys.executable).parent / "custos"
    proc = subprocess.Popen(
        [str(custos_bin), *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "CUSTOS_FSYNC": "false", "TERM": "xterm"},
        close_fds=True,
    )
    os.close(child)
    seen, pressed, deadline = b"", 0, time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            while pressed < answers and seen.count(b"press Enter") > pressed:
                os.write(main, b"\n")
                pressed += 1
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(main)
    return code, seen.decode(errors="replace")


def test_init_on_a_terminal_shows_one_share_at_a_time_and_clears_the_screen(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    code, screen = _terminal(
        ["--data-dir", str(data), "keys", "init", "--shares", "3", "--threshold", "2"], answers=6
    )
    assert code == 0, screen
    pages = screen.split("\x1b[3J\x1b[2J\x1b[H")
    shown = [m.group(0) for page in pages for m in [WORDS.search(page.replace("\r", ""))] if m]
    assert len(shown) == 3
    # Each share on a page of its own: no page shows two.
    assert all(len(WORDS.findall(page.replace("\r", ""))) <= 1 for page in pages)
    (key,), _ = _rows(data, "")
    assert recipient_of(recover([("a", shown[0]), ("c", shown[2])])) == key.recipient


def test_reshare_without_share_files_needs_a_terminal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert custos(data, "keys", "init", "--out-dir", str(tmp_path / "s"))[0] == 0
    code, body, _ = custos(data, "keys", "reshare", "--out-dir", str(tmp_path / "n"), "--json")
    assert code == 65 and body["findings"][0]["code"] == "KEY-NO-TERMINAL"


def test_add_recipient_escrows_the_tier_to_another_institutions_key(
    tmp_path: Path, catalog_url: str
) -> None:
    data, env = tmp_path / "data", _env(catalog_url)
    other = pyrage.x25519.Identity.generate()
    successor = str(other.to_public())
    args = ["keys", "add-recipient", "--recipient", successor, "--holder", "Successor Archive"]

    code, body, _ = custos(data, *args, "--json", env=env)  # no key of its own yet
    assert code == 4 and "custos keys init" in body["hint"]

    assert custos(data, "keys", "init", "--out-dir", str(tmp_path / "s"), env=env)[0] == 0
    code, body, stderr = custos(data, *args, "--json", env=env)
    assert code == 0, stderr
    assert (body["kind"], body["recipient"], body["holder"]) == (
        "escrow",
        successor,
        "Successor Archive",
    )
    code, body, _ = custos(data, *args, "--json", env=env)
    assert code == 65 and body["findings"][0]["code"] == "KEY-RECIPIENT-HELD"

    secret_text = str(other)
    for bad, finding in [
        (secret_text, "KEY-RECIPIENT"),
        ("age1notarecipient", "KEY-RECIPIENT"),
    ]:
        code, body, stderr = custos(
            data, "keys", "add-recipient", "--recipient", bad, "--holder", "X", "--json",
            env=env,
        )  # fmt: skip
        assert code == 65 and body["findings"][0]["code"] == finding
        assert secret_text not in str(body) + stderr  # a pasted secret key is never repeated
    code, body, _ = custos(
        data, "keys", "add-recipient", "--recipient", successor, "--holder", " ",
        "--json", env=env,
    )  # fmt: skip
    assert code == 65 and body["findings"][0]["code"] == "KEY-HOLDER"

    code, status, _ = custos(data, "keys", "status", "--json", env=env)
    assert [(k["kind"], k["holder"]) for k in status["keys"]] == [
        ("shares", ""),
        ("escrow", "Successor Archive"),
    ]
    keys, events = _rows(data, catalog_url)
    assert len(keys) == 2 and len(events) == 2
    assert "Successor Archive" in events[1].detail and successor in events[1].detail
    assert secret_text not in " ".join(e.detail for e in events)
    assert _files_holding(data, [secret_text.encode()], skip=tmp_path / "s") == []
