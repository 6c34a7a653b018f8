"""``GET /health``: the server answers and can read its catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(services: ServicesDep) -> dict[str, Any]:
    with services.sessions() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok"}
