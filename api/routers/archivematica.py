"""The Archivematica Storage Service interface (``/api/v2/file/``), for Artefactual's
``fixity`` tool: ``username``/``api_key`` parameters or ``Authorization: ApiKey user:key``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from access.compat import check_fixity, get_aip, list_aips
from api.deps import CompatReaderDep, ServicesDep

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
    """Hash every stored file of the AIP against its OCFL inventory."""
    return check_fixity(services, uuid).as_storage_service()
