"""Sealing: every manifest timestamped, in batches, with an RFC 4998 evidence record each.

Manifests are each deposit's bag manifests and tag manifests, each version's OCFL inventory,
and each custody-log checkpoint (``archive.checkpoints``, written just before). Those waiting
for a seal are gathered, their sha512 digests made the leaves of one hash tree, its root
timestamped once by each configured authority, and each manifest given an evidence record.
Records live in the object itself, outside its versions (OCFL 1.1 §4.1:
``extensions/custos-evidence-records/``), named ``<manifest path>.<token serial>.ers`` so that a
record is never overwritten (``<serial>`` is prefixed by ``local`` or a tag of the TSA's URL);
the trust anchors travel beside them, in ``trust/``. The catalog indexes them.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archive.catalog.index import sealed_files
from archive.catalog.tables import Seal, SealBatch
from archive.checkpoints import LOG_DIR, write_checkpoint
from archive.clock import now
from archive.config import Settings
from archive.custody import new_event, record_events
from archive.errors import ProofError, StorageError
from archive.model import Link
from archive.proofs import fileseal, merkle
from archive.proofs.backlog import (
    Backlog,
    PendingVersion,
    Subject,
    backlog,
    pending,
    pending_files,
)
from archive.proofs.evidence import RecordWriter
from archive.proofs.local_tsa import DEFAULT_POLICY_OID, LocalTSAServer
from archive.proofs.timestamp import TimestampToken, request_token
from archive.services import Services

EXTENSION = "extensions/custos-evidence-records"
#: Files sealed on their own per run of :func:`seal_pending` (``custos seal files`` has no bound):
#: an archive sealed before file seals existed catches up run by run, never in one long run.
FILES_PER_RUN = 200_000
#: File seals per batch (one token per authority each).
VERSIONS_PER_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class Authority:
    """A timestamp authority: where to ask, and what to trust its tokens by."""

    name: str
    url: str
    roots: tuple[bytes, ...]
    policy: str = ""


@contextmanager
def authorities(settings: Settings) -> Iterator[list[Authority]]:
    """The configured authorities; the local one runs (on 127.0.0.1) for the duration."""
    external = [
        Authority(url, url, tuple(p.read_bytes() for p in settings.tsa.roots), settings.tsa.policy)
        for url in settings.tsa.urls
    ]
    if not settings.tsa.local:
        yield external
        return
    policy = settings.tsa.policy or DEFAULT_POLICY_OID
    with LocalTSAServer(settings.tsa_path, policy=policy) as server:
        local = Authority("local", server.url, (server.tsa.root_certificate.read_bytes(),), policy)
        yield [local, *external]


class NoAuthorityAnswered(ProofError):
    """Sealing could not happen now: no timestamp authority answered. Nothing was changed."""

    exit_code = 75  # EX_TEMPFAIL: try again later (not 3: nothing failed to verify)


@dataclass
class SealReport:
    sealed: list[Subject] = field(default_factory=list)
    tokens: list[tuple[str, datetime, int]] = field(default_factory=list)  # tsa, time, serial
    failures: list[str] = field(default_factory=list)  # authorities that did not answer
    files: int = 0  # files sealed on their own (file seals)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sealed": [
                {
                    "package_id": s.package_id,
                    "manifest": s.subject_path,
                    "sha512": s.sha512,
                }
                for s in self.sealed
            ],
            "tokens": [
                {"tsa": tsa, "gen_time": when.isoformat(), "serial": serial}
                for tsa, when, serial in self.tokens
            ],
            "failures": self.failures,
            "files_sealed_on_their_own": self.files,
        }

    def summary(self) -> str:
        """What was sealed, in words: "7 manifest(s) and 14 file(s) of 2 version(s), each on
        its own"."""
        versions = sum(1 for s in self.sealed if fileseal.is_subject(s.subject_path))
        parts = []
        if len(self.sealed) > versions:
            parts.append(f"{len(self.sealed) - versions} manifest(s)")
        if versions:
            parts.append(f"{self.files} file(s) of {versions} version(s), each on its own")
        return " and ".join(parts) or "nothing"

    def authorities(self) -> str:
        """Each authority that answered, with when (one entry per authority and time)."""
        return ", ".join(sorted({f"{tsa} at {when.isoformat()}" for tsa, when, _ in self.tokens}))


def seal_now(
    services: Services,
    *,
    manifests: bool = True,
    files: int | None = FILES_PER_RUN,
    progress: Callable[[int], None] | None = None,
) -> SealReport:
    """Seal what is pending with the configured authorities (the local one started for it);
    the arguments are :func:`seal_pending`'s.

    Raises :class:`ProofError` when none answers."""
    with authorities(services.settings) as tsas:
        return seal_pending(services, tsas, manifests=manifests, files=files, progress=progress)


