"""Archivists: packages, versions, files, events, fixity and seal status.

Metadata of every tier, as the policy allows archivists (reads of non-public metadata are
logged); content only as the policy decides (through :mod:`access.decisions.reads`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.decisions.rules import (
    Principal,
    access_event,
    load_rules,
    may_see,
    must_log,
    record_reads,
)
from access.paging import Listing, Page
from archive.catalog.queries import list_packages, package_detail
from archive.catalog.tables import Seal
from archive.errors import Forbidden
from policies.schema import AccessPolicy


def packages(session: Session, policy: AccessPolicy, reader: Principal, page: Page) -> Listing:
    """The packages the policy lets ``reader`` see the metadata of, oldest first, with their
    tier: one page of them, with their total. The reads of those on the page that the policy
    logs are recorded in the caller's transaction."""
    visible = []
    for s in list_packages(session):
        rules = load_rules(session, s.id, s.depositor)
        ok, decisions = may_see(
            policy, rules, "", reader=reader, action="read-metadata", purpose=None
        )
        if ok:
            visible.append((s, rules, decisions))
    out, events = [], []
    for s, rules, decisions in page.of(visible):
        out.append(
            {
                "package_id": s.id,
                "title": s.title,
                "depositor": s.depositor,
                "created_at": s.created_at.isoformat(),
                "head": s.head,
                "payload_files": s.files,
                "payload_bytes": s.bytes,
                "tier": next((a.tier for a in rules.assignments if a.path == ""), "undeclared"),
            }
        )
        if must_log(decisions):
            events.append(
                access_event(
                    reader, s.id, "package metadata listed", purpose=None, decisions=decisions
                )
            )
    record_reads(session, events)
    return Listing.counted(page, out, len(visible))


def detail(
    session: Session, policy: AccessPolicy, reader: Principal, package_id: str
) -> dict[str, Any]:
    """Versions, files (those whose metadata the policy lets ``reader`` see), events, access
    records and seals of a package; the read is recorded when the policy logs it. Raises
    NotFound, Forbidden."""
    d = package_detail(session, package_id)
    rules = load_rules(session, d.summary.id, d.summary.depositor)
    ok, decisions = may_see(policy, rules, "", reader=reader, action="read-metadata", purpose=None)
    if not ok:
        last = decisions[-1]
        raise Forbidden(
            f"read refused ({last.reason_code}): {last.explanation}",
            hint=f"decided under {last.policy}; a registrar can tell you what the material needs",
        )
    files = []
    for f in d.files:
        if f.role == "payload":
            seen, ds = may_see(
                policy, rules, f.logical_path.removeprefix("bag/"), reader=reader,
                action="read-metadata", purpose=None,
            )  # fmt: skip
            if not seen:
                continue
            decisions += ds
        files.append(
            {
                "logical_path": f.logical_path,
                "content_path": f.content_path,
                "version": f.version,
                "role": f.role,
                "size": f.size,
                "sha512": f.sha512,
                "sha256": f.sha256,
                "puid": f.puid,
                "mime_type": f.mime_type,
                "format_name": f.format_name,
            }
        )
    seals = session.execute(
        select(Seal.subject_path, Seal.record_path).where(Seal.package_id == d.summary.id)
    ).all()
    subjects = [f"v{v.number}/inventory.json" for v in d.versions]
    sealed = {s for s, _ in seals}
    body = {
        "package_id": d.summary.id,
        "title": d.summary.title,
        "depositor": d.summary.depositor,
        "deposit_id": d.deposit_id,
        "created_at": d.summary.created_at.isoformat(),
        "head": d.summary.head,
        "versions": [
            {
                "number": v.number,
                "created_at": v.created_at.isoformat(),
                "message": v.message,
                "agent": v.agent,
                "inventory_sha512": v.inventory_sha512,
                "seal": "sealed" if f"v{v.number}/inventory.json" in sealed else "awaiting seal",
            }
            for v in d.versions
        ],
        "files": files,
        "access": [
            {
                "path": a.path,
                "tier": a.tier,
                "sunset": a.sunset.isoformat() if a.sunset else None,
                "successor": a.successor,
                "legal_basis": a.legal_basis,
                "consent": list(a.consent) if a.consent is not None else None,
            }
            for a in d.access
        ],
        "events": [
            {
                "uuid": e.uuid,
                "type": e.type,
                "occurred_at": e.occurred_at.isoformat(),
                "agent": e.agent,
                "outcome": e.outcome,
                "detail": e.detail,
            }
            for e in d.events
        ],
        "seals": {
            "sealed": sorted(sealed),
            "awaiting": [s for s in subjects if s not in sealed],
            "records": sorted(r for _, r in seals),
        },
    }
    events = []
    if must_log(decisions):
        events.append(
            access_event(
                reader,
                d.summary.id,
                f"package metadata read ({len(files)} file rows)",
                purpose=None,
                decisions=decisions,
            )
        )
    record_reads(session, events)
    return body
