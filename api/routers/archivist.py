"""Archivists: packages, versions, files, events, fixity and seal status (metadata of every
tier, logged when not public; content only as the policy decides); the format risk report
(as ``custos migrate report`` gives it: JSON, and the same HTML page)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from access.archivist import detail, packages
from access.decisions.reads import package_id_of, read_file
from access.decisions.rules import Principal
from api.deps import PageDep, PolicyDep, ServicesDep, role
from api.download import file_response
from archive.status import status
from fixity.report import build_report, csv_text, fixity_status
from fixity.storage_service import check_fixity
from migration.report import render_html
from migration.service import report

router = APIRouter(prefix="/archivist", tags=["archivists"])
Archivist = Annotated[Principal, role("archivist")]


@router.get("/packages")
def list_all(
    services: ServicesDep, policy: PolicyDep, who: Archivist, page: PageDep
) -> dict[str, Any]:
    """Every package with its tier, size and head version, oldest first, a page at a time
    (`offset`, `limit`), with their `total`."""
    with services.session_scope() as session:
        listing = packages(session, policy, who, page)
    return listing.as_dict("packages")


@router.get("/packages/{package}")
def one(services: ServicesDep, policy: PolicyDep, who: Archivist, package: str) -> dict[str, Any]:
    """A package's versions, files, events, access records and seal status."""
    with services.session_scope() as session:
        return detail(session, policy, who, package_id_of(package))


@router.get("/packages/{package}/files/{path:path}", response_class=FileResponse)
def file(
    services: ServicesDep,
    policy: PolicyDep,
    who: Archivist,
    package: str,
    path: str,
    purpose: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A file's bytes, as the access policy allows archivists (public material, for a
    purpose its consent covers)."""
    with services.session_scope() as session:
        download = read_file(session, policy, who, package, path, purpose=purpose, reveal=True)
    return file_response(services.primary, download)


@router.post("/packages/{package}/fixity")
def fixity(services: ServicesDep, who: Archivist, package: str) -> dict[str, Any]:
    """Check every copy of the package's stored files now, as a fixity cycle checks them
    (read in full, sha512 and sha256 against the catalog; damage repaired from an intact copy;
    each copy's check recorded), answered as the Storage Service interface answers."""
    result = check_fixity(services, package_id_of(package))
    return {"package_id": result.package_id, **result.as_storage_service()}


@router.get("/fixity")
def fixity_status_(services: ServicesDep, who: Archivist) -> dict[str, Any]:
    """Fixity coverage per location (copies tracked, checked within their cycle, never
    checked, damaged; the oldest and newest check), damage outstanding and the copies left
    unrecoverable (content files by their sha512, never their path): `custos fixity status`."""
    with services.sessions() as session:
        return fixity_status(session).as_dict()


@router.get("/fixity/report")
def fixity_report(
    services: ServicesDep,
    who: Archivist,
    since: Annotated[date | None, Query(description="Only checks from this day (UTC) on.")] = None,
) -> dict[str, Any]:
    """The auditor's report: per location and tier, copies, files checked, bytes read,
    failures, repairs, unrecoverable copies, the oldest check; coverage over time. The same
    numbers as `custos fixity report --json`."""
    with services.sessions() as session:
        return build_report(session, since=_start(since)).as_dict()


@router.get("/fixity/report.csv", response_class=PlainTextResponse)
def fixity_report_csv(
    services: ServicesDep,
    who: Archivist,
    since: Annotated[date | None, Query(description="Only checks from this day (UTC) on.")] = None,
) -> PlainTextResponse:
    """The report's table as CSV (one row per location and tier), as `custos fixity report
    --csv` writes it."""
    with services.sessions() as session:
        text = csv_text(build_report(session, since=_start(since)))
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="fixity-report.csv"'},
    )


def _start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)


@router.get("/status")
def archive_status(services: ServicesDep, who: Archivist) -> dict[str, Any]:
    """Holdings, the seal backlog and the custody log's last sealed checkpoint."""
    return status(services).as_dict()


@router.get("/migration/report")
def migration_report(services: ServicesDep, who: Archivist) -> dict[str, Any]:
    """The format risk report: formats held, counts, bytes, PRONOM names, the policy's action
    and risk, and what has been migrated (as ``custos migrate report --json``)."""
    return report(services).as_dict()


@router.get("/migration/report.html", response_class=HTMLResponse)
def migration_report_page(services: ServicesDep, who: Archivist) -> HTMLResponse:
    """The same report as one HTML page (no JavaScript, no external assets)."""
    return HTMLResponse(render_html(report(services)))