def seal_if_due(services: Services, *, at: datetime | None = None) -> SealReport | None:
    """Seal what is pending unless the back-off says to wait (for scheduled jobs).

    Returns ``None`` when nothing was due; raises :class:`NoAuthorityAnswered` when a due
    attempt failed (it is recorded, and the next one is put off further)."""
    with services.sessions() as session:
        state = backlog(session, services.settings)
    if not state.due or (state.next_attempt and (at or now()) < state.next_attempt):
        return None
    return seal_now(services)


def seal_with_retry(
    services: Services,
    *,
    within: float,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[Backlog], None] | None = None,
) -> SealReport:
    """Try now, then again with back-off until sealed or ``within`` seconds have passed.

    Raises :class:`NoAuthorityAnswered` if the last attempt in that time failed."""
    deadline = time.monotonic() + within
    while True:
        try:
            return seal_now(services)
        except NoAuthorityAnswered:
            with services.sessions() as session:
                state = backlog(session, services.settings)
            wait = (state.next_attempt - now()).total_seconds() if state.next_attempt else 0.0
            if time.monotonic() + wait > deadline:
                raise
            if on_wait:
                on_wait(state)
            sleep(max(0.0, wait))


def seal_pending(
    services: Services,
    authorities: Sequence[Authority],
    *,
    manifests: bool = True,
    files: int | None = FILES_PER_RUN,
    progress: Callable[[int], None] | None = None,
) -> SealReport:
    """Seal everything pending now: the manifests (unless ``manifests`` is false), then the
    versions awaiting their file seal, about ``files`` files of them (None: all).
    ``progress`` is told how many versions each batch of file seals sealed.

    Raises :class:`ProofError` when no authority answers (nothing of that batch is changed
    then; its manifests or versions stay pending)."""
    report = SealReport()
    algorithm = services.settings.proofs.algorithm
    with services.commit_lock():
        for subjects, digest_of, count in pending_batches(
            services, report, manifests=manifests, files=files
        ):
            _seal_batch(services, authorities, subjects, digest_of, algorithm, report)
            report.files += count
            if progress and count:
                progress(len(subjects))
    return report


Batch = tuple[list[Subject], dict[Subject, bytes], int]


def pending_batches(
    services: Services,
    report: SealReport,
    *,
    manifests: bool = True,
    files: int | None = FILES_PER_RUN,
    sealing: bool = True,
) -> Iterator[Batch]:
    """The batches awaiting a seal, each with its subjects' digests and how many files its
    file seals seal: the manifests first (a custody-log checkpoint written just before), then
    the versions awaiting their file seal, about ``files`` files of them (None: all). A
    version whose file seal cannot be made is skipped and named in ``report.failures``.
    The caller holds the commit lock and seals each batch before the next is made (the file
    seals sealed are no longer pending); ``sealing`` false: the batches are exported for a
    seal across an air gap, and the versions of each are not batched again."""
    algorithm = services.settings.proofs.algorithm
    if manifests:
        with services.session_scope() as session:
            write_checkpoint(session, services.primary, fsync=services.settings.fsync)
        with services.sessions() as session:
            subjects = pending(session)
        if subjects:
            yield subjects, {s: subject_digest(services, s, algorithm) for s in subjects}, 0
    done = 0
    skip: set[tuple[str, int]] = set()
    while files is None or done < files:
        with services.sessions() as session:
            todo = pending_files(
                session, algorithm, limit=VERSIONS_PER_BATCH + len(skip), skip=skip
            )
        if not todo:
            break
        batch: list[Subject] = []
        digest_of: dict[Subject, bytes] = {}
        count = 0
        for version in todo:
            try:
                subject, root, n = _file_seal(services, version, algorithm)
            except (ProofError, StorageError) as exc:
                skip.add((version.package_id, version.number))
                report.failures.append(
                    f"{version.package_id} v{version.number}: not sealed file by file: "
                    f"{exc.message}"
                )
                continue
            batch.append(subject)
            digest_of[subject] = root
            count += n
        if not batch:
            continue
        yield batch, digest_of, count
        done += count
        if not sealing:  # exported, not sealed: still pending, not to be batched again
            skip.update((v.package_id, v.number) for v in todo)


