"""The Archivematica Storage Service interface, as Artefactual's ``fixity`` tool uses it.

* :func:`list_aips`: ``GET /api/v2/file/`` — every package as an AIP, paginated like the
  Storage Service (Tastypie): ``meta`` (``limit``, ``next``, ``offset``, ``previous``,
  ``total_count``) and ``objects``.
* :func:`check_fixity`: ``GET /api/v2/file/<uuid>/check_fixity/`` — every content file of the
  OCFL object hashed again (sha512, streamed) against its inventory: ``success``,
  ``message``, ``failures.files`` (``changed``, ``missing``, ``untracked``) and
  ``timestamp``. Each check is a ``fixity check`` custody event (counts only, no paths).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from access.decisions.reads import package_id_of
from archive import clock
from archive.catalog.tables import Package
from archive.custody import new_event, record_events
from archive.digest import digest_file
from archive.errors import NotFound, StorageError
from archive.model import Link, Outcome
from archive.services import Services
from archive.storage import ocfl

AGENT = "Custos fixity (Storage Service interface)"


def _aip(services: Services, p: Package, size: int) -> dict[str, Any]:
    uuid = p.id.removeprefix("urn:uuid:")
    root = services.store.object_root(p.object_path)
    return {
        "uuid": uuid,
        "current_full_path": str(root),
        "current_location": "/api/v2/location/custos-storage-root/",
        "current_path": p.object_path,
        "package_type": "AIP",
        "status": "UPLOADED",
        "size": size,
        "stored_date": p.created_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "origin_pipeline": None,
        "misc_attributes": {},
        "replicas": [],
        "replicated_package": None,
        "encrypted": False,
        "resource_uri": f"/api/v2/file/{uuid}/",
    }


def list_aips(services: Services, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One page of AIPs (every package, oldest first) and the total count."""
    from archive.catalog.tables import File

    with services.sessions() as session:
        total = session.execute(select(func.count(Package.id))).scalar_one()
        sizes = (
            select(File.package_id, func.coalesce(func.sum(File.size), 0).label("size"))
            .group_by(File.package_id)
            .subquery()
        )
        rows = session.execute(
            select(Package, sizes.c.size)
            .outerjoin(sizes, sizes.c.package_id == Package.id)
            .order_by(Package.created_at, Package.id)
            .offset(offset)
            .limit(limit)
        ).all()
        return [_aip(services, p, int(size or 0)) for p, size in rows], int(total)


def get_aip(services: Services, uuid: str) -> dict[str, Any]:
    package_id = package_id_of(uuid)
    with services.sessions() as session:
        p = session.get(Package, package_id)
        if p is None:
            raise NotFound(f"no AIP {uuid}", hint="GET /api/v2/file/ lists the AIPs held")
        return _aip(services, p, 0)


@dataclass
class FixityResult:
    package_id: str
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    checked: int = 0
    at: datetime = field(default_factory=clock.now)
    error: str = ""

    @property
    def success(self) -> bool:
        return not (self.changed or self.missing or self.untracked or self.error)

    def as_storage_service(self) -> dict[str, Any]:
        message = (
            f"Fixity check succeeded: {self.checked} file(s) match the OCFL inventory"
            if self.success
            else "Fixity check failed: "
            + (
                self.error
                or f"{len(self.changed)} changed, {len(self.missing)} missing, "
                f"{len(self.untracked)} untracked"
            )
        )
        return {
            "success": self.success,
            "message": message,
            "failures": {
                "files": {
                    "changed": self.changed,
                    "missing": self.missing,
                    "untracked": self.untracked,
                }
            },
            "timestamp": self.at.strftime("%Y-%m-%dT%H:%M:%S"),
        }


def _content_files(root: Path) -> set[str]:
    found = set()
    for version in root.iterdir():
        content = version / "content"
        if version.is_dir() and version.name.startswith("v") and content.is_dir():
            for dirpath, _, names in os.walk(content):
                for name in names:
                    found.add(Path(dirpath, name).relative_to(root).as_posix())
    return found


def check_fixity(services: Services, uuid: str) -> FixityResult:
    """Hash every content file of the package's OCFL object against its inventory.

    Records a ``fixity check`` event. Raises :class:`NotFound` for an unknown package."""
    package_id = package_id_of(uuid)
    with services.sessions() as session:
        p = session.get(Package, package_id)
        if p is None:
            raise NotFound(f"no AIP {uuid}", hint="GET /api/v2/file/ lists the AIPs held")
        rel = p.object_path
    root = services.store.object_root(rel)
    result = FixityResult(package_id)
    try:
        inventory = ocfl.read_inventory(root)
    except StorageError as exc:
        result.error = exc.message
        inventory = {"manifest": {}}
    expected = {path: digest for digest, paths in inventory["manifest"].items() for path in paths}
    for path, digest in sorted(expected.items()):
        target = root / path
        if not target.is_file():
            result.missing.append(path)
            continue
        result.checked += 1
        if digest_file(target, ("sha512",)).digests["sha512"] != digest:
            result.changed.append(path)
    if not result.error:
        result.untracked = sorted(_content_files(root) - set(expected))
    outcome: Outcome = "success" if result.success else "failure"
    detail = (
        f"{result.checked} file(s) hashed (sha512) against the OCFL inventory: "
        f"{len(result.changed)} changed, {len(result.missing)} missing, "
        f"{len(result.untracked)} untracked" + (f"; {result.error}" if result.error else "")
    )
    with services.session_scope() as session:
        record_events(
            session,
            [
                new_event(
                    "fixity check",
                    outcome,
                    detail,
                    links=[Link("package", package_id)],
                    agent=AGENT,
                )
            ],
            package_id=package_id,
        )
    return result
