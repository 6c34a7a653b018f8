"""`custos keys rotate`, on SQLite and PostgreSQL: a tier's key replaced, every encrypted copy
re-wrapped to the new key as a new version with its encrypted contents unchanged, Debian's
age opening it with the new key; the old versions keep the old wrapping; new deposits go to
the new key; Custos refuses the old shares. Killed between two packages, the rotation leaves
every copy readable with one of the two keys, and `--resume` with the retired key's shares
finishes it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest
from sqlalchemy import select

from access.keys.shares import identity_text, recover
from archive.catalog.index import sealed_files
from archive.catalog.tables import Event, File, Package, TierKey
from archive.config import load_settings
from archive.services import Services, open_services
from tests.crash import kill_at
from tests.functional.test_cli import custos
from tests.helpers import make_bag

STATEMENTS = {n: f"statement {n} of a protected witness\n".encode() * (300 + n) for n in range(3)}


def _env(catalog_url: str) -> dict[str, str]:
    return {"CUSTOS_DATABASE_URL": catalog_url} if catalog_url else {}


def _shares(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def _words(path: Path) -> str:
    return " ".join(ln for ln in path.read_text().splitlines() if not ln.startswith("#"))


def _identity(folder: Path) -> pyrage.x25519.Identity:
    a, b = _shares(folder)[:2]
    return pyrage.x25519.Identity.from_str(
        identity_text(recover([("a", _words(a)), ("b", _words(b))]))
    )


def _deposit(data: Path, tmp: Path, n: int, env: dict[str, str]) -> str:
    bag = make_bag(
        tmp / f"bag-{n}",
        {f"testimonies/statement-{n}.txt": STATEMENTS[n]},
        info={"Access-Tier": "protected-identity", "Access-Legal-Basis": "Order 12/2019"},
    )
    code, body, stderr = custos(
        data, "ingest", str(bag), "--depositor", "Mechanism", "--new-depositor", "--json",
        "--no-identify", env=env,
    )  # fmt: skip
    assert code == 0, stderr
    return str(body["package_id"])


def _open(data: Path, catalog_url: str) -> Services:
    overrides = {"database_url": catalog_url} if catalog_url else {}
    return open_services(load_settings(data_dir=data, environ={}, overrides=overrides))


def _head_copies(services: Services) -> dict[str, bytes]:
    """Each package's encrypted copy in its head version, as stored."""
    out = {}
    with services.sessions() as session:
        for pkg in session.execute(select(Package)).scalars():
            obj = services.primary.object(pkg.object_path)
            state = obj.inventory()["versions"][obj.inventory()["head"]]["state"]
            for paths in state.values():
                for logical in paths:
                    if logical.startswith(("bag/data/testimonies/", "bag/data/sealed/")):
                        row = session.execute(
                            select(File)
                            .where(File.package_id == pkg.id, File.logical_path == logical)
                            .order_by(File.version.desc())
                            .limit(1)
                        ).scalar_one()
                        out[logical] = obj.read_bytes(row.content_path)
    return out


def _statement(copy: bytes, identity: pyrage.x25519.Identity) -> int:
    """Which statement ``copy`` holds (stored under a sealed name, it is known by its bytes)."""
    plain = _plain(copy, identity)
    (n,) = [n for n, text in STATEMENTS.items() if text == plain]
    return n


def _sealed_count(services: Services) -> int:
    with services.sessions() as session:
        rows = session.execute(select(File).where(File.sealed_tier.is_not(None))).scalars()
        return len(list(rows))


def _plain(copy: bytes, identity: pyrage.x25519.Identity) -> bytes | None:
    try:
        return bytes(pyrage.decrypt(copy, [identity]))
    except pyrage.DecryptError:
        return None


