"""Custody events: PREMIS events in the catalog and as PREMIS 3 XML inside each object.

Events are written in batches (one INSERT per table per batch). Details never hold protected
content or identities: codes, counts, digests and paths only.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from archive.catalog.tables import Event, EventLink
from archive.model import EventRecord, Link, Outcome

PREMIS_NS = "http://www.loc.gov/premis/v3"
AGENT = "Custos"


def now() -> datetime:
    return datetime.now(UTC)


def new_event(
    type_: str,
    outcome: Outcome,
    detail: str = "",
    *,
    links: Sequence[Link] = (),
    agent: str = AGENT,
    at: datetime | None = None,
) -> EventRecord:
    return EventRecord(
        uuid=str(uuid.uuid4()),
        type=type_,
        occurred_at=at or now(),
        agent=agent,
        outcome=outcome,
        detail=detail,
        links=tuple(links),
    )


def record_events(
    session: Session, events: Sequence[EventRecord], *, package_id: str | None = None
) -> None:
    """Append events to the catalog in one batch per table. The caller commits."""
    if not events:
        return
    returned = session.execute(
        insert(Event).returning(Event.uuid, Event.id, sort_by_parameter_order=True),
        [
            {
                "uuid": e.uuid,
                "type": e.type,
                "occurred_at": e.occurred_at,
                "agent": e.agent,
                "outcome": e.outcome,
                "detail": e.detail,
                "package_id": package_id,
            }
            for e in events
        ],
    )
    ids = {u: i for u, i in returned}
    link_rows = [
        {
            "event_id": ids[e.uuid],
            "object_type": link.object_type,
            "object_id": link.object_id,
            "role": link.role,
        }
        for e in events
        for link in e.links
    ]
    if link_rows:
        session.execute(insert(EventLink), link_rows)


def _q(tag: str) -> str:
    return f"{{{PREMIS_NS}}}{tag}"


def premis_xml(events: Iterable[EventRecord]) -> bytes:
    """PREMIS 3 XML (premis:premis with one premis:event per event)."""
    ET.register_namespace("premis", PREMIS_NS)
    root = ET.Element(_q("premis"), {"version": "3.0"})
    for e in events:
        ev = ET.SubElement(root, _q("event"))
        ident = ET.SubElement(ev, _q("eventIdentifier"))
        ET.SubElement(ident, _q("eventIdentifierType")).text = "UUID"
        ET.SubElement(ident, _q("eventIdentifierValue")).text = e.uuid
        ET.SubElement(ev, _q("eventType")).text = e.type
        ET.SubElement(ev, _q("eventDateTime")).text = e.occurred_at.astimezone(UTC).isoformat()
        if e.detail:
            info = ET.SubElement(ev, _q("eventDetailInformation"))
            ET.SubElement(info, _q("eventDetail")).text = e.detail
        outcome = ET.SubElement(ev, _q("eventOutcomeInformation"))
        ET.SubElement(outcome, _q("eventOutcome")).text = e.outcome
        agent = ET.SubElement(ev, _q("linkingAgentIdentifier"))
        ET.SubElement(agent, _q("linkingAgentIdentifierType")).text = "software"
        ET.SubElement(agent, _q("linkingAgentIdentifierValue")).text = e.agent
        for link in e.links:
            obj = ET.SubElement(ev, _q("linkingObjectIdentifier"))
            ET.SubElement(obj, _q("linkingObjectIdentifierType")).text = link.object_type
            ET.SubElement(obj, _q("linkingObjectIdentifierValue")).text = link.object_id
            if link.role:
                ET.SubElement(obj, _q("linkingObjectRole")).text = link.role
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def parse_premis(data: bytes) -> list[EventRecord]:
    """Read back events written by :func:`premis_xml`."""
    root = ET.fromstring(data)  # noqa: S314 - our own file, digest-checked against the inventory
    events: list[EventRecord] = []
    for ev in root.iter(_q("event")):

        def text(path: str, node: ET.Element = ev) -> str:
            found = node.find(path)
            return (found.text or "") if found is not None else ""

        links = tuple(
            Link(
                text(_q("linkingObjectIdentifierType"), obj),  # type: ignore[arg-type]
                text(_q("linkingObjectIdentifierValue"), obj),
                text(_q("linkingObjectRole"), obj),
            )
            for obj in ev.iter(_q("linkingObjectIdentifier"))
        )
        events.append(
            EventRecord(
                uuid=text(f"{_q('eventIdentifier')}/{_q('eventIdentifierValue')}"),
                type=text(_q("eventType")),
                occurred_at=datetime.fromisoformat(text(_q("eventDateTime"))),
                agent=text(f"{_q('linkingAgentIdentifier')}/{_q('linkingAgentIdentifierValue')}"),
                outcome=text(  # type: ignore[arg-type]
                    f"{_q('eventOutcomeInformation')}/{_q('eventOutcome')}"
                ),
                detail=text(f"{_q('eventDetailInformation')}/{_q('eventDetail')}"),
                links=links,
            )
        )
    return events
