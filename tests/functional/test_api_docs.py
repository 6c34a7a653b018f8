"""``GET /docs``: the API's routes as one HTML page made from ``/openapi.json``, with nothing
loaded from outside the archive (no CDN script or style, as FastAPI's Swagger UI would load)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import MakeServices

#: A URL to another host in an attribute the browser loads or follows (src, href, action…),
#: or in CSS (url(), @import).
EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)|(?:@import\s)""",
    re.IGNORECASE,
)


def test_docs_lists_every_route_of_the_openapi_document_and_loads_nothing_from_outside(
    make_services: MakeServices,
) -> None:
    services = make_services()
    with TestClient(create_app(services.settings)) as client:
        schema = client.get("/openapi.json")
        page = client.get("/docs")  # no credentials needed

    assert schema.status_code == 200
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for path, item in schema.json()["paths"].items():
        for method in item:
            assert f"<code>{method.upper()} {path}</code>" in html, (method, path)
    # Parameters and request bodies are described, not only listed.
    assert "X-Custos-Checksum" in html  # the upload's checksum header
    assert "<code>legal_basis</code>" in html  # a field of the tier change's JSON body
    assert "application/octet-stream" in html  # the upload's raw body
    assert 'href="/openapi.json"' in html
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert "<script" not in html.lower()


def test_the_external_url_check_would_catch_a_cdn() -> None:
    for tag in (
        '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js">',
        "<link rel=stylesheet href=//cdn.example/x.css>",
        "<style>@import 'x.css'</style>",
        '<div style="background: url(http://example.org/a.png)">',
    ):
        assert EXTERNAL.search(tag), tag
    assert not EXTERNAL.search('<a href="/openapi.json">') and not EXTERNAL.search(
        '<a href="#get-health">'
    )
