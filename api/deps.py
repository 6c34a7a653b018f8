"""Request dependencies: the services, the access policy, and who is asking.

Credentials: ``Authorization: Bearer <token>`` (or ``ApiKey <user>:<token>``, the Archivematica
Storage Service form); no header is the anonymous reader. A header that is present but wrong
is refused (401), never downgraded to anonymous. ``X-Custos-TOTP`` carries the second factor.
``Bearer <session token>`` (``POST /auth/sessions``, :mod:`access.accounts.sessions`) stands for its
user with the second factor verified when the session started; a code sent with it is not
read (neither checked nor used up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from access.accounts.sessions import is_session_token, session_principal
from access.accounts.users import (
    FailureWindow,
    by_name_and_key,
    by_token,
    principal,
    require_second_factor,
)
from access.decisions.rules import (
    ANONYMOUS,
    BAD_CREDENTIALS,
    BAD_CREDENTIALS_HINT,
    Principal,
    access_policy,
)
from access.paging import LIMIT_DEFAULT, LIMIT_MAX, OFFSET_MAX, Page
from archive.catalog.tables import User
from archive.config import AuthSettings
from archive.errors import AuthenticationFailed, Forbidden, SecondFactorRequired
from archive.services import Services
from policies.schema import AccessPolicy

# Cheap dependencies are coroutines: a plain function would cost a trip to the thread pool
# on every request.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_policy(services: ServicesDep) -> AccessPolicy:
    return access_policy(services.settings)


PolicyDep = Annotated[AccessPolicy, Depends(get_policy)]

AuthHeader = Annotated[
    str | None,
    Header(
        alias="Authorization",
        description="`Bearer <token>` (an API token, or a session token from "
        "`POST /auth/sessions`), or `ApiKey <user>:<token>`; none for anonymous reading",
    ),
]
TotpHeader = Annotated[
    str | None,
    Header(
        alias="X-Custos-TOTP",
        description="The current TOTP code (roles that need one, with an API token); each "
        "code is accepted once. Not read with a session token (the session carries it)",
    ),
]


def _credentials(
    session: Session, header: str, *, totp: str | None, auth: AuthSettings
) -> Principal:
    """Who ``header`` (and ``totp``) prove the caller to be: a session token's user and
    second factor (``totp`` not read), else the API token's user with ``totp`` checked."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and is_session_token(value):
        return session_principal(session, value)
    user = _user_from_header(session, header)
    return principal(user, totp=totp, session=session, auth=auth)


def _user_from_header(session: Session, header: str) -> User:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value:
        return by_token(session, value)
    if scheme.lower() == "apikey" and ":" in value:
        name, _, key = value.partition(":")
        return by_name_and_key(session, name.strip(), key)
    raise AuthenticationFailed(BAD_CREDENTIALS, hint=BAD_CREDENTIALS_HINT)


def _failures(request: Request, services: Services) -> FailureWindow:
    window: FailureWindow | None = getattr(request.app.state, "auth_failures", None)
    if window is None:
        window = FailureWindow(services.settings.auth.failures_per_minute)
        request.app.state.auth_failures = window
    return window


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _identify(
    request: Request, services: Services, check: Callable[[Session], Principal]
) -> Principal:
    """Run ``check`` unless this address has used up its wrong credentials for the minute;
    count it if the credentials are wrong."""
    window, address = _failures(request, services), client_address(request)
    window.check(address)
    try:
        with services.sessions() as session:
            return check(session)
    except (AuthenticationFailed, SecondFactorRequired):
        window.failed(address)
        raise


async def reader(
    request: Request,
    services: ServicesDep,
    authorization: AuthHeader = None,
    totp: TotpHeader = None,
) -> Principal:
    """Who is asking: anonymous without credentials, else the user (or a refusal)."""
    if authorization is None:
        if totp is not None:
            raise AuthenticationFailed(
                "a TOTP code was sent without credentials", hint=BAD_CREDENTIALS_HINT
            )
        return ANONYMOUS
    header, auth = authorization, services.settings.auth

    def check(session: Session) -> Principal:
        return _credentials(session, header, totp=totp, auth=auth)

    return await run_in_threadpool(_identify, request, services, check)


ReaderDep = Annotated[Principal, Depends(reader)]


async def page(
    offset: Annotated[
        int, Query(ge=0, le=OFFSET_MAX, description="How many items to skip (default 0).")
    ] = 0,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=LIMIT_MAX,
            description=f"How many items to answer (default {LIMIT_DEFAULT}, at most {LIMIT_MAX}).",
        ),
    ] = LIMIT_DEFAULT,
) -> Page:
    """The page of a list asked for: every list of the API is paged the same way (a value
    out of bounds is refused, 422, naming the parameter)."""
    return Page(offset, limit)


PageDep = Annotated[Page, Depends(page)]


def wake_outbox(request: Request) -> None:
    """A commit has queued work in the outbox: wake this server's own runner, if it runs one
    (``queue.in_serve``); otherwise a worker finds it."""
    runner = getattr(request.app.state, "outbox_runner", None)
    if runner is not None:
        runner.wake()


def role(*allowed: str, second_factor: bool = False) -> Any:
    """A dependency admitting only ``allowed`` roles (and a verified TOTP when asked)."""

    async def check(who: ReaderDep) -> Principal:
        if who.role == "anonymous":
            raise AuthenticationFailed("this service needs credentials", hint=BAD_CREDENTIALS_HINT)
        if who.role not in allowed:
            raise Forbidden(
                f"the {who.role} role may not use this service",
                hint=f"it is for: {', '.join(allowed)}",
            )
        if second_factor:
            require_second_factor(who)
        return who

    return Depends(check)


def compat_reader(
    request: Request,
    services: ServicesDep,
    authorization: AuthHeader = None,
    username: Annotated[str | None, Query(description="Storage Service user name")] = None,
    api_key: Annotated[str | None, Query(description="Storage Service API key")] = None,
) -> Principal:
    """Archivematica Storage Service credentials: ``username`` + ``api_key`` parameters or
    ``Authorization: ApiKey user:key``. Archivists only."""
    if authorization is None and (username is None or api_key is None):
        raise AuthenticationFailed(
            "this service needs credentials",
            hint="pass username and api_key, or `Authorization: ApiKey user:key`",
        )

    def check(session: Session) -> Principal:
        if authorization is not None:
            return _credentials(session, authorization, totp=None, auth=services.settings.auth)
        assert username is not None and api_key is not None
        user = by_name_and_key(session, username, api_key)
        return principal(user, totp=None, session=session)

    who = _identify(request, services, check)
    if who.role != "archivist":
        raise Forbidden(
            f"the {who.role} role may not use the Storage Service interface",
            hint="it is for archivists",
        )
    return who


CompatReaderDep = Annotated[Principal, Depends(compat_reader)]


async def public_reader(who: ReaderDep) -> Principal:
    """The public endpoints serve anonymous readers and researchers; staff use their own."""
    if who.role not in ("anonymous", "researcher"):
        raise Forbidden(
            f"the public endpoints serve anonymous readers and researchers, not the {who.role} "
            "role",
            hint="send no token to read the public record, or use your role's endpoints",
        )
    return who


PublicReaderDep = Annotated[Principal, Depends(public_reader)]
