"""schemathesis over /openapi.json: generated requests to every operation, anonymous and with
a token, must never meet a server error (5xx), and every error must be problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from access.accounts.users import add_user
from access.decisions.rules import access_policy
from api.app import create_app
from archive.services import Services, open_services
from tests.conftest import SAMPLE, MakeSettings
from tests.helpers import deposit


@pytest.fixture
def api_schema(make_settings: MakeSettings) -> Iterator[Any]:
    app_settings = make_settings()
    services: Services = open_services(app_settings)
    deposit(services, SAMPLE, depositor="Sample Mechanism")
    with services.session_scope() as session:
        user = add_user(session, "arno", role="archivist", policy=access_policy(services.settings))
    app = create_app(app_settings)
    app.state.services = services  # schemathesis calls the app without its lifespan
    app.state.database_waits = anyio.CapacityLimiter(3)
    app.state.token = user.token
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        services.close()


def test_no_server_error(api_schema: Any) -> None:
    """Each operation in turn (schemathesis' own pytest plugin does not run on this pytest)."""
    token = api_schema.app.state.token
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            for headers in ({}, {"Authorization": f"Bearer {token}"}):
                response = case.call(headers={**(case.headers or {}), **headers})
                case.validate_response(response, checks=(not_a_server_error,))
                if response.status_code >= 400:
                    content_type = response.headers["content-type"]
                    if isinstance(content_type, list):
                        content_type = content_type[0]
                    assert content_type.startswith(("application/problem+json", "text/html")), (
                        case.operation.label,
                        response.status_code,
                        response.text,
                    )

        run()
