"""Catalog tables (SQLAlchemy 2.0 typed ORM).

The schema is made only by Alembic migrations (``archive/catalog/migrations/versions``); these
classes describe it for queries. Rows stay inside the catalog package and the services: domain
values (:mod:`archive.model`) are what crosses module boundaries.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import text
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database (SQLite drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a datetime without a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    pass


#: The key of a table that grows with every file copy or event: 64-bit on PostgreSQL, and on
#: SQLite the row id (64-bit too, and only an ``INTEGER PRIMARY KEY`` is one).
Key64 = BigInteger().with_variant(Integer, "sqlite")


class Depositor(Base):
    __tablename__ = "depositors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Deposit(Base):
    """One handover: one bag received from a depositor and stored as one package."""

    __tablename__ = "deposits"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    depositor_id: Mapped[int] = mapped_column(ForeignKey("depositors.id"))
    source_name: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    bagit_version: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(160), unique=True)
    payload_files: Mapped[int] = mapped_column(Integer)
    payload_bytes: Mapped[int] = mapped_column(BigInteger)


class Package(Base):
    """An AIP: one OCFL object in the storage root."""

    __tablename__ = "packages"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the OCFL object id
    deposit_id: Mapped[str] = mapped_column(ForeignKey("deposits.id"), unique=True)
    depositor_id: Mapped[int] = mapped_column(ForeignKey("depositors.id"))
    title: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    head: Mapped[int] = mapped_column(Integer)
    object_path: Mapped[str] = mapped_column(Text)  # relative to the storage root

    versions: Mapped[list[Version]] = relationship(
        back_populates="package", order_by="Version.number"
    )


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("package_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"))
    number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    message: Mapped[str] = mapped_column(Text, default="")
    agent: Mapped[str] = mapped_column(Text, default="")
    inventory_sha512: Mapped[str] = mapped_column(String(128))

    package: Mapped[Package] = relationship(back_populates="versions")


class File(Base):
    """One content file of a package, from the version that added it."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("package_id", "content_path"),
        Index("ix_files_package_logical", "package_id", "logical_path"),
        Index("ix_files_sha512", "sha512"),
    )

    id: Mapped[int] = mapped_column(Key64, primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"))
    version: Mapped[int] = mapped_column(Integer)
    logical_path: Mapped[str] = mapped_column(Text)
    content_path: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))  # payload | tag | metadata | derivative
    size: Mapped[int] = mapped_column(BigInteger)
    sha512: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    puid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mime_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    format_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: A copy stored encrypted (age) to the keys of tier ``sealed_tier``: ``size``, ``sha512``
    #: and ``sha256`` are the stored bytes' (what fixity and replication check), these the
    #: plain bytes' (what the bag's manifests and the file seals prove). NULL: stored plain.
    sealed_tier: Mapped[str | None] = mapped_column(String(32), nullable=True)
    plain_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    plain_sha512: Mapped[str | None] = mapped_column(String(128), nullable=True)
    plain_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class StorageLocation(Base):
    __tablename__ = "storage_locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # local | s3
    uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Replica(Base):
    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("package_id", "location_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("storage_locations.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))  # stored | verified | damaged
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Event(Base):
    """A PREMIS event, recorded in the hash-chained custody log (see ``archive.custody``).

    ``detail`` never holds protected content or identities. Rows are only ever appended.
    An event recorded since log format 2 belongs to one log entry (``entry_id``, at ``pos``
    within it) and ``hash`` is its own hash over every column and link; the entry's Merkle
    root covers its events in order. An event of format 1 is an entry itself: it carries its
    place in its chain (``chain``, ``seq``), the hash of the entry before it and its own hash
    over every column, link and that place. Either way an altered, removed or moved row shows.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_package", "package_id", "occurred_at"),
        UniqueConstraint("chain", "seq", name="uq_events_chain_seq"),
        UniqueConstraint("entry_id", "pos", name="uq_events_entry_pos"),
    )

    id: Mapped[int] = mapped_column(Key64, primary_key=True)
    chain: Mapped[str | None] = mapped_column(String(36), nullable=True)  # format 1 only
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # format 1 only
    prev_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)  # format 1 only
    hash: Mapped[str] = mapped_column(String(128))
    # Not foreign keys: format 1 events have none, and the entry row is written first.
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # format 2
    pos: Mapped[int | None] = mapped_column(Integer, nullable=True)  # format 2
    uuid: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    agent: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(32))  # success | failure | warning
    detail: Mapped[str] = mapped_column(Text, default="")
    # Not a foreign key: the log outlives the package rows, which are re-derived from storage.
    package_id: Mapped[str | None] = mapped_column(String(128), nullable=True)

    links: Mapped[list[EventLink]] = relationship(back_populates="event")


class CustodyEntry(Base):
    """An entry of the custody log (format 2): the events one append recorded, as a Merkle
    root over their own hashes, placed in its chain when its transaction commits.

    The row is written before its place is known (``chain``, ``seq``, ``prev_hash`` and
    ``hash`` empty) and given it at commit, under the log head's lock: so a deposit of a
    million files holds the head for one row, not for its events (``archive.custody``)."""

    __tablename__ = "custody_entries"
    __table_args__ = (UniqueConstraint("chain", "seq", name="uq_custody_entries_chain_seq"),)

    id: Mapped[int] = mapped_column(Key64, primary_key=True)
    chain: Mapped[str | None] = mapped_column(String(36), nullable=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    prev_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    root: Mapped[str] = mapped_column(String(128))
    events: Mapped[int] = mapped_column(Integer)


class EventLink(Base):
    """An object an event is about (PREMIS linkingObjectIdentifier)."""

    __tablename__ = "event_links"
    # By event; by object only for the custody log's checkpoint links (``custody-log``): an
    # index of every link by object put each fixity event's file link beside that file's
    # links of earlier cycles, hundreds of scattered pages per batch (migration 0013).
    __table_args__ = (
        Index("ix_event_links_event", "event_id"),
        Index(
            "ix_event_links_chain",
            "object_id",
            sqlite_where=text("object_type = 'custody-log'"),
            postgresql_where=text("object_type = 'custody-log'"),
        ),
    )

    id: Mapped[int] = mapped_column(Key64, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("events.id"))
    object_type: Mapped[str] = mapped_column(String(32))  # package | file | user …
    object_id: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(32), default="")

    event: Mapped[Event] = relationship(back_populates="links")


class SealBatch(Base):
    """One RFC 3161 token over the root of a batch of manifests (one per batch per TSA)."""

    __tablename__ = "seal_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    algorithm: Mapped[str] = mapped_column(String(16))
    root: Mapped[str] = mapped_column(String(128))  # hex
    tsa: Mapped[str] = mapped_column(Text)  # "local" or the TSA's URL
    token: Mapped[bytes] = mapped_column(LargeBinary)  # DER TimeStampToken, as received
    gen_time: Mapped[datetime] = mapped_column(UTCDateTime())
    serial_number: Mapped[str] = mapped_column(String(64))


class Seal(Base):
    """A manifest's evidence record: a bag manifest or a version's OCFL inventory."""

    __tablename__ = "seals"
    __table_args__ = (UniqueConstraint("package_id", "subject_path", "batch_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL for a custody-log checkpoint, whose path is relative to the storage root.
    package_id: Mapped[str | None] = mapped_column(ForeignKey("packages.id"), nullable=True)
    subject_path: Mapped[str] = mapped_column(Text)  # e.g. v1/inventory.json, relative to object
    subject_sha512: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[int] = mapped_column(ForeignKey("seal_batches.id"))
    record_path: Mapped[str] = mapped_column(Text)  # relative to the object root


class CustodyHead(Base):
    """The one row holding the custody log's newest entry; appenders lock it in turn."""

    __tablename__ = "custody_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    chain: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Checkpoint(Base):
    """A custody-log head written to storage as a small document, to be sealed like a manifest."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("chain", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chain: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    path: Mapped[str] = mapped_column(Text)  # relative to the storage root
    sha512: Mapped[str] = mapped_column(String(128))


class AccessAssignment(Base):
    """A tier given to a package (path "") or a file or folder in it (``data/…``), as the
    object's ``custos/access.json`` records it. Paths may identify people: never log them."""

    __tablename__ = "access_assignments"
    __table_args__ = (
        UniqueConstraint("package_id", "path"),
        Index("ix_access_assignments_sunset", "sunset"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"))
    path: Mapped[str] = mapped_column(Text)
    tier: Mapped[str] = mapped_column(String(32))
    sunset: Mapped[date | None] = mapped_column(Date, nullable=True)
    successor: Mapped[str | None] = mapped_column(String(32), nullable=True)
    legal_basis: Mapped[str] = mapped_column(Text)
    sunset_basis: Mapped[str] = mapped_column(Text, default="")


class AccessReview(Base):
    """The review a protected-identity assignment's sunset opened, as the object's
    ``custos/access.json`` records it (its ``reviews``). ``outcome``: ``pending``,
    ``opened``, ``extended`` or ``superseded`` (a tier change replaced the assignment).
    ``approvals``: JSON list of ``{"registrar", "on"}``; ``extension``: JSON
    ``{"registrar", "on", "new_sunset", "reason"}``. Paths may identify people: never log them."""

    __tablename__ = "access_reviews"
    __table_args__ = (
        Index("ix_access_reviews_outcome", "outcome", "opened_on"),
        Index("ix_access_reviews_package", "package_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"))
    path: Mapped[str] = mapped_column(Text)
    sunset: Mapped[date] = mapped_column(Date)
    successor: Mapped[str] = mapped_column(String(32))
    opened_on: Mapped[date] = mapped_column(Date)
    outcome: Mapped[str] = mapped_column(String(16))
    decided_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    approvals: Mapped[str] = mapped_column(Text)
    extension: Mapped[str | None] = mapped_column(Text, nullable=True)


class ConsentRecord(Base):
    """The consent scopes recorded for a package, folder or file (comma-separated)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("package_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"))
    path: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)


class ReplicationPlan(Base):
    """Where a package's copies must be, as the replication policy in force decided; written
    by each replication run (``fixity.replication``). ``locations``: comma-separated names."""

    __tablename__ = "replication_plans"

    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"), primary_key=True)
    tier: Mapped[str] = mapped_column(String(32))
    copies: Mapped[int] = mapped_column(Integer)
    locations: Mapped[str] = mapped_column(Text)
    shortfall: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(128))
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Per tier present in the package, the locations holding its payload files, and how
    #: many content files each location holds, as JSON (``{"tiers": {"public": ["offsite"],
    #: …}, "files": {"offsite": 12, …}}``); "" for a plan made before files had their own
    #: tiers (every location holds every file).
    tier_locations: Mapped[str] = mapped_column(Text, default="")


class StoredFile(Base):
    """A file of a package's OCFL object that is not a content file: a version's inventory
    and its sidecar, the object's declaration, an evidence record, a trust anchor, any other
    extension file. Fixity checks every copy of these as it does content files.

    ``version``: the version folder holding it (``vN/…``); 0 for a file outside the version
    folders other than the declaration (records, trust anchors), which may be added after a
    replica was made: a replica holds it once it was read back there after ``added_at``.
    Digests are the catalog's (inventories, sidecars: from ``versions``; trust anchors: from
    their names) or, for a file only the object describes, the primary copy's when first seen.
    """

    __tablename__ = "stored_files"
    __table_args__ = (UniqueConstraint("package_id", "path"),)

    id: Mapped[int] = mapped_column(Key64, primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"))
    path: Mapped[str] = mapped_column(Text)  # relative to the object root
    kind: Mapped[str] = mapped_column(String(16))  # inventory | sidecar | declaration | record …
    version: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha512: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LogFile(Base):
    """A file of the custody log's extension folder in the storage root
    (``extensions/custos-custody-log/…``: checkpoints, their evidence records, trust anchors),
    with the digests every copy of it must have: a checkpoint's sha512 is the catalog's
    (``checkpoints``), a trust anchor's sha256 its name; the rest are the primary's when first
    seen (records are written once and never overwritten). Its copies are checked by fixity
    under the reserved package key ``custody-log`` (see :mod:`fixity.logfiles`)."""

    __tablename__ = "log_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)  # relative to the storage root
    kind: Mapped[str] = mapped_column(String(16))  # checkpoint | record | anchor | extension
    size: Mapped[int] = mapped_column(BigInteger)
    sha512: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FixityCoverage(Base):
    """The last check of one file's copy at one location (the primary storage root is a
    location too). A worker claims rows (``claimed_by``/``claimed_at``, a lease) before
    checking them, so that no copy is checked twice in a cycle and none is skipped.

    Not tied to ``files`` by a foreign key: file rows are re-derived from storage, and the
    coverage of a copy survives that."""

    __tablename__ = "fixity_coverage"
    __table_args__ = (
        UniqueConstraint("location_id", "package_id", "content_path"),
        Index("ix_fixity_coverage_due", "due_at"),
    )

    id: Mapped[int] = mapped_column(Key64, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("storage_locations.id"))
    package_id: Mapped[str] = mapped_column(String(128))
    content_path: Mapped[str] = mapped_column(Text)
    tier: Mapped[str] = mapped_column(String(32))
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_full_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When the next check is due (the last check plus the tier's cycle period); NULL: now.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # ok | damaged | repaired | unrecoverable | repair-failed
    last_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FixityTally(Base):
    """What one batch of checks did at one location for one tier (for reports)."""

    __tablename__ = "fixity_tallies"
    __table_args__ = (Index("ix_fixity_tallies_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))  # cycle | sample
    worker: Mapped[str] = mapped_column(String(128))
    location: Mapped[str] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(32))
    files: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer)
    repairs: Mapped[int] = mapped_column(Integer)
    unrecoverable: Mapped[int] = mapped_column(Integer)


class FixitySnapshot(Base):
    """Coverage at a moment: copies checked within their tier's period, out of all."""

    __tablename__ = "fixity_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    covered: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)


