"""``GET /docs``: the API described as one plain HTML page, made from the OpenAPI document the
app serves at ``/openapi.json``: every route with its method, path, summary, parameters,
request body and answers.

FastAPI's own Swagger UI loads its scripts and styles from a CDN; the archive loads nothing
from outside itself, so this page is rendered here, with no JavaScript and no external asset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
METHODS = ("get", "put", "post", "patch", "delete")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> Markup:
    """Text with Markdown's `code` shown as code, everything else escaped."""
    return Markup(_CODE.sub(r"<code>\1</code>", str(escape(text))))  # noqa: S704 (escaped above)


def first_sentence(text: str) -> str:
    """The first sentence of a route's description (what the routes table shows)."""
    flat = " ".join(text.split())
    end = re.search(r"(?<=[a-z0-9)]\.)\s(?=[A-Z`])", flat)
    return flat[: end.start()] if end else flat


templates.env.filters["inline"] = inline
templates.env.filters["first_sentence"] = first_sentence


@dataclass(frozen=True)
class Param:
    """A parameter, or a field of a JSON request body."""

    name: str
    where: str
    kind: str
    required: bool
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    description: str
    anchor: str
    parameters: list[Param] = field(default_factory=list)
    body_type: str = ""
    body_description: str = ""
    body_fields: list[Param] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        found = document.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1])
        return found if isinstance(found, dict) else {}
    return schema


def kind_of(schema: dict[str, Any]) -> str:
    """A schema in a few words: ``string (date)``, ``array of string``, ``integer or null``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(kind_of(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return "array of " + kind_of(schema.get("items", {}))
    if "format" in schema:
        kind += f" ({schema['format']})"
    bounds = [
        f"{word} {schema[key]}"
        for key, word in (
            ("minimum", "≥"),
            ("maximum", "≤"),
            ("minLength", "length ≥"),
            ("maxLength", "length ≤"),
        )
        if key in schema
    ]
    return ", ".join([kind, *bounds])


def routes_of(document: dict[str, Any]) -> list[Route]:
    """Every operation of an OpenAPI document, in its order."""
    routes: list[Route] = []
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            parameters = [
                Param(
                    name=p.get("name", ""),
                    where=p.get("in", ""),
                    kind=kind_of(p.get("schema", {})),
                    required=bool(p.get("required")),
                    description=p.get("description", ""),
                )
                for p in operation.get("parameters", [])
            ]
            body = operation.get("requestBody", {})
            body_type, body_fields = "", []
            for content_type, content in body.get("content", {}).items():
                body_type = content_type
                schema = _resolve(content.get("schema", {}), document)
                needed = set(schema.get("required", []))
                body_fields = [
                    Param(
                        name=name,
                        where="body",
                        kind=kind_of(prop),
                        required=name in needed,
                        description=prop.get("description", ""),
                    )
                    for name, prop in schema.get("properties", {}).items()
                ]
                break
            routes.append(
                Route(
                    method=method.upper(),
                    path=path,
                    summary=operation.get("summary", ""),
                    description=operation.get("description", ""),
                    anchor=f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
                    parameters=parameters,
                    body_type=body_type,
                    body_description=body.get("description", ""),
                    body_fields=body_fields,
                    answers=[
                        (code, answer.get("description", ""))
                        for code, answer in operation.get("responses", {}).items()
                    ],
                )
            )
    return routes


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    """The API's routes, as HTML."""
    document = request.app.openapi()
    info = document.get("info", {})
    return templates.TemplateResponse(
        request,
        "api_docs.html",
        {
            "title": info.get("title", ""),
            "version": info.get("version", ""),
            "description": info.get("description", ""),
            "routes": routes_of(document),
        },
    )
