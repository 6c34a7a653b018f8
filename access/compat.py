"""The Archivematica Storage Service interface, as Artefactual's ``fixity`` tool uses it.

* :func:`list_aips`: ``GET /api/v2/file/`` — every package as an AIP, paginated like the
  Storage Service (Tastypie): ``meta`` (``limit``, ``next``, ``offset``, ``previous``,
  ``total_count``) and ``objects``.
* :func:`get_aip`: ``GET /api/v2/file/<uuid>/`` — one AIP.

``GET /api/v2/file/<uuid>/check_fixity/`` is the fixity service's own check of every copy of
the package, answered in the Storage Service's shape: :mod:`fixity.storage_service`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from access.decisions.reads import package_id_of
from archive.catalog.tables import Package
from archive.errors import NotFound
from archive.services import Services


def _aip(services: Services, p: Package, size: int) -> dict[str, Any]:
    uuid = p.id.removeprefix("urn:uuid:")
    return {
        "uuid": uuid,
        # the object's folder for a local primary, else primary:<key>
        "current_full_path": services.primary.object(p.object_path).where(),
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