def _file_seal(
    services: Services, version: PendingVersion, algorithm: str
) -> tuple[Subject, bytes, int]:
    """The version's file seal, written to storage if it is not there yet (a crash after the
    sidecar was written finds it again: a file seal is never made twice). Returns its subject,
    its root and how many files it seals.

    Raises :class:`StorageError` if the object cannot be read, :class:`ProofError` if a
    sidecar found in storage is not sound."""
    obj = services.primary.object(version.object_path)
    subject_path = fileseal.subject_path(version.number, algorithm)
    sidecar = fileseal.sidecar_path(subject_path, EXTENSION)
    if obj.exists(sidecar):
        data = obj.read_bytes(sidecar)
        seal = fileseal.load(data)
    else:
        inventory = obj.inventory()
        prefix = f"v{version.number}/content/"
        added = [
            (path, digest)
            for digest, paths in inventory["manifest"].items()
            for path in paths
            if path.startswith(prefix)
        ]
        # A copy stored encrypted is sealed by its plain bytes' digest (recorded at deposit):
        # what a court bundle releases, and what the bag's manifest names.
        plain = sealed_files(obj, inventory)
        digests = []
        for path, d in added:
            entry = plain.get(path)
            if entry is not None:
                if algorithm not in entry:
                    raise ProofError(
                        f"{path} is stored encrypted and its plain {algorithm} digest was not "
                        "recorded at deposit",
                        hint="seal with proofs.algorithm sha512 or sha256",
                    )
                digests.append((path, bytes.fromhex(entry[algorithm])))
            elif algorithm == inventory.get("digestAlgorithm"):
                digests.append((path, bytes.fromhex(d)))
            else:
                digests.append(
                    (path, bytes.fromhex(obj.digest(path, (algorithm,)).digests[algorithm]))
                )
        seal = fileseal.make(algorithm, version.number, digests)
        data = seal.to_json()
        services.primary.write_bytes(obj.key(sidecar), data, fsync=False)  # see flush()
    subject = Subject(
        version.package_id,
        version.object_path,
        subject_path,
        hashlib.sha512(data).hexdigest(),
        version.since,
    )
    return subject, seal.root, len(seal.entries)


def _seal_batch(
    services: Services,
    authorities: Sequence[Authority],
    subjects: list[Subject],
    digest_of: dict[Subject, bytes],
    algorithm: str,
    report: SealReport,
) -> None:
    """One hash tree over ``subjects``, a token from each authority, a record each, their
    catalog rows and an event per package. Raises :class:`NoAuthorityAnswered` (recorded as
    a failed timestamp event) when no authority answers."""
    leaves = sorted(set(digest_of.values()))
    batch = merkle.build(algorithm, leaves)
    tokens: list[tuple[Authority, TimestampToken]] = []
    failures: list[str] = []
    for authority in authorities:
        try:
            token = request_token(
                authority.url, batch.root, algorithm, policy=authority.policy or None,
                timeout=services.settings.tsa.timeout,
            )  # fmt: skip
            tokens.append((authority, token))
        except ProofError as exc:
            failures.append(f"{authority.name}: {exc.message}")
    report.failures.extend(failures)
    if not tokens:
        failure = NoAuthorityAnswered(
            f"no timestamp authority answered; {len(subjects)} manifest(s) or file seal(s) stay "
            "awaiting their seal",
            hint="; ".join(failures) or "configure tsa.local or tsa.urls",
        )
        with services.session_scope() as session:
            record_events(
                session, [new_event("timestamp", "failure", f"{failure.message}: {failure.hint}")]
            )
        raise failure
    complete_batch(services, subjects, batch, tokens, digest_of, algorithm, report)


def complete_batch(
    services: Services,
    subjects: list[Subject],
    batch: merkle.Batch,
    tokens: list[tuple[Authority, TimestampToken]],
    digest_of: dict[Subject, bytes],
    algorithm: str,
    report: SealReport,
    *,
    how: str = "",
) -> None:
    """Give each of ``subjects`` an evidence record per token over ``batch``'s root (written
    into storage), their catalog rows and a ``timestamp`` event per package (``how``: how the
    tokens came, said in the event)."""
    records = _write_records(services, subjects, batch, tokens, digest_of, algorithm)
    with services.session_scope() as session:
        for authority, token in tokens:
            row = SealBatch(
                created_at=token.gen_time,
                algorithm=algorithm,
                root=batch.root.hex(),
                tsa=authority_tag(authority),
                token=token.token,
                gen_time=token.gen_time,
                serial_number=str(token.serial_number),
            )
            session.add(row)
            session.flush()
            session.add_all(
                Seal(
                    package_id=s.package_id,
                    subject_path=s.subject_path,
                    subject_sha512=s.sha512,
                    batch_id=row.id,
                    record_path=records[(s, token.serial_number)],
                )
                for s in subjects
            )
            report.tokens.append((authority.name, token.gen_time, token.serial_number))
        by_package: dict[str | None, list[Subject]] = {}
        for s in subjects:
            by_package.setdefault(s.package_id, []).append(s)
        when = ", ".join(
            f"{a.name} at {t.gen_time.isoformat()} (serial {t.serial_number})" for a, t in tokens
        )
        for package_id, items in by_package.items():
            names = ", ".join(sorted(s.subject_path for s in items))
            what = (
                "each file of the version(s) on its own, salted"
                if all(fileseal.is_subject(s.subject_path) for s in items)
                else "the manifest(s)"
            )
            links = [Link("package", package_id)] if package_id else []
            record_events(
                session,
                [
                    new_event(
                        "timestamp",
                        "success",
                        f"sealed {names} ({what}): RFC 3161 token(s) from {when}{how}; "
                        f"RFC 4998 evidence records in {EXTENSION if package_id else LOG_DIR}",
                        links=links,
                    )
                ],
                package_id=package_id,
            )
    report.sealed.extend(subjects)


