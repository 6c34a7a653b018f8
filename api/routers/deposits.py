"""Depositors: upload a bag (streamed to disk), list their deposits, follow one, fetch its
receipt."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool

from access.decisions.rules import Principal
from access.deposits import deposit_status, list_deposits, receipt
from api.deps import PageDep, PolicyDep, ServicesDep, role, wake_outbox
from archive.errors import Forbidden
from ingest.upload import UploadSink, check_organisation, check_request, store_upload

router = APIRouter(prefix="/deposits", tags=["depositors"])
Depositor = Annotated[Principal, role("depositor")]

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The bag as one .zip, .tar or .tar.gz file (the raw bytes).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put("", status_code=201, openapi_extra=UPLOAD_BODY)
async def upload(
    request: Request,
    services: ServicesDep,
    who: Depositor,
    filename: Annotated[str, Query(max_length=200, description="e.g. holding.zip")],
    checksum: Annotated[
        str | None,
        Header(
            alias="X-Custos-Checksum",
            description="sha256:<hex> or sha512:<hex> of the uploaded file",
        ),
    ] = None,
) -> dict[str, Any]:
    """Upload a bag. It is written to disk in chunks, its checksum verified, then ingested
    as a deposit of your organisation. The answer comes once it is stored: formats are
    identified, manifests sealed and copies made after (queued work, the same as for a
    deposit from the command line); follow them at GET /deposits/{id}. An organisation that
    is not a registered depositor is refused (422, finding `DEPOSITOR-UNKNOWN`) before the
    body is read."""
    if not who.organisation:
        raise Forbidden("this depositor is bound to no organisation", hint="recreate the user")
    name, algorithm, expected = check_request(filename, checksum)
    await run_in_threadpool(check_organisation, services, who.organisation)
    sink = await run_in_threadpool(UploadSink, services.settings, name, algorithm, expected)
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(sink.write, chunk)
    except BaseException:
        await run_in_threadpool(sink.discard)
        raise
    stored = await run_in_threadpool(
        lambda: store_upload(services, sink, user=who.name, organisation=who.organisation or "")
    )
    # The deposit's commit queued the work that follows it; the answer does not wait for it.
    wake_outbox(request)
    with services.sessions() as session:
        return deposit_status(session, who, stored.upload_id).as_dict()


@router.get("")
def deposits(services: ServicesDep, who: Depositor, page: PageDep) -> dict[str, Any]:
    """Your organisation's deposits, newest first, a page at a time (`offset`, `limit`), each
    as GET /deposits/{id} tells it (stored or already held, identification, seal); `total`
    counts them all, `next_offset` is where the next page starts (null on the last)."""
    with services.sessions() as session:
        return list_deposits(session, who, page).as_dict("deposits")


@router.get("/{upload_id}")
def status(services: ServicesDep, who: Depositor, upload_id: str) -> dict[str, Any]:
    """Where a deposit stands: stored or already held; identification; seal."""
    with services.sessions() as session:
        return deposit_status(session, who, upload_id).as_dict()


@router.get("/{upload_id}/receipt")
def get_receipt(
    services: ServicesDep, policy: PolicyDep, who: Depositor, upload_id: str
) -> dict[str, Any]:
    """The receipt: deposit and package ids, files with their digests, seal status."""
    with services.session_scope() as session:
        return receipt(session, policy, who, upload_id).as_dict()
