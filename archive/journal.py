"""Crash-safe commit of new objects: a journal per deposit in staging, and start-up recovery.

The order is fixed: build the object in ``staging/<deposit>/object``; write the journal as
``ready``; rename the object into the storage root; index it in the catalog and commit; remove
the staging folder. A process killed at any point leaves either nothing visible (the staging
folder is rolled back at the next start) or a complete object that recovery indexes, so no
partial package is ever visible. Each live ingest holds an exclusive lock on its staging folder,
so recovery never touches work that another process is still doing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from archive import clock, installs, outbox
from archive.catalog.queries import deposit_by_fingerprint
from archive.catalog.tables import Package
from archive.custody import new_event, record_events
from archive.errors import StorageError
from archive.model import Link
from archive.storage import ocfl
from archive.storage.local import LocalStore
from archive.storage.ocfl import complete_pending_version, object_rel_path
from archive.storage.primary import Primary, StoredObject

JOURNAL = "journal.json"
LOCK = ".lock"
RECEIVING = "receiving"
READY = "ready"


@dataclass
class Journal:
    """The journal of one deposit in progress, holding its staging lock while open."""

    folder: Path
    data: dict[str, Any]
    _lock_fd: int

    @classmethod
    def begin(cls, store: LocalStore, name: str, **fields: Any) -> Journal:
        """Create ``staging/<name>`` with its journal, and lock it for this process."""
        return cls.begin_in(store.staging, name, **fields)

    @classmethod
    def begin_in(cls, staging: Path, name: str, **fields: Any) -> Journal:
        """Create ``<staging>/<name>``, locked by this process from the moment it is visible
        under that name, then write its journal (``kind`` defaults to a deposit)."""
        folder, fd = _claim(staging, name)
        journal = cls(folder, {"kind": "deposit", "state": RECEIVING, **fields}, fd)
        try:
            journal.write()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            journal.close()
            raise
        return journal

    @property
    def object_dir(self) -> Path:
        return self.folder / "object"

    def write(self) -> None:
        tmp = self.folder / (JOURNAL + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.folder / JOURNAL)

    def mark_ready(self, object_id: str) -> None:
        self.data.update(state=READY, object_id=object_id)
        self.write()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


#: A folder is made under this prefix, locked, then renamed to its name: so every folder
#: recovery sees under a plain name was locked by its creator from the start, and a free lock
#: means its creator is gone, however long it has been working (a multi-GB upload).
CREATING = ".creating-"

#: A ``.creating-`` folder younger than this may still be between its mkdir and its lock;
#: older ones (the creator was killed within those few instructions) are empty debris.
CREATION_GRACE_SECONDS = 60.0


def _claim(staging: Path, name: str) -> tuple[Path, int]:
    staging.mkdir(parents=True, exist_ok=True)
    final = staging / name
    if final.exists():
        raise FileExistsError(f"staging folder {final} already exists")
    creating = staging / f"{CREATING}{name}"
    creating.mkdir()
    fd = os.open(creating / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        creating.rename(final)  # the lock follows the open file, not its path
    except BaseException:
        os.close(fd)
        shutil.rmtree(creating, ignore_errors=True)
        raise
    return final, fd


@contextlib.contextmanager
def scratch(staging: Path, prefix: str) -> Iterator[Path]:
    """A locked scratch folder in staging for the duration of the block, removed after it
    (recovery removes it too if this process is killed)."""
    journal = Journal.begin_in(staging, f"{prefix}{uuid.uuid4().hex}", kind="scratch")
    try:
        yield journal.folder
    finally:
        shutil.rmtree(journal.folder, ignore_errors=True)
        journal.close()


def _abandoned_creation(folder: Path) -> bool:
    """A ``.creating-`` folder whose creator died before naming it."""
    try:
        return clock.epoch() - folder.stat().st_mtime >= CREATION_GRACE_SECONDS
    except OSError:
        return False  # vanished meanwhile: it was named, or someone removed it


def _try_lock(folder: Path) -> int | None:
    try:
        fd = os.open(folder / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def recover(
    primary: Primary,
    session_scope: Callable[[], contextlib.AbstractContextManager[Session]],
    lock: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> list[str]:
    """Roll back or complete every interrupted ingest; return one line per action taken.
    ``lock``: the commit lock (a deposit is completed under it, as an ingest commits)."""
    store = primary.store
    actions: list[str] = []
    if not store.staging.is_dir():
        return actions
    for folder in sorted(p for p in store.staging.iterdir() if p.is_dir()):
        if folder.name.startswith(CREATING):
            if _abandoned_creation(folder) and (fd := _try_lock(folder)) is not None:
                shutil.rmtree(folder, ignore_errors=True)
                os.close(fd)
                actions.append("removed a staging folder whose creator stopped before using it")
            continue
        fd = _try_lock(folder)
        if fd is None:
            continue  # a live process owns it
        try:
            actions.append(_recover_one(primary, session_scope, lock, folder))
        finally:
            os.close(fd)
    return actions


def _recover_one(
    primary: Primary,
    session_scope: Callable[[], contextlib.AbstractContextManager[Session]],
    lock: Callable[[], contextlib.AbstractContextManager[Any]],
    folder: Path,
) -> str:
    store = primary.store
    try:
        data = json.loads((folder / JOURNAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if data.get("state") != READY:
        store.discard(folder)
        if data.get("kind") in {"upload", "scratch"}:
            # Nothing of it reached the archive: an unfinished upload was never a deposit.
            return f"removed the {data['kind']} folder of a process that stopped ({folder.name})"
        if data.get("kind") == "version":
            what = f"an interrupted write of version {data.get('number')} was rolled back"
            links = [Link("package", str(data.get("object_id", "")))]
        elif data.get("kind") == "migration":
            what = "an interrupted format migration was rolled back; none of its outputs was stored"
            links = [Link("package", str(data.get("package_id", "")))]
        else:
            what = "an interrupted ingest was rolled back before anything was stored"
            links = [
                Link("deposit", str(data.get("deposit_id", folder.name))),
                Link("source", str(data.get("source", ""))),
            ]
        with session_scope() as session:
            record_events(session, [new_event("recovery", "success", what, links=links)])
        return what
    # Indexing reads the proofs in the object (asn1crypto, cryptography): loaded only by a
    # recovery, not by every command that opens the archive.
    from archive.catalog.index import index_object

    deposit_id = str(data.get("deposit_id", folder.name))
    object_id = str(data["object_id"])
    if data.get("kind") == "version":
        with lock():  # as a version is written: under the commit lock
            return _recover_version(primary, session_scope, folder, data)
    staged = folder / "object"
    installed = primary.has_object(object_id)
    if not installed and not staged.is_dir():
        raise StorageError(
            f"journal of deposit {deposit_id} is ready but its object is neither in staging "
            f"nor in the storage root",
            hint=f"inspect {folder} by hand; nothing has been removed",
        )
    rel = object_rel_path(object_id)
    meta = json.loads(
        _deposit_json(primary.object(rel)) if installed else _staged_deposit_json(staged)
    )
    # Under the commit lock, as an ingest commits: the same payload may have been deposited
    # meanwhile (on another host, or here after the crash), and it is then already held.
    with lock():
        with session_scope() as session:
            held = deposit_by_fingerprint(session, str(meta["fingerprint"]))
        if held is not None and held[1] != object_id:
            return _already_held(primary, session_scope, folder, data, installed, held)
        if not installed:
            rel = primary.install(staged, object_id)
        with session_scope() as session:
            installs.done(session, object_id)
            if session.get(Package, object_id) is None:
                index_object(session, primary.object(rel))
                # The work the stopped ingest would have queued with its commit.
                outbox.add(session, outbox.CHARACTERISE, object_id)
                outbox.add_for_new_version(session, object_id)
                record_events(
                    session,
                    [
                        new_event(
                            "recovery",
                            "success",
                            "an interrupted ingest was completed from its staged object",
                            links=[Link("package", object_id), Link("deposit", deposit_id)],
                        )
                    ],
                    package_id=object_id,
                )
    primary.store.discard(folder)
    return f"completed interrupted deposit {deposit_id} as package {object_id}"


def _deposit_json(obj: StoredObject) -> bytes:
    from archive.catalog.index import DEPOSIT_JSON

    return obj.read_bytes(ocfl.head_state(obj.inventory())[DEPOSIT_JSON])


def _staged_deposit_json(staged: Path) -> bytes:
    from archive.catalog.index import DEPOSIT_JSON

    return (staged / ocfl.head_state(ocfl.read_inventory(staged))[DEPOSIT_JSON]).read_bytes()


def _already_held(
    primary: Primary,
    session_scope: Callable[[], contextlib.AbstractContextManager[Session]],
    folder: Path,
    data: dict[str, Any],
    installed: bool,
    held: tuple[str, str],
) -> str:
    """An interrupted deposit whose payload the archive holds already (the same bag deposited
    meanwhile): its copy is removed, not stored twice, and the deposit ends as a duplicate."""
    deposit_id, object_id = str(data.get("deposit_id", folder.name)), str(data["object_id"])
    kept = primary.remove_orphan(object_id) if installed else 0
    with session_scope() as session:
        installs.done(session, object_id)
    what = (
        f"an interrupted deposit held the same payload as deposit {held[0]} (package "
        f"{held[1]}), stored meanwhile: nothing was stored twice"
    )
    if installed:
        what += (
            f"; its copy in the storage root was removed ({kept} file(s) stay, hidden, "
            "until their Object Lock retention ends)"
            if kept
            else "; its copy in the storage root was removed"
        )
    with session_scope() as session:
        record_events(
            session,
            [
                new_event(
                    "recovery",
                    "warning",
                    what,
                    links=[Link("package", held[1]), Link("deposit", deposit_id)],
                )
            ],
            package_id=held[1],
        )
    primary.store.discard(folder)
    return what


def recover_installs(
    primary: Primary,
    session_scope: Callable[[], contextlib.AbstractContextManager[Session]],
    try_lock: Callable[[], contextlib.AbstractContextManager[bool]],
) -> list[str]:
    """Finish the installs no live process is committing, whichever host began them (see
    :mod:`archive.installs`); return one line per action. ``try_lock`` takes the commit lock
    without waiting (yielding whether it got it): while anyone holds it, rows may be live,
    and they are left for a later start."""
    with session_scope() as session:
        if not installs.any_pending(session):
            return []
    with try_lock() as alone:
        if not alone:
            return []
        with session_scope() as session:
            rows = [(r.object_id, r.deposit_id, r.host) for r in installs.pending(session)]
        return [_finish_install(primary, session_scope, *row) for row in rows]


def _finish_install(
    primary: Primary,
    session_scope: Callable[[], contextlib.AbstractContextManager[Session]],
    object_id: str,
    deposit_id: str,
    host: str,
) -> str:
    from archive.catalog.index import index_object

    links = [Link("package", object_id), Link("deposit", deposit_id)]
    if not primary.has_object(object_id):
        removed, hidden = primary.remove_partial(object_id)
        what = (
            f"a deposit cut short on {host} while its object was being stored was rolled "
            f"back: {removed} file(s) of it removed from the storage root"
        )
        if hidden:
            what += f", {hidden} hidden until their Object Lock retention ends"
        with session_scope() as session:
            installs.done(session, object_id)
            record_events(session, [new_event("recovery", "success", what, links=links)])
        return what
    rel = object_rel_path(object_id)
    meta = json.loads(_deposit_json(primary.object(rel)))
    with session_scope() as session:
        held = deposit_by_fingerprint(session, str(meta["fingerprint"]))
    if held is not None and held[1] != object_id:
        kept = primary.remove_orphan(object_id)
        what = (
            f"a deposit cut short on {host} held the same payload as deposit {held[0]} "
            f"(package {held[1]}), stored meanwhile: its copy was removed, nothing was "
            "stored twice"
        )
        if kept:
            what += f" ({kept} file(s) stay, hidden, until their Object Lock retention ends)"
        with session_scope() as session:
            installs.done(session, object_id)
            record_events(
                session,
                [new_event("recovery", "warning", what, links=[Link("package", held[1])])],
                package_id=held[1],
            )
        return what
    what = f"a deposit cut short on {host} after its object was stored was completed"
    with session_scope() as session:
        installs.done(session, object_id)
        if session.get(Package, object_id) is None:
            index_object(session, primary.object(rel))
            outbox.add(session, outbox.CHARACTERISE, object_id)
            outbox.add_for_new_version(session, object_id)
            record_events(
                session,
                [new_event("recovery", "success", what, links=links)],
                package_id=object_id,
            )
    return f"{what}, as package {object_id}"


def _recover_version(
    primary: Primary,
    session_scope: Callable[[], contextlib.AbstractContextManager[Session]],
    folder: Path,
    data: dict[str, Any],
) -> str:
    """Finish a version that was fully written in staging before the process stopped."""
    from archive.catalog.index import index_object

    object_id, rel, number = str(data["object_id"]), str(data["object_path"]), int(data["number"])
    staged = folder / "object" / f"v{number}"
    if primary.root is None:
        # Through the location: the version's files, then the root inventory, again (a put
        # replaces what an interrupted one left), unless the object's head reached that
        # version already (it was promoted; or another host has since written its own
        # version of that number, which must not be replaced).
        head = ocfl.version_number(primary.object(rel).inventory()["head"])
        if head >= number:
            pass
        elif staged.is_dir() and head == number - 1:
            primary.install_version(rel, staged, number)
        else:
            raise StorageError(
                f"journal of version {number} of {object_id} is ready but the version is "
                f"neither in staging nor the object's head (v{head})",
                hint=f"inspect {folder} by hand; nothing has been removed",
            )
    else:
        object_root = primary.root / rel
        if not (object_root / f"v{number}").exists():
            if not staged.is_dir():
                raise StorageError(
                    f"journal of version {number} of {object_id} is ready but the version is "
                    "neither in staging nor in the object",
                    hint=f"inspect {folder} by hand; nothing has been removed",
                )
            staged.rename(object_root / f"v{number}")
        complete_pending_version(object_root)
    with session_scope() as session:
        package = session.get(Package, object_id)
        if package is None or package.head < number:
            index_object(session, primary.object(rel))
            outbox.add_for_new_version(session, object_id)
            record_events(
                session,
                [
                    new_event(
                        "recovery",
                        "success",
                        f"an interrupted write of version {number} was completed",
                        links=[Link("package", object_id)],
                    )
                ],
                package_id=object_id,
            )
    primary.store.discard(folder)
    return f"completed version {number} of package {object_id}"
