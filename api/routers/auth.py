"""Sessions (``/auth/sessions``): one TOTP code for many requests, for a short time.

``POST /auth/sessions`` with the API token (and, for registrars, a fresh code in
``X-Custos-TOTP``) answers a session token, shown once, and its expiry; requests then send
``Authorization: Bearer <session token>`` and no code. ``DELETE /auth/sessions/current``
ends the session the request came with. The logic is in :mod:`access.accounts.sessions`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from access.accounts.sessions import end_session, start_session
from access.accounts.users import USER_ROLES
from access.decisions.rules import Principal
from api.deps import PolicyDep, ServicesDep, client_address, role

router = APIRouter(prefix="/auth", tags=["authentication"])
User = Annotated[Principal, role(*USER_ROLES)]


@router.post("/sessions", status_code=201)
def start(request: Request, services: ServicesDep, policy: PolicyDep, who: User) -> JSONResponse:
    """Start a session: send your API token and, if your role needs a second factor, the
    current TOTP code (used up by this request). The answer holds the session token (shown
    once) and when it expires (`auth.session_minutes`); send it as
    `Authorization: Bearer <session token>`, with no code, until then. A session carries your
    role and nothing more."""
    with services.session_scope() as session:
        new = start_session(
            session,
            who,
            policy=policy,
            auth=services.settings.auth,
            address=client_address(request),
        )
    # The token must not be kept by any cache on the way.
    return JSONResponse(new.as_dict(), status_code=201, headers={"Cache-Control": "no-store"})


@router.delete("/sessions/current")
def end(request: Request, services: ServicesDep, who: User) -> dict[str, Any]:
    """End the session this request is made with: its token is refused from now on."""
    with services.session_scope() as session:
        at = end_session(session, who, address=client_address(request))
    return {
        "status": "ended",
        "session": who.session,
        "ended_at": at.isoformat().replace("+00:00", "Z"),
    }
