"""Renewal of evidence records (RFC 4998 §5.2): ``custos seal renew``.

A timestamp proves something only while its TSA certificate is valid (and its hash algorithm
secure). Before that ends, each record gets a new archive timestamp covering the old one:

- **timestamp renewal**, when the newest timestamp's TSA certificate expires within
  ``proofs.renew_before_days``: a new ArchiveTimeStamp in the record's last chain, over the hash
  of the previous timeStamp, with the same algorithm;
- **hash-tree renewal**, when the proof policy retires the algorithm of the record's newest
  chain: a new chain under ``proofs.algorithm``, over H(H(manifest) ‖ H(all chains so far)).

Renewals are batched like seals: one hash tree per kind and algorithm, one token for it (from
the first authority that answers). A renewed record is a new file beside the old one, named
after its newest token; the old file is kept. A record whose TSA certificate has already
expired cannot be renewed (the proof has lapsed): it is reported, never silently extended.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive.catalog.tables import Package, Seal, SealBatch
from archive.clock import now
from archive.custody import new_event, record_events
from archive.errors import ProofError, StorageError
from archive.model import Link
from archive.proofs import fileseal, merkle
from archive.proofs.backlog import Subject
from archive.proofs.evidence import (
    RecordView,
    parse_record,
    rehash_leaf,
    renew_hash_tree,
    renew_timestamp,
    renewal_leaf,
)
from archive.proofs.seal import (
    Authority,
    NoAuthorityAnswered,
    authorities,
    authority_tag,
    flush,
    record_name,
    subject_digest,
    subject_key,
    write_anchors,
)
from archive.proofs.timestamp import (
    TimestampToken,
    request_token,
    signer_certificate,
    token_from_der,
)
from archive.services import Services
from archive.storage.replica import LocationUnavailable

Kind = Literal["timestamp", "hash-tree"]


@dataclass(frozen=True, slots=True)
class Current:
    """A record no other record of its manifest extends: the one to renew and to verify."""

    subject: Subject
    record_path: str  # relative to the subject's root
    der: bytes
    view: RecordView


@dataclass(frozen=True, slots=True)
class Renewal:
    subject: Subject
    old_record: str
    new_record: str
    kind: Kind
    reason: str


@dataclass
class RenewReport:
    renewed: list[Renewal] = field(default_factory=list)
    lapsed: list[tuple[str, str]] = field(default_factory=list)  # (record, why)
    superseded: list[tuple[str, str]] = field(default_factory=list)  # file seals: (record, why)
    tokens: list[tuple[str, datetime, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "renewed": [
                {
                    "package_id": r.subject.package_id,
                    "manifest": r.subject.subject_path,
                    "kind": r.kind,
                    "reason": r.reason,
                    "old_record": r.old_record,
                    "new_record": r.new_record,
                }
                for r in self.renewed
            ],
            "lapsed": [{"record": rec, "reason": why} for rec, why in self.lapsed],
            "superseded": [{"record": rec, "reason": why} for rec, why in self.superseded],
            "tokens": [
                {"tsa": tsa, "gen_time": when.isoformat(), "serial": serial}
                for tsa, when, serial in self.tokens
            ],
            "failures": self.failures,
        }


def tokens_of(view: RecordView) -> list[bytes]:
    return [ats.token for chain in view.chains for ats in chain]


def current_only(records: Sequence[tuple[str, RecordView]]) -> list[int]:
    """Indexes of the records no other extends (a renewal keeps every earlier timestamp)."""
    flat = [tokens_of(v) for _, v in records]
    return [
        i
        for i, mine in enumerate(flat)
        if not any(len(other) > len(mine) and other[: len(mine)] == mine for other in flat)
    ]


def current_records(services: Services, session: Session) -> list[Current]:
    """Every manifest's current records, read from storage.

    Raises :class:`ProofError` if a record the catalog names cannot be read."""
    rows = session.execute(
        select(
            Seal.package_id,
            Package.object_path,
            Seal.subject_path,
            Seal.subject_sha512,
            Seal.record_path,
        )
        .outerjoin(Package, Package.id == Seal.package_id)
        .order_by(Seal.id)
    ).all()
    groups: dict[Subject, list[str]] = {}
    for package_id, object_path, subject_path, digest, record_path in rows:
        subject = Subject(package_id, object_path or "", subject_path, digest, now())
        groups.setdefault(_key(subject), []).append(record_path)
    out: list[Current] = []
    for subject, paths in groups.items():
        loaded = []
        for path in paths:
            try:
                der = services.primary.read_bytes(subject_key(subject, path))
            except LocationUnavailable:
                raise
            except StorageError as exc:
                raise ProofError(
                    f"evidence record {path} cannot be read: {exc.message}",
                    hint="the primary copy may be damaged: run a fixity check, and repair it "
                    "from a replica",
                ) from exc
            loaded.append((path, der, parse_record(der)))
        for i in current_only([(p, v) for p, _, v in loaded]):
            path, der, view = loaded[i]
            out.append(Current(subject, path, der, view))
    return out


def _key(s: Subject) -> Subject:
    """Subjects compare by identity, not by the time they were read."""
    return Subject(s.package_id, s.object_path, s.subject_path, s.sha512, datetime.min)


def renew(services: Services, *, at: datetime | None = None) -> RenewReport:
    """Renew every record that needs it, with the configured authorities.

    Raises :class:`NoAuthorityAnswered` when renewals are due and no authority answers."""
    with authorities(services.settings) as tsas:
        return renew_with(services, tsas, at=at)


def renew_with(
    services: Services, authorities: Sequence[Authority], *, at: datetime | None = None
) -> RenewReport:
    """Renew what is due at ``at`` (default now). See the module's docstring."""
    at = at or now()
    policy = services.settings.proofs
    margin = timedelta(days=policy.renew_before_days)
    report = RenewReport()
    with services.commit_lock():
        with services.sessions() as session:
            currents = current_records(services, session)
        report.checked = len(currents)
        have = {(c.subject.package_id, c.subject.subject_path) for c in currents}
        plans: dict[tuple[Kind, str], list[tuple[Current, bytes, str]]] = {}
        for cur in currents:
            last = token_from_der(cur.view.last.token)
            expires = signer_certificate(last).not_valid_after_utc
            where = f"{cur.subject.package_id or 'custody log'}: {cur.record_path}"
            if expires <= at:
                report.lapsed.append(
                    (
                        where,
                        f"the certificate of the TSA that made its newest timestamp (serial "
                        f"{last.serial_number}) expired on {expires.isoformat()} before it was "
                        "renewed; the manifest can only be sealed afresh",
                    )
                )
            elif cur.view.last.algorithm in policy.retired_algorithms and fileseal.is_subject(
                cur.subject.subject_path
            ):
                version, _ = fileseal.parse_subject(cur.subject.subject_path)
                fresh = fileseal.subject_path(version, policy.algorithm)
                if (cur.subject.package_id, fresh) in have:
                    continue  # sealed afresh already
                # Each file's record is derived from the root's, which a hash-tree renewal
                # would not allow (archive.proofs.fileseal): `custos seal` makes the version a
                # new file seal under proofs.algorithm instead; this one keeps its history.
                report.superseded.append(
                    (
                        where,
                        f"{cur.view.last.algorithm} is retired by the proof policy: the "
                        f"version's files are sealed afresh under {policy.algorithm} by "
                        "`custos seal files`",
                    )
                )
            elif cur.view.last.algorithm in policy.retired_algorithms:
                digest = subject_digest(services, cur.subject, policy.algorithm)
                leaf = rehash_leaf(cur.view, policy.algorithm, digest)
                reason = (
                    f"{cur.view.last.algorithm} is retired by the proof policy; rehashed with "
                    f"{policy.algorithm}"
                )
                plans.setdefault(("hash-tree", policy.algorithm), []).append((cur, leaf, reason))
            elif expires - margin <= at:
                reason = (
                    f"the TSA certificate of timestamp {last.serial_number} expires on "
                    f"{expires.isoformat()}, within {policy.renew_before_days} days"
                )
                plans.setdefault(("timestamp", cur.view.last.algorithm), []).append(
                    (cur, renewal_leaf(cur.view), reason)
                )
        for (kind, algorithm), items in plans.items():
            _renew_batch(services, authorities, kind, algorithm, items, report)
    return report


