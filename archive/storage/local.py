"""The local filesystem backend: an OCFL storage root on a mounted disk.

Objects are built in a staging folder on the same filesystem and renamed into place, so an
object becomes visible whole or not at all (rename(2) is atomic within one filesystem).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from archive.errors import StorageError
from archive.storage import ocfl


class LocalStore:
    """An OCFL storage root on the local filesystem, with its staging area."""

    kind = "local"

    def __init__(self, root: Path, staging: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.staging = staging
        self.fsync = fsync

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def ensure(self) -> None:
        """Create the storage root and staging area if absent; check they share a filesystem."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage folders under {self.root}: {exc}") from exc
        ocfl.init_root(self.root)
        if os.stat(self.root).st_dev != os.stat(self.staging).st_dev:
            raise StorageError(
                f"staging {self.staging} and storage root {self.root} are on different "
                "filesystems, so objects cannot be moved into place atomically",
                hint="set staging_dir to a folder on the same filesystem as storage_root",
            )

    def new_staging_dir(self, name: str | None = None) -> Path:
        path = self.staging / (name or uuid.uuid4().hex)
        path.mkdir(parents=False, exist_ok=False)
        return path

    def object_root(self, rel_path: str) -> Path:
        return self.root / rel_path

    def has_object(self, object_id: str) -> bool:
        return (self.root / ocfl.object_rel_path(object_id) / ocfl.OBJECT_NAMASTE).is_file()

    def install(self, staged_object: Path, object_id: str) -> str:
        """Move a complete staged object into the storage root; return its relative path.

        Raises :class:`StorageError` if an object with that id already exists.
        """
        rel = ocfl.object_rel_path(object_id)
        target = self.root / rel
        if target.exists():
            raise StorageError(f"an object already exists at {target} for {object_id}")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            staged_object.rename(target)
        except OSError as exc:
            raise StorageError(f"cannot move {staged_object} into {target}: {exc}") from exc
        if self.fsync:
            ocfl.fsync_dir(target.parent)
        return rel

    def iter_objects(self) -> Iterator[str]:
        """Relative paths of every object in the root."""
        for path in ocfl.iter_object_roots(self.root):
            yield path.relative_to(self.root).as_posix()

    def discard(self, staged: Path) -> None:
        """Remove a staging folder (never anything inside the storage root)."""
        if self.staging not in staged.parents:
            raise StorageError(f"refusing to remove {staged}: not inside staging {self.staging}")
        shutil.rmtree(staged, ignore_errors=True)
