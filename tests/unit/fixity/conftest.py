"""Archives with replica locations (a local folder, S3 on the real SeaweedFS server) and a
few packages in them."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archive.catalog.tables import Event, EventLink
from archive.services import Services
from fixity.replication import ReplicationReport, replicate
from tests.conftest import MakeServices
from tests.helpers import deposit, make_bag
from tests.servers import SeaweedServer


def s3_settings(server: SeaweedServer, bucket: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "s3",
        "endpoint_url": server.endpoint_url,
        "bucket": bucket or f"t-{uuid.uuid4().hex[:12]}",
        "prefix": "custos",
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "retention_days": 1,
        "connect_timeout": 1.0,
        "read_timeout": 10.0,
        "max_attempts": 2,
        **extra,
    }


def local_settings(path: Path) -> dict[str, Any]:
    return {"kind": "local", "path": str(path), "fsync": False}


def add_package(services: Services, folder: Path, files: int = 4, size: int = 3000) -> str:
    """Ingest a bag of ``files`` random files; return the package id."""
    name = uuid.uuid4().hex[:8]
    payload = {f"f{i:03d}-{name}.bin": os.urandom(size + i) for i in range(files)}
    bag = make_bag(folder / f"bag-{name}", payload)
    return deposit(services, bag, depositor="Test Mechanism").package_id


def checks_per_copy(services: Services) -> dict[tuple[str | None, str, str], int]:
    """How many fixity events each copy (package, file, location) has."""
    with services.sessions() as s:
        rows = s.execute(
            select(Event.package_id, EventLink.object_id, EventLink.role, func.count())
            .join(EventLink, EventLink.event_id == Event.id)
            .where(Event.type == "fixity check", EventLink.object_type == "file")
            .group_by(Event.package_id, EventLink.object_id, EventLink.role)
        ).all()
    return {(p, f, loc): n for p, f, loc, n in rows}


def small_batches(services: Services, files: int) -> None:
    """Runs claim ``files`` copies at a time (several batches: the helper reads ahead)."""
    fixity = services.settings.fixity.model_copy(update={"batch_files": files})
    services.settings = services.settings.model_copy(update={"fixity": fixity})


def kill_after(server: SeaweedServer, copies: int) -> Callable[[int], None]:
    """A replication progress callback that kills the S3 server at the ``copies``-th copy."""
    seen = 0

    def progress(_n: int) -> None:
        nonlocal seen
        seen += 1
        if seen == copies:
            server.kill()

    return progress


def replicate_until_ok(services: Services, seconds: float = 60.0) -> ReplicationReport:
    """Replicate until a run succeeds (S3 may answer after a restart before its volume server
    is ready, so a run may still fail, and say so, before one succeeds)."""
    deadline = time.monotonic() + seconds
    report = replicate(services)
    while not report.ok and time.monotonic() < deadline:
        time.sleep(1)
        report = replicate(services)
    return report


ArchiveFactory = Callable[..., Services]


@pytest.fixture
def archive(make_services: MakeServices, tmp_path: Path) -> ArchiveFactory:
    """``archive(catalog, second=..., offsite=...)``: services with those locations."""

    def make(catalog: str = "", **locations: dict[str, Any]) -> Services:
        return make_services(catalog, locations=locations, identify_formats=False)

    return make
