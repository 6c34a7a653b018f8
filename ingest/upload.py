"""Deposits through the API: a bag streamed to disk, its checksum verified, then ingested.

The upload is written in chunks into staging (never held in memory) while its SHA-256 or
SHA-512 is computed; the digest the client declared (``X-Custos-Checksum: sha256:<hex>``)
must match before :func:`ingest.service.ingest` sees the file. Whatever happens, the upload
file is removed afterwards: a refused or broken upload leaves nothing behind (the bag's own
refusal is recorded by ingest as one event, as for any deposit). A write that staging refuses
(full, over quota, read-only, I/O error) is a :class:`StorageError` naming the staging
folder. Format identification, text extraction, sealing and replication are queued in the
outbox by the deposit's commit, as for any deposit, so a large deposit's answer never waits
for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from archive import clock
from archive.catalog.tables import Upload
from archive.config import Settings
from archive.depositors import is_registered
from archive.errors import STORAGE_ERRNOS, InputRejected, storage_failure
from archive.findings import Finding
from archive.journal import Journal
from archive.services import Services
from ingest.service import ingest

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_CHECKSUM = re.compile(r"^(sha256|sha512):([0-9a-fA-F]+)$")
_LENGTHS = {"sha256": 64, "sha512": 128}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,200}$")


def _refuse(code: str, message: str, where: str, hint: str) -> InputRejected:
    return InputRejected(
        f"upload refused: {message}", [Finding(code, "error", message, where)], hint=hint
    )


def check_organisation(services: Services, organisation: str) -> None:
    """Refuse an upload for an organisation that is not a registered depositor, before its
    body is read (``DEPOSITOR-UNKNOWN``). Ingest would refuse it too, once received; its
    refusal names the registered depositors close to the name, which a depositor's user
    is not told: the operators who bound the user to it can mend it."""
    with services.sessions() as session:
        known = is_registered(session, organisation)
    if not known:
        raise _refuse(
            "DEPOSITOR-UNKNOWN",
            f"your organisation {organisation!r} is not a registered depositor of this archive",
            "organisation",
            "ask the archive's operators to register it (custos depositors add) or to bind "
            "your user to the organisation as registered",
        )


def check_request(filename: str, checksum: str | None) -> tuple[str, str, str]:
    """The upload's file name, checksum algorithm and expected hex digest; raises
    :class:`InputRejected` naming what is wrong."""
    if not _NAME.match(filename) or not filename.lower().endswith(SUFFIXES) or ".." in filename:
        raise _refuse(
            "UPLOAD-NAME",
            f"the file name {filename!r} is not a bag archive name",
            "filename",
            "name the upload like bag.zip, bag.tar or bag.tar.gz (letters, digits, . _ - space)",
        )
    if checksum is None:
        raise _refuse(
            "UPLOAD-CHECKSUM-MISSING",
            "no checksum of the upload was declared",
            "X-Custos-Checksum",
            "send X-Custos-Checksum: sha256:<hex> (or sha512:<hex>) of the file you upload",
        )
    m = _CHECKSUM.match(checksum.strip())
    if m is None or len(m.group(2)) != _LENGTHS[m.group(1)]:
        raise _refuse(
            "UPLOAD-CHECKSUM-SYNTAX",
            "the declared checksum is not sha256:<64 hex> or sha512:<128 hex>",
            "X-Custos-Checksum",
            "compute it with sha256sum FILE and send sha256:<the hex digest>",
        )
    return filename, m.group(1), m.group(2).lower()


@contextlib.contextmanager
def _writing(staging: Path) -> Iterator[None]:
    """Writes of an upload into ``staging``: every one the filesystem refuses is its failure
    (an upload reads nothing from disk), a :class:`StorageError` naming the folder."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise storage_failure(
            exc.errno,
            exc.strerror or str(exc),
            doing="the upload could not be written, so nothing was stored",
            where=f"the staging folder {staging}",
            then="upload the bag again",
        ) from exc


class UploadSink:
    """A file in staging that an upload is written to, chunk by chunk, while it is hashed.

    Raises :class:`StorageError` when staging refuses a write (the caller discards it)."""

    def __init__(self, settings: Settings, filename: str, algorithm: str, expected: str) -> None:
        self.id = str(uuid.uuid4())
        self.staging = settings.staging_path
        # Locked while this process writes it: recovery elsewhere leaves a live upload alone.
        with _writing(self.staging):
            self._journal = Journal.begin_in(
                self.staging, f"upload-{self.id}", kind="upload", upload_id=self.id
            )
        self.folder = self._journal.folder
        self.path = self.folder / filename
        try:
            with _writing(self.staging):
                self._fh = open(self.path, "wb")  # noqa: SIM115 - closed by finish() or discard()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._journal.close()
            raise
        self._hash = hashlib.new(algorithm)
        self._sha256 = hashlib.sha256() if algorithm != "sha256" else self._hash
        self.algorithm, self.expected = algorithm, expected
        self.limit = settings.limits.max_total_bytes
        self.size = 0
        self.received_at = clock.now()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _refuse(
                "LIMIT-TOTAL-SIZE",
                f"the upload is larger than {self.limit} bytes",
                "body",
                "split the holding into several bags",
            )
        self._hash.update(chunk)
        if self._sha256 is not self._hash:
            self._sha256.update(chunk)
        with _writing(self.staging):
            self._fh.write(chunk)

    def finish(self) -> str:
        """Close the file and check the digest; return the SHA-256. Raises InputRejected,
        StorageError."""
        with _writing(self.staging):
            self._fh.close()
        if self.size == 0:
            raise _refuse("UPLOAD-EMPTY", "the upload is empty", "body", "send the bag's bytes")
        actual = self._hash.hexdigest()
        if actual != self.expected:
            raise _refuse(
                "UPLOAD-CHECKSUM-MISMATCH",
                f"the {self.size} bytes received hash to {self.algorithm}:{actual}, not the "
                f"declared {self.algorithm}:{self.expected}",
                "X-Custos-Checksum",
                "the upload was damaged or the checksum is of another file: upload again",
            )
        return self._sha256.hexdigest()

    def discard(self) -> None:
        if not self._fh.closed:
            with contextlib.suppress(OSError):  # a full disk fails the flush: the file goes
                self._fh.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        self._journal.close()


@dataclass(frozen=True, slots=True)
class Stored:
    """An upload that ingest accepted (``stored``, or ``already-held``)."""

    upload_id: str
    state: str
    package_id: str
    deposit_id: str


def store_upload(services: Services, sink: UploadSink, *, user: str, organisation: str) -> Stored:
    """Verify the upload's checksum, ingest it as a deposit of ``organisation`` (uploaded by
    ``user``), and record the upload.

    The upload file is removed in every case. Raises :class:`InputRejected` (checksum, or
    the bag refused: every finding listed), :class:`StorageError` (staging or the storage
    root refused a write: nothing was stored)."""
    try:
        sha256 = sink.finish()
        result = ingest(services, sink.path, depositor=organisation)
    finally:
        sink.discard()
    with services.session_scope() as session:
        session.add(
            Upload(
                id=sink.id,
                user_name=user,
                depositor=organisation,
                filename=sink.path.name,
                size=sink.size,
                sha256=sha256,
                received_at=sink.received_at,
                finished_at=clock.now(),
                state=result.status,
                package_id=result.package_id,
                deposit_id=result.deposit_id,
                message=(
                    "stored as a new package"
                    if result.status == "stored"
                    else "the same payload is already held; nothing was stored twice"
                ),
            )
        )
    return Stored(sink.id, result.status, result.package_id, result.deposit_id)
