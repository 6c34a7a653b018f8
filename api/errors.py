"""One error handler for the API: every error is ``application/problem+json`` (RFC 9457).

A :class:`CustosError` becomes a problem whose ``detail`` is its message and ``hint`` what to
do (``diagnostics()`` without the decoration), with the HTTP status of its family. Request
validation errors name each field. Anything else is a 500 with no internal detail: the
traceback goes to the server's log, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from access.decisions.rules import NOT_AVAILABLE, NOT_AVAILABLE_HINT
from archive.errors import (
    AccessError,
    AuthenticationFailed,
    CatalogError,
    ConfigError,
    CustosError,
    Forbidden,
    InputRejected,
    KeyLocked,
    NotFound,
    PolicyError,
    ProofError,
    SecondFactorRequired,
    StorageError,
    StorageFull,
    TooManyAttempts,
)

PROBLEM = "application/problem+json"
log = logging.getLogger("custos.api")

_STATUS: tuple[tuple[type[CustosError], int, str], ...] = (
    (TooManyAttempts, 429, "Too Many Requests"),
    (AuthenticationFailed, 401, "Unauthorized"),
    (SecondFactorRequired, 401, "Second factor required"),
    (Forbidden, 403, "Forbidden"),
    (KeyLocked, 423, "Locked"),
    (AccessError, 403, "Forbidden"),
    (NotFound, 404, "Not Found"),
    (InputRejected, 422, "Request refused"),
    (PolicyError, 403, "Refused by policy"),
    (ProofError, 502, "Proof not available"),
    (StorageFull, 507, "Insufficient Storage"),
    (StorageError, 503, "Storage unavailable"),
    (CatalogError, 503, "Catalog unavailable"),
    (ConfigError, 500, "Server misconfigured"),
)


def status_of(exc: CustosError) -> tuple[int, str]:
    for cls, status, title in _STATUS:
        if isinstance(exc, cls):
            return status, title
    return 500, "Internal Server Error"


def problem(
    status: int, title: str, detail: str, *, retry_after: int | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v not in (None, "", [])})
    headers = {"WWW-Authenticate": 'Bearer realm="custos"'} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def custos_problem(exc: CustosError) -> JSONResponse:
    status, title = status_of(exc)
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.diagnostics())
    findings = [f.as_dict() for f in exc.findings] if isinstance(exc, InputRejected) else None
    return problem(
        status,
        title,
        exc.message,
        hint=exc.hint,
        code=type(exc).__name__,
        findings=findings,
        retry_after=exc.retry_after if isinstance(exc, TooManyAttempts) else None,
    )


async def _custos(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CustosError)
    return custos_problem(exc)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    findings = [
        {
            "code": "REQUEST-INVALID",
            "severity": "error",
            "message": str(e.get("msg", "invalid")),
            "path": ".".join(str(p) for p in e.get("loc", ())),
        }
        for e in exc.errors()
    ]
    return problem(
        422,
        "Request refused",
        "the request's parameters are not valid",
        hint="fix each parameter listed in findings",
        code="InputRejected",
        findings=findings,
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        # Unknown routes answer like unavailable material: nothing to tell apart.
        return problem(404, "Not Found", NOT_AVAILABLE, hint=NOT_AVAILABLE_HINT, code="NotFound")
    return problem(
        exc.status_code,
        str(exc.detail),
        str(exc.detail),
        hint="GET /openapi.json lists the routes, the methods each accepts and their parameters",
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The route's template, not the URL: a file's path may name a person.
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    log.exception("unexpected error on %s %s", request.method, route)
    return problem(
        500,
        "Internal Server Error",
        "the server failed to answer; nothing was changed by this request",
        hint="try again later; the server's log holds the details",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(CustosError, _custos)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