class User(Base):
    """Someone who uses the API: a role, and an API token kept only as an argon2 hash.

    ``token_id`` is the token's public prefix (to find the row); ``totp_secret`` the TOTP
    seed of roles that need a second factor. ``organisation``: a depositor's organisation."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    organisation: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(Text)
    totp_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Wrong TOTP codes in a row, and until when the second factor is locked after too many.
    totp_failures: Mapped[int] = mapped_column(Integer, default=0)
    totp_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The RFC 6238 time step of the last code accepted: a code is accepted for a later step
    #: only, so no code is accepted twice (``access.accounts.totp``).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Why and when the user was disabled (``active`` false); a new token enables again.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuthSession(Base):
    """A session of a user (``POST /auth/sessions``): its token stands for the user, with the
    second factor verified when it started, until ``expires_at`` or ``ended_at``.

    Only the SHA-256 of the token is kept (``access.accounts.sessions`` says why a fast hash is
    right for it); ``id`` is the session's public name, used in custody events."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user", "user_id", "expires_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: A TOTP code was verified for the request that started it.
    second_factor: Mapped[bool] = mapped_column(Boolean)
    client_address: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Why it ended before its time: ended by its client, user disabled, new token.
    ended_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class SearchEntry(Base):
    """One public package or file in the search index (``kind`` package | file).

    Only what the access policy lets the public see is here: ``audience`` 1 is open to
    anyone (purpose ``public``), 2 to researchers stating the purpose ``research``. On SQLite
    the FTS5 table ``search_fts`` mirrors ``document`` (triggers); on PostgreSQL the
    generated column ``tsv`` (not mapped here) does."""

    __tablename__ = "search_entries"

    id: Mapped[int] = mapped_column(Key64, primary_key=True)
    package_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    depositor: Mapped[str] = mapped_column(Text)
    year: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    audience: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)