def test_rotate_rewraps_every_copy_to_the_new_key(tmp_path: Path, catalog_url: str) -> None:
    data, env = tmp_path / "data", _env(catalog_url)
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    assert custos(data, "keys", "init", "--shares", "3", "--out-dir", str(old_dir), env=env)[0] == 0
    for n in (0, 1):
        _deposit(data, tmp_path, n, env)
    services = _open(data, catalog_url)
    try:
        before = _head_copies(services)
        # Each package: its testimony, the bag's tag files, its bag-info and names map.
        sealed_before = _sealed_count(services)
        assert sealed_before > 2
    finally:
        services.close()
    old_identity = _identity(old_dir)

    a, b, _ = _shares(old_dir)
    code, body, stderr = custos(
        data, "keys", "rotate", "--share-file", str(a), "--share-file", str(b),
        "--shares", "3", "--threshold", "2", "--out-dir", str(new_dir), "--json", env=env,
    )  # fmt: skip
    assert code == 0, stderr
    assert (body["packages_rewrapped"], body["copies_rewrapped"]) == (2, sealed_before)
    new_identity = _identity(new_dir)

    services = _open(data, catalog_url)
    try:
        after = _head_copies(services)
        assert sorted(after) == sorted(before)
        for logical, copy in after.items():
            n = _statement(copy, new_identity)
            assert _plain(copy, old_identity) is None
            # Only the header changed: the encrypted contents are the same bytes.
            old_payload = before[logical].split(b"\n---", 1)[1].split(b"\n", 1)[1]
            assert copy.endswith(old_payload) and copy != before[logical]
            assert _plain(before[logical], old_identity) == STATEMENTS[n]  # the old version
        with services.sessions() as session:
            keys = list(session.execute(select(TierKey).order_by(TierKey.id)).scalars())
            assert [k.retired_at is not None for k in keys] == [True, False]
            assert keys[1].recipient == body["recipient"]
            rows = list(
                session.execute(select(File).where(File.sealed_tier.is_not(None))).scalars()
            )
            assert len(rows) == 2 * sealed_before  # each: the original and the re-wrapped
            plain = {(r.logical_path, r.plain_sha512) for r in rows}
            assert len(plain) == sealed_before
            events = session.execute(
                select(Event.detail).where(Event.type == "encryption").order_by(Event.id)
            ).scalars()
            assert sum("re-wrapped" in d for d in events) == 2
        obj_path = None
        with services.sessions() as session:
            obj_path = session.execute(select(Package.object_path).limit(1)).scalar_one()
        listed = sealed_files(services.primary.object(obj_path))
        assert {e["recipients"][0] for e in listed.values()} == {
            keys[0].recipient,
            keys[1].recipient,
        }
    finally:
        services.close()

    # Debian's age opens a re-wrapped copy with the new key.
    assert shutil.which("age"), "Debian's age is absent: `make test` installs it"
    key = tmp_path / "new-identity.txt"
    key.write_text(str(new_identity) + "\n")
    copy = tmp_path / "copy.age"
    copy.write_bytes(next(iter(after.values())))
    opened = subprocess.run(["age", "-d", "-i", str(key), str(copy)], capture_output=True)
    assert opened.returncode == 0 and opened.stdout in STATEMENTS.values()

    # A new deposit goes to the new key; the old shares no longer count.
    _deposit(data, tmp_path, 2, env)
    services = _open(data, catalog_url)
    try:
        copies = _head_copies(services)
        assert 2 in {
            _statement(c, new_identity) for c in copies.values() if _plain(c, new_identity)
        }
    finally:
        services.close()
    code, refused, _ = custos(
        data, "keys", "reshare", "--share-file", str(a), "--share-file", str(b),
        "--out-dir", str(tmp_path / "x"), "--json", env=env,
    )  # fmt: skip
    assert code == 65 and refused["findings"][0]["code"] == "KEY-SHARE-SET"