def _write_records(
    services: Services,
    subjects: list[Subject],
    batch: merkle.Batch,
    tokens: list[tuple[Authority, TimestampToken]],
    digest_of: dict[Subject, bytes],
    algorithm: str,
) -> dict[tuple[Subject, int], str]:
    """Write each record (and the trust anchors) into its object; return their paths."""
    written: dict[tuple[Subject, int], str] = {}
    writers = {token.serial_number: RecordWriter(algorithm, token) for _, token in tokens}
    anchored: set[str] = set()
    for s in subjects:
        # A package's records go into its object; a checkpoint's beside it in the storage root.
        leaf = digest_of[s]
        for authority, token in tokens:
            rel = record_name(s, authority_tag(authority), token.serial_number)
            record = writers[token.serial_number].record(batch.paths[leaf])
            services.primary.write_bytes(subject_key(s, rel), record, fsync=False)
            write_anchors(services, s, authority.roots, done=anchored)
            written[(s, token.serial_number)] = rel
    flush(services)
    return written


def flush(services: Services) -> None:
    """Flush what was written into a local primary to disk (once for a whole batch, rather
    than file by file), when the settings ask for it. What an S3 primary holds was read back
    as each file was written."""
    if services.settings.fsync and services.primary.is_local:
        os.sync()


def subject_key(s: Subject, path: str) -> str:
    """The primary's key of ``path`` relative to a subject's root: its object, or the storage
    root itself (checkpoints)."""
    return path if s.package_id is None else f"{s.object_path}/{path}"


def record_name(s: Subject, tag: str, serial: int) -> str:
    """A record's path relative to its subject's root (:func:`subject_key`): a package's
    records go into its object's extension folder, a checkpoint's beside it."""
    prefix = "" if s.package_id is None else f"{EXTENSION}/"
    return f"{prefix}{s.subject_path}.{tag}-{serial}.ers"


def write_anchors(
    services: Services, s: Subject, roots: Sequence[bytes], *, done: set[str] | None = None
) -> None:
    """The trust anchors beside the records (``trust/<sha256>.pem``), written once each;
    ``done`` holds the keys already seen in this batch (spares asking the primary again)."""
    folder = LOG_DIR if s.package_id is None else EXTENSION
    seen = set() if done is None else done
    for pem in roots:
        key = subject_key(s, f"{folder}/trust/{hashlib.sha256(pem).hexdigest()}.pem")
        if key not in seen and not services.primary.exists(key):
            services.primary.write_bytes(key, pem, fsync=False)  # see flush()
        seen.add(key)


def subject_digest(services: Services, s: Subject, algorithm: str) -> bytes:
    """A manifest's digest under ``algorithm``; read from storage (and checked against the
    sha512 the catalog holds) unless that is sha512 itself.

    Raises :class:`ProofError` if the stored manifest no longer has its catalogued digest,
    :class:`StorageError` if it cannot be read."""
    if algorithm == "sha512":
        return bytes.fromhex(s.sha512)
    data = services.primary.read_bytes(subject_key(s, s.subject_path))
    if hashlib.sha512(data).hexdigest() != s.sha512:
        raise ProofError(
            f"{s.subject_path} in storage no longer has the sha512 the catalog recorded; "
            "it is not sealed",
            hint="run `custos verify` on its package and repair it from a replica",
        )
    return hashlib.new(algorithm, data).digest()


def authority_tag(authority: Authority) -> str:
    """``local``, or ``tsa-`` and a digest of the URL: in record names and the catalog."""
    if authority.name == "local":
        return "local"
    return "tsa-" + hashlib.sha256(authority.url.encode()).hexdigest()[:12]
