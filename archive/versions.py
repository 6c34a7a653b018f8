"""Append a version to a stored object, crash-safely (OCFL 1.1 §3.3: versions are immutable
once written; a new version adds files and a new inventory).

The version is built in staging, its folder renamed into the object root (invisible to readers
until the root inventory names it), then the root inventory and sidecar are replaced. A journal
in staging lets the next start finish a version interrupted after it was written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from archive import journal as journal_mod
from archive.digest import CopyResult
from archive.storage import ocfl
from archive.storage.local import LocalStore
from archive.storage.ocfl import ContentEntry, StagedVersion


@dataclass(frozen=True)
class NewVersion:
    number: int
    inventory_sha512: str
    created: datetime
    entries: tuple[ContentEntry, ...]
    journal: journal_mod.Journal


def append_version(
    store: LocalStore,
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
    object_root = store.object_root(rel_path)
    previous = ocfl.read_inventory(object_root)
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
        (staged.version_dir).rename(object_root / f"v{number}")
        ocfl.promote_head(object_root, number)
    except BaseException:
        if jr.data.get("state") != journal_mod.READY:
            store.discard(jr.folder)
            jr.close()
        raise
    return NewVersion(number, digest, created, tuple(staged.entries), jr)


def finish(store: LocalStore, version: NewVersion) -> None:
    """The catalog knows the version: drop its journal."""
    store.discard(version.journal.folder)
    version.journal.close()
