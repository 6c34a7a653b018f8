"""Registrars (TOTP required): search every tier, read with a stated purpose (logged), change
a tier, decide reviews of protected identities, record requests from justice bodies and
answer them with a court bundle (downloaded as a zip), read the access log, and open a tier's
key together (each presenting their share)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from access.decisions.reads import read_file, read_package
from access.decisions.reviews import approve_review, extend_review, review_page
from access.decisions.rules import Principal
from access.keys.service import key_status, lock_key, present_share, record_lapsed
from access.registrar import (
    access_log,
    answer_request,
    bundle_of,
    change_tier,
    list_requests,
    record_request,
    search_all,
)
from api.deps import PageDep, PolicyDep, ServicesDep, role, wake_outbox
from api.download import file_response

router = APIRouter(prefix="/registrar", tags=["registrars"])
Registrar = Annotated[Principal, role("registrar", second_factor=True)]
Purpose = Annotated[
    str | None,
    Query(max_length=64, description="why you read: prosecution, third-party-justice, research…"),
]


@router.get("/search")
def search(
    services: ServicesDep,
    policy: PolicyDep,
    who: Registrar,
    q: Annotated[str, Query(min_length=1, max_length=256)],
) -> dict[str, Any]:
    """Search every tier (titles, depositors, file names; while a tier's key is open, the real
    names and bag-info of its encrypted files too). Non-public hits are logged."""
    with services.session_scope() as session:
        hits = search_all(
            session, policy, who, q, keyring=services.keyring, primary=services.primary
        )
    return {"query": q, "results": hits}


@router.get("/packages/{package}")
def package(
    services: ServicesDep, policy: PolicyDep, who: Registrar, package: str, purpose: Purpose = None
) -> dict[str, Any]:
    """A package's metadata and files, any tier (logged when not public)."""
    with services.session_scope() as session:
        read = read_package(
            session,
            policy,
            who,
            package,
            purpose=purpose,
            reveal=True,
            keyring=services.keyring,
            primary=services.primary,
        )
    return read.view.as_dict()


@router.get("/packages/{package}/files/{path:path}", response_class=FileResponse)
def file(
    services: ServicesDep,
    policy: PolicyDep,
    who: Registrar,
    package: str,
    path: str,
    purpose: Purpose = None,
) -> Response:
    """Read a file for a stated purpose; non-public reads are recorded (who, when, what, why)."""
    with services.session_scope() as session:
        download = read_file(
            session,
            policy,
            who,
            package,
            path,
            purpose=purpose,
            reveal=True,
            keyring=services.keyring,
            primary=services.primary,
        )
    return file_response(services.primary, download)


class TierChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field("", max_length=4096, description="'' for the package, or data/…")
    tier: str = Field(max_length=32, description="public, restricted or protected-identity")
    legal_basis: str = Field(max_length=2000, description="the law, order or agreement")
    sunset: date | None = None
    successor: str | None = Field(None, max_length=32)


@router.post("/packages/{package}/tier")
def tier(
    request: Request, services: ServicesDep, who: Registrar, package: str, body: TierChangeBody
) -> dict[str, Any]:
    """Change the tier of the package or of a file or folder in it (legal basis required):
    a new OCFL version with the updated custos/access.json and a tier change event. Text of
    documents it opens to the public is extracted after (queued work)."""
    changed = change_tier(
        services,
        who,
        package,
        path=body.path,
        tier=body.tier,
        legal_basis=body.legal_basis,
        sunset=body.sunset,
        successor=body.successor,
    )
    # Files now public may have text to extract for the search: queued, after the commit.
    wake_outbox(request)
    return changed.as_dict()


@router.get("/reviews")
def reviews(
    services: ServicesDep, policy: PolicyDep, who: Registrar, page: PageDep
) -> dict[str, Any]:
    """The open reviews of protected-identity assignments whose sunset has come, oldest
    first, with who has approved each, a page at a time (`offset`, `limit`), with their
    `total` (listing them is logged: protected metadata)."""
    with services.session_scope() as session:
        listing = review_page(session, policy, who, page)
    return listing.as_dict("reviews")


@router.post("/reviews/{review_id}/approve")
def approve(services: ServicesDep, who: Registrar, review_id: str) -> dict[str, Any]:
    """Approve a review as the authenticated registrar. Once two different registrars have
    approved, the successor tier applies (a new OCFL version); approving twice is refused
    (422, REVIEW-DUPLICATE-APPROVAL) and does not count."""
    return approve_review(services, who, review_id).as_dict()


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: date = Field(description="the new sunset, later than today (YYYY-MM-DD)")
    reason: str = Field(max_length=2000, description="why the protection continues")


