"""What anyone may ask, with no credentials: ``GET /health`` (the server answers and can read
its catalog) and ``GET /trust`` (the archive's trust anchors, to compare with a bundle's)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from access.export.trust import published_anchors
from api.deps import ServicesDep

router = APIRouter()


@router.get("/health", tags=["health"])
def health(services: ServicesDep) -> dict[str, Any]:
    with services.sessions() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/trust", tags=["trust"])
def trust(services: ServicesDep) -> dict[str, Any]:
    """The archive's trust anchors: the certificates its timestamps verify against. For each,
    `sha256` of the PEM file's bytes (as a bundle's custos-bundle.json lists it, and as
    `sha256sum` prints it), `certificate_sha256` of the certificate's DER (as
    `openssl x509 -noout -fingerprint -sha256` prints it), its subject, `not_after` and the PEM
    text. A bundle checked with the anchors it carries is sound only if they are these."""
    return {"trust_anchors": [a.as_dict() for a in published_anchors(services)]}
