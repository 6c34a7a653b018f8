"""The FastAPI application: ``create_app(settings)``; the lifespan opens the services.

One router per user group (``api/routers``): the public reading room and its JSON twin for
researchers, depositors, registrars, archivists, the Archivematica Storage Service
interface, and sessions (``/auth``); ``/docs`` describes the API from its OpenAPI document
(``/openapi.json``) as a plain page. Routers are thin: parse, call one service function in
``access``, render.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from api import errors
from api.routers import (
    archivematica,
    archivist,
    auth,
    deposits,
    health,
    public,
    reading_room,
    reference,
    registrar,
)
from archive.config import Settings
from archive.jobs import OutboxRunner
from archive.outbox import CHARACTERISE, SEAL
from archive.services import open_services

DESCRIPTION = """\
The Custos service API. Researchers and anonymous readers see the public tier only; every
read of restricted or protected-identity material states a purpose and is recorded in the
custody log. Credentials: `Authorization: Bearer <token>` (from `custos users add`);
registrars add the current TOTP code in `X-Custos-TOTP` (each code is accepted once), or start
a session with one code (`POST /auth/sessions`) and send its token instead, with no code,
until it expires. Errors are `application/problem+json`.
"""


def create_app(settings: Settings, *, run_outbox: bool = False) -> FastAPI:
    """The application. With ``run_outbox`` (what ``custos serve`` passes from
    ``queue.in_serve``), a thread of the server runs the work that commits leave in the
    outbox (identify, seal, replicate, migrate), and looks for characterisation and seals
    left pending on their schedule, so that no worker is needed on one machine."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings)
        app.state.services = services
        app.state.outbox_runner = None
        if run_outbox:
            app.state.outbox_runner = OutboxRunner(
                services,
                periodic=[
                    (CHARACTERISE, settings.characterisation.every_minutes),
                    (SEAL, settings.fixity.seal_every_minutes),
                ],
            )
            app.state.outbox_runner.start()
        # A few threads wait for a server database at once: enough to overlap its work with
        # ours, few enough that they do not fight over the interpreter.
        app.state.database_waits = anyio.CapacityLimiter(3)
        try:
            yield
        finally:
            if app.state.outbox_runner is not None:
                app.state.outbox_runner.stop()
            services.close()

    app = FastAPI(
        title="Custos",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    for router in (
        health.router,
        auth.router,
        public.router,
        reading_room.router,
        deposits.router,
        registrar.router,
        archivist.router,
        archivematica.router,
        reference.router,
    ):
        app.include_router(router)
    return app