@router.post("/reviews/{review_id}/extend")
def extend(
    services: ServicesDep, who: Registrar, review_id: str, body: ExtendBody
) -> dict[str, Any]:
    """Keep the reviewed material protected until a later date, for a stated reason, as the
    authenticated registrar: the sunset moves and the review closes."""
    return extend_review(services, who, review_id, until=body.until, reason=body.reason).as_dict()


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requester: str = Field(max_length=500, description="the justice body")
    reference: str = Field(max_length=500, description="the request's reference")
    purpose: str = Field(max_length=64, description="e.g. third-party-justice")
    package: str = Field(max_length=128)
    paths: list[str] = Field(default_factory=list, max_length=10_000)


@router.post("/requests", status_code=201)
def new_request(
    services: ServicesDep, policy: PolicyDep, who: Registrar, body: RequestBody
) -> dict[str, Any]:
    """Record a request from a justice body."""
    with services.session_scope() as session:
        return record_request(
            session,
            policy,
            who,
            requester=body.requester,
            reference=body.reference,
            purpose=body.purpose,
            package=body.package,
            paths=body.paths,
        )


@router.get("/requests")
def requests(services: ServicesDep, who: Registrar, page: PageDep) -> dict[str, Any]:
    """The requests recorded, oldest first, a page at a time (`offset`, `limit`), with their
    `total`."""
    with services.sessions() as session:
        return list_requests(session, page).as_dict("requests")


@router.post("/requests/{request_id}/answer")
def answer(services: ServicesDep, who: Registrar, request_id: str) -> dict[str, Any]:
    """Answer a request with a court bundle (custos export): a BagIt bag with the files,
    sealed manifests, evidence records and VERIFY.txt."""
    return answer_request(services, who, request_id)


class ZipResponse(StreamingResponse):
    media_type = "application/zip"


@router.get("/requests/{request_id}/bundle", response_class=ZipResponse)
def bundle(services: ServicesDep, who: Registrar, request_id: str) -> ZipResponse:
    """Download the court bundle that answered a request, as a zip (streamed) whose one top
    folder, custos-bundle-<export id>/, is the BagIt bag (check it with
    `custos verify --bundle`). The download is an access event naming the registrar, the
    request and the export."""
    with services.session_scope() as session:
        download = bundle_of(session, services, who, request_id)
    return ZipResponse(
        download.chunks(),
        headers={"Content-Disposition": f'attachment; filename="{download.name}.zip"'},
    )


@router.get("/access-log")
def log(services: ServicesDep, who: Registrar, page: PageDep) -> dict[str, Any]:
    """Access, export, tier-change and review events, newest first, a page at a time
    (`offset`, `limit`; `total` is null: counting would read the whole custody log,
    `next_offset` says where the next page starts)."""
    with services.sessions() as session:
        return access_log(session, page).as_dict("events")


@router.get("/keys")
def keys(services: ServicesDep, who: Registrar) -> dict[str, Any]:
    """The tier keys (recipients, shares, threshold, last opening) and whether each is open
    in this serving process, until when, for what purpose and by whom."""
    with services.session_scope() as session:
        record_lapsed(session, services.keyring)
        return {"keys": [k.as_dict() for k in key_status(session, services.keyring)]}


class UnlockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: str = Field("protected-identity", max_length=32, description="the tier whose key")
    purpose: str = Field(max_length=64, description="why the key is opened, e.g. prosecution")
    share: str = Field(
        min_length=1,
        max_length=2000,
        repr=False,
        description="your share: its SLIP-39 words, as `custos keys init` handed them to you",
    )


@router.post("/keys/unlock")
def unlock(
    services: ServicesDep, policy: PolicyDep, who: Registrar, body: UnlockBody
) -> dict[str, Any]:
    """Present your share of a tier's key, for a stated purpose. Once as many different
    registrars as the key's threshold have presented theirs for the same purpose, the key is
    open in this serving process for `keys.unlock_minutes`, then dropped; shares presented
    wait as long. A registrar's second share does not count (422,
    KEY-SHARE-SAME-REGISTRAR), nor does a share of another set (KEY-SHARE-SET). Each share
    presented and the opening are custody events naming the registrars, never the share."""
    with services.session_scope() as session:
        return present_share(
            session,
            services.keyring,
            who,
            tier=body.tier,
            share=body.share,
            purpose=body.purpose,
            policy=policy,
            minutes=services.settings.keys.unlock_minutes,
        ).as_dict()


class LockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: str = Field("protected-identity", max_length=32)


@router.post("/keys/lock")
def lock(services: ServicesDep, who: Registrar, body: LockBody) -> dict[str, Any]:
    """Close a tier's key now in this serving process (and drop shares waiting to open it);
    a custody event names who locked it."""
    with services.session_scope() as session:
        locked = lock_key(session, services.keyring, who, body.tier)
    return {"tier": body.tier, "locked": locked}
