"""The reading room: server-rendered HTML for researchers, no JavaScript needed.

Search with facets, a package's public files with their proof status, download links (to
``/public/packages/…/files/…``). The pages read through the same services as ``/public``,
as an anonymous reader (or the researcher whose token the request carries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from access.decisions.reads import read_package
from access.search.service import PAGE_MAX, QUERY_MAX, Filters, search
from api.deps import PolicyDep, PublicReaderDep, ServicesDep
from api.errors import status_of
from archive.errors import CustosError

router = APIRouter(tags=["reading room"], default_response_class=HTMLResponse)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
PER_PAGE = 20


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/search", status_code=303)


@router.get("/search")
def search_page(
    request: Request,
    services: ServicesDep,
    policy: PolicyDep,
    who: PublicReaderDep,
    q: Annotated[str, Query(max_length=QUERY_MAX)] = "",
    depositor: Annotated[str | None, Query(max_length=255)] = None,
    year: Annotated[int | None, Query(ge=1, le=9999)] = None,
    format: Annotated[str | None, Query(max_length=255)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """Search the public record (HTML)."""
    filters = {"depositor": depositor, "year": year, "format": format}
    try:
        with services.sessions() as session:
            result = search(
                session,
                policy,
                q,
                reader=who,
                filters=Filters(depositor, year, format),
                offset=(page - 1) * PER_PAGE,
                limit=min(PER_PAGE, PAGE_MAX),
            )
    except CustosError as exc:
        return _error(request, exc)

    def link(**changes: object) -> str:
        params = {"q": q, **filters, "page": page, **changes}
        return "/search?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})

    def facet_link(name: str, value: str) -> str:
        return link(**{name: value, "page": None})

    return templates.TemplateResponse(
        request,
        "search.html",
        {
            "result": result,
            "filters": filters,
            "facet_link": facet_link,
            "prev_link": link(page=page - 1) if page > 1 else None,
            "next_link": link(page=page + 1) if result.offset + PER_PAGE < result.total else None,
        },
    )


@router.get("/packages/{package}")
def package_page(
    request: Request, services: ServicesDep, policy: PolicyDep, who: PublicReaderDep, package: str
) -> HTMLResponse:
    """A public package: its public files, their proof status, download links (HTML)."""
    purpose = "research" if who.role == "researcher" else "public"
    try:
        with services.session_scope() as session:  # a read the policy logs is recorded
            read = read_package(session, policy, who, package, purpose=purpose, reveal=False)
    except CustosError as exc:
        return _error(request, exc)
    return templates.TemplateResponse(request, "package.html", {"package": read.view})


def _error(request: Request, exc: CustosError) -> HTMLResponse:
    status, title = status_of(exc)
    return templates.TemplateResponse(
        request,
        "error.html",
        {"title": title, "detail": exc.message, "hint": exc.hint},
        status_code=status,
    )
