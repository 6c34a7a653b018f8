"""Append a version to a stored object, crash-safely (OCFL 1.1 §3.3: versions are immutable
once written; a new version adds files and a new inventory).

The version is built in staging (this host's scratch space), then committed to the primary
(:meth:`archive.storage.primary.Primary.install_version`): its folder renamed into a local
object root, or its files put into an S3 one, invisible to readers until the root inventory
names it; then the root inventory and sidecar are replaced. A journal in staging lets the next
start finish a version interrupted after it was written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from archive import journal as journal_mod
from archive import outbox
from archive.catalog.index import role_of
from archive.catalog.tables import File, Package, Version
from archive.digest import CopyResult
from archive.storage import ocfl
from archive.storage.local import LocalStore
from archive.storage.ocfl import ContentEntry, StagedVersion
from archive.storage.primary import Primary


@dataclass(frozen=True)
class NewVersion:
    number: int
    inventory_sha512: str
    created: datetime
    entries: tuple[ContentEntry, ...]
    journal: journal_mod.Journal


def append_version(
    primary: Primary,
    rel_path: str,
    files: dict[str, bytes],
    *,
    message: str,
    agent: str,
    created: datetime,
    moved: Mapping[str, tuple[Path, CopyResult]] | None = None,
) -> NewVersion:
    """Write ``files`` (logical path -> bytes) as the object's next version.

    ``moved`` adds files too large to hold in memory: logical path -> (a file in staging,
    its size and digests as the caller read them); each is renamed into the version.

    The returned journal stays open (and locked) until the caller has updated the catalog
    and calls :func:`finish`.
    """
    store = primary.store
    previous = primary.object(rel_path).inventory()
    number = ocfl.version_number(previous["head"]) + 1
    jr = journal_mod.Journal.begin(
        store,
        f"version-{uuid.uuid4().hex}",
        kind="version",
        object_id=previous["id"],
        object_path=rel_path,
        number=number,
    )
    try:
        staged = StagedVersion(previous["id"], jr.object_dir, number, fsync=store.fsync)
        for logical, data in sorted(files.items()):
            staged.add_bytes(logical, data)
        for logical, (path, digested) in sorted((moved or {}).items()):
            staged.add_file(logical, path, digested)
        inventory = staged.build_inventory(
            created=created,
            message=message,
            user_name=agent,
            user_address="urn:custos",
            previous=previous,
        )
        digest = staged.write_inventory(inventory)
        if store.fsync:
            os.sync()
        jr.mark_ready(previous["id"])
        primary.install_version(rel_path, staged.version_dir, number)
    except BaseException:
        if jr.data.get("state") != journal_mod.READY:
            store.discard(jr.folder)
            jr.close()
        raise
    return NewVersion(number, digest, created, tuple(staged.entries), jr)


def catalog_version(
    session: Session,
    package_id: str,
    new: NewVersion,
    *,
    message: str,
    agent: str,
    formats: Mapping[str, Mapping[str, str | None]] | None = None,
    sealed: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Record in the catalog a version :func:`append_version` wrote: a row per file it adds,
    the version's row and the package's new head, and the work every new version needs
    (sealing, replication) in the outbox. ``formats`` (logical path -> ``puid``,
    ``mime_type``, ``format_name``) gives the identification of files already identified;
    ``sealed`` (content path -> its ``custos/encrypted.json`` entry) the copies it stores
    encrypted.
    The caller's transaction commits it, with the events that go with the version."""
    known = formats or {}
    session.execute(
        insert(File),
        [
            {
                "package_id": package_id,
                "version": new.number,
                "logical_path": e.logical_path,
                "content_path": e.content_path,
                "role": role_of(e.logical_path),
                "size": e.size,
                "sha512": e.sha512,
                "sha256": e.sha256,
                **{
                    key: known.get(e.logical_path, {}).get(key)
                    for key in ("puid", "mime_type", "format_name")
                },
                **_plain((sealed or {}).get(e.content_path)),
            }
            for e in new.entries
        ],
    )
    session.add(
        Version(
            package_id=package_id,
            number=new.number,
            created_at=new.created,
            message=message,
            agent=agent,
            inventory_sha512=new.inventory_sha512,
        )
    )
    session.execute(update(Package).where(Package.id == package_id).values(head=new.number))
    outbox.add_for_new_version(session, package_id)


def _plain(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    if entry is None:
        return {"sealed_tier": None, "plain_size": None, "plain_sha512": None, "plain_sha256": None}
    return {
        "sealed_tier": entry["tier"],
        "plain_size": entry["size"],
        "plain_sha512": entry["sha512"],
        "plain_sha256": entry["sha256"],
    }


def finish(store: LocalStore, version: NewVersion) -> None:
    """The catalog knows the version: drop its journal."""
    store.discard(version.journal.folder)
    version.journal.close()
