"""Domain values that cross module boundaries: frozen, typed, valid by construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Outcome = Literal["success", "failure", "warning"]
OUTCOMES = ("success", "failure", "warning")

#: PREMIS event types used by Custos: the labels of id.loc.gov/vocabulary/preservation/eventType
#: where one fits (ingestion, validation, message digest calculation, format identification,
#: fixity check, replication, migration, recovery, encryption, transfer); Custos' own words for
#: what that vocabulary has no term for (tier change, review, access, export, timestamp, user
#: administration, user session, depositor administration, key administration, key custody).
#: The words are part of the hash-chained custody log, so they are never renamed.
EVENT_TYPES = frozenset(
    {
        "ingestion",
        "validation",
        "message digest calculation",
        "format identification",
        "fixity check",
        "replication",
        "migration",
        "tier change",
        "review",  # a step of a protected-identity review (opened, approved, extended)
        "access",
        "export",
        "timestamp",
        "recovery",
        "encryption",  # copies stored encrypted to a tier's keys (at deposit, ...)
        "user administration",  # a user added, disabled, or given a new token or TOTP secret
        "user session",  # a session started (one TOTP code for many requests) or ended
        "depositor administration",  # a depositor registered (custos depositors add, ...)
        "key administration",  # a tier's key made, its shares made anew, a recipient added
        "key custody",  # a share presented, a tier's key opened, locked, or its time up
        "transfer",  # what crossed an air gap, each way (roots out, tokens in)
    }
)


@dataclass(frozen=True, slots=True)
class Link:
    """An object an event concerns (PREMIS linkingObjectIdentifier)."""

    object_type: Literal[
        "package", "deposit", "file", "source", "depositor", "custody-log", "user", "tier"
    ]
    object_id: str
    role: str = ""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A PREMIS event, as written to the catalog and to ``custos/premis.xml``."""

    uuid: str
    type: str
    occurred_at: datetime
    agent: str
    outcome: Outcome
    detail: str = ""
    links: tuple[Link, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown event outcome {self.outcome!r}")
        if self.occurred_at.tzinfo is None:
            raise ValueError("event time must carry a time zone")


@dataclass(frozen=True, slots=True)
class FileRow:
    logical_path: str
    content_path: str
    version: int
    role: str
    size: int
    sha512: str
    sha256: str
    puid: str | None = None
    mime_type: str | None = None
    format_name: str | None = None


@dataclass(frozen=True, slots=True)
class VersionRow:
    number: int
    created_at: datetime
    message: str
    agent: str
    inventory_sha512: str


@dataclass(frozen=True, slots=True)
class PackageSummary:
    id: str
    depositor: str
    title: str
    created_at: datetime
    head: int
    files: int
    bytes: int
    object_path: str


@dataclass(frozen=True, slots=True)
class AccessRow:
    """A tier assignment (path "" for the whole package) and the consent on that path."""

    path: str
    tier: str
    sunset: date | None
    successor: str | None
    legal_basis: str
    consent: tuple[str, ...] | None  # None: no consent recorded on this path
    sunset_basis: str = ""


@dataclass(frozen=True, slots=True)
class PackageDetail:
    summary: PackageSummary
    deposit_id: str
    source_name: str
    bagit_version: str
    fingerprint: str
    versions: tuple[VersionRow, ...]
    files: tuple[FileRow, ...]
    events: tuple[EventRecord, ...]
    access: tuple[AccessRow, ...] = ()
