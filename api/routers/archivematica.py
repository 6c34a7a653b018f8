"""The Archivematica Storage Service interface (``/api/v2/file/``), for Artefactual's
``fixity`` tool: ``username``/``api_key`` parameters or ``Authorization: ApiKey user:key``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from access.compat import get_aip, list_aips
from access.decisions.reads import package_id_of
from api.deps import CompatReaderDep, ServicesDep
from fixity.storage_service import check_fixity

router = APIRouter(prefix="/api/v2/file", tags=["Archivematica Storage Service"])


@router.get("/")
def files(
    request: Request,
    services: ServicesDep,
    who: CompatReaderDep,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    """Every package as an AIP, paginated like the Storage Service (Tastypie ``meta``)."""
    objects, total = list_aips(services, offset=offset, limit=limit)

    def page(at: int) -> str:
        # Like Tastypie, the links keep the request's other parameters (the fixity tool
        # follows `next` as it is, credentials included).
        params = {k: v for k, v in request.query_params.items() if k not in ("offset", "limit")}
        return f"{request.url.path}?{urlencode({**params, 'limit': limit, 'offset': at})}"

    return {
        "meta": {
            "limit": limit,
            "next": page(offset + limit) if offset + limit < total else None,
            "offset": offset,
            "previous": page(max(offset - limit, 0)) if offset > 0 else None,
            "total_count": total,
        },
        "objects": objects,
    }


@router.get("/{uuid}/")
def file(services: ServicesDep, who: CompatReaderDep, uuid: str) -> dict[str, Any]:
    """One AIP."""
    return get_aip(services, uuid)


@router.get("/{uuid}/check_fixity/")
def fixity(services: ServicesDep, who: CompatReaderDep, uuid: str) -> dict[str, Any]:
    """Check every copy of the AIP's stored files now, as a fixity cycle checks them (read in
    full, sha512 and sha256 against the catalog; damage repaired from an intact copy; each
    copy's check recorded): `custos fixity run`'s check, for this AIP."""
    return check_fixity(services, package_id_of(uuid)).as_storage_service()