def _renew_batch(
    services: Services,
    authorities: Sequence[Authority],
    kind: Kind,
    algorithm: str,
    items: list[tuple[Current, bytes, str]],
    report: RenewReport,
) -> None:
    batch = merkle.build(algorithm, sorted({leaf for _, leaf, _ in items}))
    authority, token = _first_token(services, authorities, batch.root, algorithm, report)
    tag = authority_tag(authority)
    done: list[Renewal] = []
    anchored: set[str] = set()
    for cur, leaf, reason in items:
        path = batch.paths[leaf]
        der = (
            renew_timestamp(cur.der, path, token.token, cur.view)
            if kind == "timestamp"
            else renew_hash_tree(cur.der, algorithm, path, token.token)
        )
        rel = record_name(cur.subject, tag, token.serial_number)
        services.primary.write_bytes(subject_key(cur.subject, rel), der, fsync=False)
        write_anchors(services, cur.subject, authority.roots, done=anchored)
        done.append(Renewal(cur.subject, cur.record_path, rel, kind, reason))
    flush(services)
    with services.session_scope() as session:
        row = SealBatch(
            created_at=token.gen_time,
            algorithm=algorithm,
            root=batch.root.hex(),
            tsa=tag,
            token=token.token,
            gen_time=token.gen_time,
            serial_number=str(token.serial_number),
        )
        session.add(row)
        session.flush()
        session.add_all(
            Seal(
                package_id=r.subject.package_id,
                subject_path=r.subject.subject_path,
                subject_sha512=r.subject.sha512,
                batch_id=row.id,
                record_path=r.new_record,
            )
            for r in done
        )
        by_package: dict[str | None, list[Renewal]] = {}
        for r in done:
            by_package.setdefault(r.subject.package_id, []).append(r)
        for package_id, renewals in by_package.items():
            reasons = "; ".join(sorted({f"{r.subject.subject_path}: {r.reason}" for r in renewals}))
            record_events(
                session,
                [
                    new_event(
                        "timestamp",
                        "success",
                        f"{kind} renewal (RFC 4998 §5.2) of {len(renewals)} evidence record(s) "
                        f"with a token from {authority.name} at {token.gen_time.isoformat()} "
                        f"(serial {token.serial_number}); {reasons}",
                        links=[Link("package", package_id)] if package_id else [],
                    )
                ],
                package_id=package_id,
            )
    report.renewed.extend(done)
    report.tokens.append((authority.name, token.gen_time, token.serial_number))


def _first_token(
    services: Services,
    authorities: Sequence[Authority],
    root: bytes,
    algorithm: str,
    report: RenewReport,
) -> tuple[Authority, TimestampToken]:
    for authority in authorities:
        try:
            token = request_token(
                authority.url,
                root,
                algorithm,
                policy=authority.policy or None,
                timeout=services.settings.tsa.timeout,
            )
        except ProofError as exc:
            report.failures.append(f"{authority.name}: {exc.message}")
            continue
        return authority, token
    raise NoAuthorityAnswered(
        "no timestamp authority answered; the evidence records due for renewal stay as they are",
        hint="; ".join(report.failures) or "configure tsa.local or tsa.urls",
    )


def digest_all(data: bytes) -> dict[str, bytes]:
    """A document's digests under every algorithm a record may use (for verification)."""
    return {a: hashlib.new(a, data).digest() for a in ("sha256", "sha384", "sha512")}