#: The outcome of a file whose text could not be looked for because the tool that reads it
#: (named in ``tool``) was not installed: read again once the tool is found.
TOOL_MISSING = "tool-missing"


class ExtractedText(Base):
    """Plain text found in a file's bytes (by sha512), for the public search.

    A cache of derived data, not a record: the text can always be derived again from the
    stored bytes, so it lives in the catalog (not in the OCFL objects, which hold what was
    received and what was done to it) and is not rebuilt from storage; the characterisation
    job fills it again. Only files the public may see are ever read for text (see
    ``ingest/characterise.py``); ``outcome`` is ``text``, ``none``, ``too-large``,
    ``failed`` (the tool ran and could not read it: not retried) or :data:`TOOL_MISSING`
    (``tool`` names the tool that was not installed: retried once it is)."""

    __tablename__ = "extracted_texts"

    sha512: Mapped[str] = mapped_column(String(128), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))
    tool: Mapped[str] = mapped_column(Text)
    chars: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    extracted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Upload(Base):
    """A bag uploaded through the API, and what became of it."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(255))
    depositor: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))  # stored | already-held | refused
    package_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    deposit_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class JusticeRequest(Base):
    """A request from a justice body, recorded by a registrar, answered with an export."""

    __tablename__ = "justice_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(255))
    requester: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(64))
    package_id: Mapped[str] = mapped_column(String(128))
    paths: Mapped[str] = mapped_column(Text)  # JSON list
    state: Mapped[str] = mapped_column(String(16))  # open | answered
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    export_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    bundle: Mapped[str | None] = mapped_column(Text, nullable=True)


class OutboxEntry(Base):
    """Work that must follow a commit (``archive.outbox``): written in the transaction that
    makes it needed, removed once done. One waiting entry per job and key."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("job", "key", name="uq_outbox_job_key"),)

    id: Mapped[int] = mapped_column(Key64, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    #: What the job is about (a package id), or "" for work about the whole archive.
    key: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Not to be run before this (a retry's back-off, a seal's wait for its authority).
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Added again while it ran: run it once more rather than remove it.
    again: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class PendingInstall(Base):
    """An object being committed to the primary (``archive.installs``): written, in a
    transaction of its own, before its first file is stored; removed by the transaction that
    catalogs it. A row no live process is committing is an install cut short on some host,
    which any host sharing the catalog completes or undoes."""

    __tablename__ = "pending_installs"

    object_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    deposit_id: Mapped[str] = mapped_column(String(255))
    #: The host and data folder of the process that stores it (for people: who was cut short).
    host: Mapped[str] = mapped_column(String(512))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TierKey(Base):
    """An age recipient that a tier's protected copies are encrypted to (``access.keys``).

    ``kind`` ``shares``: the tier's own key, whose identity exists only as share mnemonics
    held by registrars (``shares`` made, ``threshold`` needed, ``share_set`` the SLIP-39
    identifier of the set made last). ``escrow``: another institution's recipient, held by
    ``holder``. Only public keys are kept; a key no longer used for new copies has
    ``retired_at``. Not rebuilt from storage: like users, tier keys live in the catalog."""

    __tablename__ = "tier_keys"
    __table_args__ = (UniqueConstraint("tier", "recipient", name="uq_tier_keys_recipient"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tier: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # shares | escrow
    holder: Mapped[str] = mapped_column(String(500), default="")
    shares: Mapped[int | None] = mapped_column(Integer, nullable=True)
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    share_set: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The last opening of an own key: when, and by whom for what purpose.
    last_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_opened: Mapped[str] = mapped_column(Text, default="")
