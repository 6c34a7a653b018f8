"""A package's ``custos/access.json`` in storage: read the head's document, and write a new
version holding an updated one with its PREMIS events.

Storage is the record, the catalog an index of it (ARCHITECTURE.md, principle 1): every change
of access (a registrar's tier change, a sunset's move, a review opened, approved or extended)
is a new OCFL version of ``custos/access.json`` and ``custos/premis.xml``
(:func:`archive.versions.append_version`), then, in one transaction, the catalog's version
row, access rows, custody events and the public search index. A caller holds
``services.commit_lock()`` from :func:`read_access` to :func:`write_access`, so two
changes to one package cannot interleave and each starts from what storage holds.

Raises :class:`StorageError` when the object holds no ``custos/access.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive import clock, outbox
from archive.catalog.index import ACCESS_JSON, PREMIS_XML, replace_access, run_index_hooks
from archive.catalog.tables import File
from archive.custody import parse_premis, premis_xml, record_events
from archive.errors import StorageError
from archive.model import EventRecord, Link
from archive.services import Services
from archive.storage.ocfl import head_state
from archive.versions import append_version, catalog_version, finish


@dataclass(frozen=True)
class StoredAccess:
    """``custos/access.json`` of an object's head, and the PREMIS events beside it."""

    rel: str
    access: dict[str, Any]
    events: list[EventRecord]


def read_access(services: Services, rel: str) -> StoredAccess:
    """The head's access document and events of the object at ``rel`` (storage-relative),
    read from the primary."""
    stored = services.primary.object(rel)
    state = head_state(stored.inventory())
    if ACCESS_JSON not in state:
        raise StorageError(
            f"the object at {rel} holds no {ACCESS_JSON}",
            hint="objects stored before access tiers existed need a tier change first",
        )
    access = json.loads(stored.read_bytes(state[ACCESS_JSON]))
    events = parse_premis(stored.read_bytes(state[PREMIS_XML]))
    return StoredAccess(rel, access, events)


def what_of(path: str) -> str:
    """How events name an assignment's path without naming it (paths may identify people)."""
    return "the package" if path == "" else "a file or folder of the package"


def file_digests(session: Session, package_id: str, paths: Iterable[str]) -> dict[str, str]:
    """sha512 of each of ``paths`` (``data/…``) that is a payload file of the package."""
    logical = [f"bag/{p}" for p in paths if p]
    if not logical:
        return {}
    return {
        lp.removeprefix("bag/"): digest
        for lp, digest in session.execute(
            select(File.logical_path, File.sha512).where(
                File.package_id == package_id,
                File.role == "payload",
                File.logical_path.in_(logical),
            )
        )
    }


def links_of(package_id: str, path: str, digests: dict[str, str]) -> list[Link]:
    """An event's links for a change of ``path``: the package, and the file by its digest,
    never by its name."""
    links = [Link("package", package_id)]
    if path in digests:
        links.append(Link("file", f"sha512:{digests[path]}", "tier changed"))
    return links


def write_access(
    services: Services,
    package_id: str,
    stored: StoredAccess,
    access: dict[str, Any],
    events: list[EventRecord],
    *,
    message: str,
    agent: str,
) -> int:
    """Write ``access`` and the head's events plus ``events`` as the object's next version,
    then record it in the catalog with ``events`` and re-index the package (search included),
    in one transaction. Returns the new version's number."""
    body = (json.dumps(access, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    new = append_version(
        services.primary,
        stored.rel,
        {ACCESS_JSON: body, PREMIS_XML: premis_xml([*stored.events, *events])},
        message=message,
        agent=agent,
        created=clock.local_now(),
    )
    with services.session_scope() as session:
        catalog_version(session, package_id, new, message=message, agent=agent)
        replace_access(session, package_id, access)
        record_events(session, events, package_id=package_id)
        run_index_hooks(session, package_id)
        # Files now public have text for the search to read.
        outbox.add(session, outbox.CHARACTERISE, package_id)
    finish(services.store, new)
    return new.number