def test_a_rotation_killed_between_packages_is_finished_by_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    assert custos(data, "keys", "init", "--shares", "3", "--out-dir", str(old_dir))[0] == 0
    for n in range(3):
        _deposit(data, tmp_path, n, {})
    a, b, c = _shares(old_dir)
    killed = subprocess.run(
        [
            str(Path(sys.executable).parent / "custos"), "--data-dir", str(data), "keys",
            "rotate", "--share-file", str(a), "--share-file", str(b), "--shares", "3",
            "--threshold", "2", "--out-dir", str(new_dir),
        ],
        env=kill_at("rewrapped:1", {**_base_env(), "CUSTOS_FSYNC": "false"}),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    old_identity, new_identity = _identity(old_dir), _identity(new_dir)

    services = _open(data, "")
    try:
        copies = _head_copies(services)
    finally:
        services.close()
    opened_by = [
        (_plain(copy, old_identity) is not None, _plain(copy, new_identity) is not None)
        for copy in copies.values()
    ]
    assert sorted(opened_by) == [(False, True), (True, False), (True, False)]  # none unreadable

    # --resume takes the retired key's shares (any two), and skips what was done.
    code, body, stderr = custos(
        data, "keys", "rotate", "--resume", "--share-file", str(b), "--share-file", str(c),
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert body["packages_rewrapped"] == 2 and body["copies_rewrapped"] > 2
    services = _open(data, "")
    try:
        held = {_statement(copy, new_identity) for copy in _head_copies(services).values()}
        assert held == {0, 1, 2}
    finally:
        services.close()
    code, body, _ = custos(
        data, "keys", "rotate", "--resume", "--share-file", str(b), "--share-file", str(c),
        "--json",
    )  # fmt: skip
    assert code == 0 and body["packages_rewrapped"] == 0  # nothing left


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CUSTOS_")}


@pytest.mark.parametrize("resume", [False, True])
def test_rotate_refuses_shares_that_do_not_open_the_key(tmp_path: Path, resume: bool) -> None:
    data = tmp_path / "data"
    assert custos(data, "keys", "init", "--shares", "3", "--out-dir", str(tmp_path / "s"))[0] == 0
    other = tmp_path / "other"
    assert custos(tmp_path / "elsewhere", "keys", "init", "--out-dir", str(other))[0] == 0
    x, y = _shares(other)[:2]
    args = ["--resume"] if resume else ["--out-dir", str(tmp_path / "n")]
    code, body, _ = custos(
        data, "keys", "rotate", *args, "--share-file", str(x), "--share-file", str(y), "--json"
    )
    assert code in (4, 65), body
    if resume:
        assert "never rotated" in body["message"]
    else:
        assert body["findings"][0]["code"] == "KEY-SHARE-SET"
        assert not (tmp_path / "n").exists()


def test_encrypt_existing_stores_plain_protected_copies_again_encrypted(
    tmp_path: Path, catalog_url: str
) -> None:
    data, env = tmp_path / "data", _env(catalog_url)
    for n in (0, 1):  # deposited before the tier had a key: stored plain
        _deposit(data, tmp_path, n, env)
    code, body, _ = custos(data, "keys", "encrypt-existing", "--json", env=env)
    assert code == 4 and "custos keys init" in body["hint"]  # no key: nothing to encrypt to

    assert (
        custos(data, "keys", "init", "--shares", "3", "--out-dir", str(tmp_path / "s"), env=env)[0]
        == 0
    )
    identity = _identity(tmp_path / "s")
    code, body, stderr = custos(data, "keys", "encrypt-existing", "--json", env=env)
    assert code == 0, stderr
    assert (body["packages"], body["copies"]) == (2, 2)

    services = _open(data, catalog_url)
    try:
        for logical, copy in _head_copies(services).items():
            n = int(logical.rsplit("-", 1)[1].split(".")[0])
            assert STATEMENTS[n] not in copy
            assert _plain(copy, identity) == STATEMENTS[n]
        with services.sessions() as session:
            rows = list(
                session.execute(select(File).where(File.sealed_tier.is_not(None))).scalars()
            )
            assert len(rows) == 2
            for r in rows:
                n = int(r.logical_path.rsplit("-", 1)[1].split(".")[0])
                assert r.plain_size == len(STATEMENTS[n]) and r.version == 2
            details = list(
                session.execute(select(Event.detail).where(Event.type == "encryption")).scalars()
            )
            assert len(details) == 2 and all("keep the plain copies" in d for d in details)
    finally:
        services.close()
    code, again, _ = custos(data, "keys", "encrypt-existing", "--json", env=env)
    assert code == 0 and (again["packages"], again["copies"]) == (0, 0)  # nothing left
