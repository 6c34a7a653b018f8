"""Researchers and anonymous readers (JSON): search, browse, a package, a file download.

Public tier only. Anything they may not see answers exactly like something that does not
exist: the same status (404) and the same body.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from access.decisions.reads import read_file, read_package
from access.search.service import PAGE_MAX, QUERY_MAX, Filters, search
from api.deps import PolicyDep, PublicReaderDep, ServicesDep
from api.download import file_response

router = APIRouter(prefix="/public", tags=["researchers"])


Purpose = Annotated[
    str | None,
    Query(
        max_length=64,
        description="public (anyone; the default for anonymous readers) or research "
        "(researchers; their default)",
    ),
]


@router.get("/search")
async def search_public(
    request: Request,
    services: ServicesDep,
    policy: PolicyDep,
    who: PublicReaderDep,
    q: Annotated[str, Query(max_length=QUERY_MAX, description="words to find")] = "",
    depositor: Annotated[str | None, Query(max_length=255)] = None,
    year: Annotated[int | None, Query(ge=1, le=9999)] = None,
    format: Annotated[str | None, Query(max_length=255)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 20,
    purpose: Purpose = None,
) -> dict[str, Any]:
    """Full-text search over the public tier: titles, descriptions, bag-info, file names;
    with facets (depositor, year, format). An empty query browses."""

    def run() -> dict[str, Any]:
        with services.sessions() as session:
            return search(
                session,
                policy,
                q,
                reader=who,
                purpose=purpose,
                filters=Filters(depositor, year, format),
                offset=offset,
                limit=limit,
            ).as_dict()

    # On SQLite, run on the event loop: every query's work is bounded (access.search.service.WINDOW)
    # and a trip to the thread pool costs more than most searches. A server database is
    # waited for in the pool, so that other requests go on meanwhile.
    if services.engine.dialect.name == "sqlite":
        return run()
    return await anyio.to_thread.run_sync(run, limiter=request.app.state.database_waits)


@router.get("/packages/{package}")
def public_package(
    services: ServicesDep,
    policy: PolicyDep,
    who: PublicReaderDep,
    package: str,
    purpose: Purpose = None,
) -> dict[str, Any]:
    """A public package and its public files, each with its proof status."""
    with services.session_scope() as session:
        read = read_package(
            session, policy, who, package, purpose=_purpose(who.role, purpose), reveal=False
        )
    return read.view.as_dict()


@router.get("/packages/{package}/files/{path:path}", response_class=FileResponse)
def public_file(
    services: ServicesDep,
    policy: PolicyDep,
    who: PublicReaderDep,
    package: str,
    path: str,
    purpose: Purpose = None,
) -> Response:
    """Download a public file (streamed)."""
    with services.session_scope() as session:
        download = read_file(
            session,
            policy,
            who,
            package,
            path,
            purpose=_purpose(who.role, purpose),
            reveal=False,
        )
    return file_response(services.primary, download)


def _purpose(role: str, stated: str | None) -> str:
    return stated or ("research" if role == "researcher" else "public")
