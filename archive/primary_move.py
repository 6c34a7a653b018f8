"""Moving a single-host archive's primary copy from its local storage root to a location that
several hosts share (``custos storage migrate-primary --to NAME``), with no downtime for
readers.

The local storage root stays the primary while its files are copied: every file (objects,
the custody log's checkpoints and records, the storage root's declaration) is put into the
target through the location interface, each read back before the next, an object's root
inventory, sidecar and declaration after its other files. A run can stop at any point and be
started again: a file the target holds already at the same size is not sent again (a put is
whole or absent, and every put was read back), except an object's root inventory and its
sidecar, which change with every version and are compared byte for byte.

Deposits and new versions may go on meanwhile. A last run with ``final`` copies what they
added under the commit lock, so that nothing commits between its end and the switch; the
operator then sets ``primary_location = NAME`` on every host and restarts its processes
(readers only ever read a whole copy: the local one until the restart, the target's after).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archive.custody import new_event, record_events
from archive.errors import ConfigError
from archive.services import Services
from archive.storage import ocfl
from archive.storage.locations import open_location
from archive.storage.primary import Primary
from archive.storage.replica import LocalFolderLocation

#: An object's root files, put in this order after its version folders.
_LAST = ("inventory.json", "inventory.json.sha512", ocfl.OBJECT_NAMASTE)
#: Files that change in place (an object's root inventory and its sidecar): compared whole.
_MUTABLE = ("inventory.json", "inventory.json.sha512")


@dataclass
class MoveReport:
    """What one run copied to the target."""

    target: str
    uri: str
    final: bool
    files: int = 0  # files looked at
    copied: int = 0  # sent (new, or a root inventory that changed)
    bytes_copied: int = 0
    objects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "uri": self.uri,
            "final": self.final,
            "objects": self.objects,
            "files": self.files,
            "copied": self.copied,
            "bytes_copied": self.bytes_copied,
            "next": (
                f'set primary_location = "{self.target}" in every host\'s settings and restart '
                "its processes"
                if self.final
                else "run again with --final once new deposits and versions can wait a moment"
            ),
        }


def migrate_primary(
    services: Services,
    target: str,
    *,
    final: bool = False,
    progress: Callable[[int], None] | None = None,
) -> MoveReport:
    """Copy the local primary to the location ``target`` (see the module text).

    Raises :class:`ConfigError` for a target that is not configured, is the primary already,
    or when the primary is not a local storage root; :class:`StorageError` (and
    :class:`LocationUnavailable`) when the target cannot be written."""
    settings = services.settings
    if target == settings.primary_location:
        raise ConfigError(f"location {target} is the primary already: nothing to move")
    entry = settings.locations.get(target)
    if entry is None:
        raise ConfigError(
            f"no location {target!r} among [locations.*] "
            f"({', '.join(sorted(settings.locations)) or 'none configured'})",
            hint=f"add [locations.{target}] to the settings (an S3 bucket with Object Lock)",
        )
    source = services.primary
    if source.root is None:
        raise ConfigError(
            "the primary is not a local storage root: only a single host's storage root is "
            "moved by this command",
            hint="to change a shared primary, replicate to the new location and rebuild",
        )
    location = open_location(target, entry)
    if isinstance(location, LocalFolderLocation) and location.root == source.root:
        raise ConfigError(f"location {target} is the storage root itself")
    dest = Primary(location, services.store)
    dest.ensure()
    report = MoveReport(target, location.uri, final)
    lock = services.commit_lock() if final else nullcontext()
    with lock:
        for key, path in _files(source.root):
            report.files += 1
            if key.endswith("/" + ocfl.OBJECT_NAMASTE):
                report.objects += 1
            if _send(dest, key, path):
                report.copied += 1
                report.bytes_copied += path.stat().st_size
            if progress:
                progress(1)
        if final:
            with services.session_scope() as session:
                record_events(
                    session,
                    [
                        new_event(
                            "replication",
                            "success",
                            f"the primary copy was copied whole to location {target} "
                            f"({location.uri}), {report.objects} objects, to become the "
                            "primary",
                        )
                    ],
                )
    return report


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) of every file under the storage root, each object's root inventory,
    sidecar and declaration after its other files (so the target holds an object only once
    it is whole); files being written (``.tmp``, hidden partial files) are left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        folder = Path(dirpath)
        names = [n for n in filenames if not n.endswith(".tmp") and not n.startswith(".")]
        if ocfl.OBJECT_NAMASTE in names:
            # An object: its version folders first, then its root files in order.
            last = [n for n in _LAST if n in names]
            rest = sorted(n for n in names if n not in last)
            for sub in sorted(dirnames):
                for inner, _, files in os.walk(folder / sub):
                    for name in sorted(files):
                        if name.endswith(".tmp") or name.startswith("."):
                            continue
                        path = Path(inner) / name
                        yield path.relative_to(root).as_posix(), path
            dirnames.clear()
            for name in rest + last:
                path = folder / name
                yield path.relative_to(root).as_posix(), path
            continue
        for name in sorted(names):
            path = folder / name
            yield path.relative_to(root).as_posix(), path


def _send(dest: Primary, key: str, path: Path) -> bool:
    """Put ``path`` at ``key`` unless the target holds it already; return whether sent."""
    info = dest.location.stat(key)
    size = path.stat().st_size
    if info is not None and info.size == size:
        leaf = key.rpartition("/")[2]
        if leaf not in _MUTABLE or dest.read_bytes(key) == path.read_bytes():
            return False
    dest.put_file(key, path)
    return True
