"""S3-compatible replica locations with Object Lock (WORM); the only module importing boto3.

The contract is :class:`archive.storage.replica.ReplicaLocation`. What S3 adds:

- :meth:`S3Location.ensure` creates the bucket with Object Lock (which turns versioning on)
  and refuses a bucket that exists without it: Object Lock can only be enabled when a bucket
  is created.
- Every put carries ``ObjectLockMode`` and ``ObjectLockRetainUntilDate`` (now + retention) and
  the sha256 of the file (``x-amz-checksum-sha256``), so the server refuses bytes that do not
  match it; the checksum the server returns is compared too. A file above the multipart
  threshold is sent in parts, each with its own sha256 that the server checks; the client
  digests the whole file while reading it and compares the composite checksum the server
  reports; any failure aborts the upload, so nothing becomes visible.
- A put of an existing key adds a version; older versions stay readable by version id.
- :meth:`S3Location.delete` refuses (:class:`ObjectLocked`) while any version of the key is
  under retention or a legal hold, before sending anything, and it never writes a delete
  marker (which would hide a locked object without removing it).
- botocore errors are translated here (``raise ... from``) into :class:`StorageError`
  subclasses naming the location, endpoint, bucket and key; object contents are never logged.
  Connect and read timeouts and a bounded retry make a dead server a prompt error.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from archive import clock
from archive.config import S3LocationSettings
from archive.errors import StorageError
from archive.storage.replica import (
    ChecksumMismatch,
    KeyRejected,
    LocationUnavailable,
    ObjectInfo,
    ObjectLocked,
    ObjectMissing,
    ObjectReader,
    PutResult,
    check_digests,
    check_key,
    check_prefix,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
#: S3 limits on multipart uploads.
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
LockMode = Literal["COMPLIANCE", "GOVERNANCE"]

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})
_CREDENTIAL_CODES = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
)
_DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
_NO_LOCK_CODES = frozenset({"ObjectLockConfigurationNotFoundError"})


def _utcnow() -> datetime:
    return clock.now()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _BodyReader(ObjectReader):
    """A GET response body, read in the caller's chunks; botocore errors become ours."""

    def __init__(
        self, location: S3Location, key: str, version_id: str | None, body: StreamingBody
    ) -> None:
        super().__init__(key, version_id)
        self._location = location
        self._body = body

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except BotoCoreError as exc:
            raise self._location._error(exc, "read", self.key) from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Location:
    """A replica location in an S3 bucket with Object Lock, under an optional key prefix."""

    kind = "s3"

    def __init__(
        self,
        name: str,
        *,
        endpoint_url: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        retention: timedelta,
        prefix: str = "",
        region: str = "us-east-1",
        lock_mode: LockMode = "COMPLIANCE",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        multipart_threshold: int = 64 * MIB,
        part_size: int = 16 * MIB,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        if part_size < MIN_PART_SIZE or multipart_threshold < MIN_PART_SIZE:
            raise ValueError(f"part size and multipart threshold must be at least {MIN_PART_SIZE}")
        if prefix:
            check_prefix(prefix)
            prefix = prefix.removesuffix("/") + "/"
        self.name = name
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.retention = retention
        self.lock_mode: LockMode = lock_mode
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._clock = clock
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            # Checksums are sent explicitly (sha256, precomputed); no CRC32 added on the side,
            # and responses are verified by read_back's own digests, not by botocore.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
        )
        self._client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)

    @classmethod
    def from_settings(cls, name: str, entry: S3LocationSettings) -> S3Location:
        return cls(
            name,
            endpoint_url=entry.endpoint_url,
            bucket=entry.bucket,
            prefix=entry.prefix,
            region=entry.region,
            access_key=entry.access_key.get_secret_value(),
            secret_key=entry.secret_key.get_secret_value(),
            retention=timedelta(days=entry.retention_days),
            lock_mode=entry.lock_mode,
            connect_timeout=entry.connect_timeout,
            read_timeout=entry.read_timeout,
            max_attempts=entry.max_attempts,
            multipart_threshold=entry.multipart_threshold_mib * MIB,
            part_size=entry.part_size_mib * MIB,
        )

    def __repr__(self) -> str:  # no credentials
        return f"S3Location({self.name!r}, {self.endpoint_url!r}, {self.uri!r})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    # -- errors ----------------------------------------------------------------------------

    def _where(self, key: str | None) -> str:
        where = f"location {self.name} ({self.endpoint_url}, bucket {self.bucket}"
        return where + (f", key {self.prefix}{key})" if key is not None else ")")

    def _error(self, exc: Exception, action: str, key: str | None = None) -> StorageError:
        """Our error for a botocore one; the caller raises it ``from`` the original."""
        where = self._where(key)
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return LocationUnavailable(
                f"cannot {action}: the S3 endpoint of {where} did not answer: {exc}",
                hint=f"check that the S3 server at {self.endpoint_url} is running and reachable "
                f"from this machine, and endpoint_url under [locations.{self.name}] "
                f"(each request is tried {self.max_attempts} times, with timeouts of "
                f"{self.connect_timeout:g} s to connect and {self.read_timeout:g} s to read)",
            )
        if isinstance(exc, ClientError):
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            text = f"cannot {action} at {where}: the server answered {code}: {message}"
            if code == "NoSuchBucket":
                return StorageError(
                    text,
                    hint=f"create the bucket with Object Lock (ensure()) or fix bucket "
                    f"under [locations.{self.name}]",
                )
            if code in _CREDENTIAL_CODES:
                return StorageError(
                    text,
                    hint=f"check access_key and secret_key of [locations.{self.name}] "
                    f"(CUSTOS_LOCATIONS__{self.name.upper()}__ACCESS_KEY / __SECRET_KEY) and "
                    "that they may use this bucket",
                )
            if code in _DIGEST_CODES:
                return ChecksumMismatch(
                    f"cannot {action} at {where}: the server refused the bytes because they do "
                    f"not match the sha256 sent with them ({code}); nothing was stored",
                    hint="the source changed or is damaged, or the transfer corrupted it: check "
                    "the source against the catalog and try again",
                )
            return StorageError(text)
        return StorageError(f"cannot {action} at {where}: {exc}")

    # -- keys ------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        full = self.prefix + check_key(key)
        if len(full.encode("utf-8")) > 1024:
            raise KeyRejected(f"refused storage key {key!r}: longer than 1024 bytes with prefix")
        return full

    def _retain_until(self) -> datetime:
        """Now + retention, rounded up to the whole second that S3 records."""
        until = self._clock().astimezone(UTC) + self.retention
        if until.microsecond:
            until = until.replace(microsecond=0) + timedelta(seconds=1)
        return until

    # -- the protocol ----------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the bucket with Object Lock if it is missing; refuse one without it.

        Raises :class:`StorageError` (:class:`LocationUnavailable` when unreachable).
        """
        try:
            exists = True
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
                exists = False
            if not exists:
                extra: dict[str, Any] = {}
                if self.region != "us-east-1":
                    extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                self._client.create_bucket(
                    Bucket=self.bucket, ObjectLockEnabledForBucket=True, **extra
                )
            try:
                lock = self._client.get_object_lock_configuration(Bucket=self.bucket)
                enabled = lock["ObjectLockConfiguration"].get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                if _code(exc) not in _NO_LOCK_CODES | {"NoSuchObjectLockConfiguration"}:
                    raise
                enabled = False
            versioning = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "prepare the bucket") from exc
        if not enabled or versioning != "Enabled":
            raise StorageError(
                f"{self._where(None)}: the bucket exists without Object Lock "
                f"(versioning: {versioning or 'off'}); replicas are kept only in buckets whose "
                "objects can be locked (WORM)",
                hint="Object Lock can only be enabled when a bucket is created: point "
                f"[locations.{self.name}] at a new bucket name (ensure() creates it with "
                "Object Lock) or at a bucket created with Object Lock enabled",
            )

    def put(self, key: str, source: Path, *, sha256: str, sha512: str | None = None) -> PutResult:
        """Store ``source`` as a new, locked version of ``key``; see the module docstring.

        The server checks sha256; ``sha512`` is checked (by the client, in the same read) only
        for a file sent in parts. Raises :class:`KeyRejected`, :class:`ChecksumMismatch`,
        :class:`LocationUnavailable` or :class:`StorageError`.
        """
        full = self._key(key)
        check_digests(sha256, sha512)
        checksum = _b64(bytes.fromhex(sha256))
        try:
            with open(source, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > self.multipart_threshold:
                    return self._put_parts(key, full, fh, size, sha256, sha512)
                until = self._retain_until()
                try:
                    done = self._client.put_object(
                        Bucket=self.bucket,
                        Key=full,
                        Body=fh,
                        ContentLength=size,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=checksum,
                        ObjectLockMode=self.lock_mode,
                        ObjectLockRetainUntilDate=until,
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise self._error(exc, "store", key) from exc
        except OSError as exc:  # the source file (botocore's errors are translated above)
            raise StorageError(
                f"cannot read {source} to store it at {self._where(key)}: {exc}"
            ) from exc
        returned = done.get("ChecksumSHA256")
        if returned != checksum:
            raise ChecksumMismatch(
                f"{self._where(key)}: the server stored version {done.get('VersionId')} but "
                f"reported sha256 {returned!r}, not {checksum!r}",
                hint="do not count this copy: read it back, and check the server supports "
                "x-amz-checksum-sha256",
            )
        return PutResult(
            self.name,
            key,
            size,
            sha256,
            None,
            verified=("sha256",),
            version_id=done.get("VersionId"),
            lock_mode=self.lock_mode,
            retain_until=until,
        )

    def _put_parts(
        self, key: str, full: str, fh: IO[bytes], size: int, sha256: str, sha512: str | None
    ) -> PutResult:
        """A multipart upload: one part in memory at a time, each sent with its sha256."""
        part_size = max(self.part_size, -(-size // MAX_PARTS // MIB) * MIB)
        until = self._retain_until()
        try:
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                ChecksumAlgorithm="SHA256",
                ObjectLockMode=self.lock_mode,
                ObjectLockRetainUntilDate=until,
            )["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "start a multipart upload", key) from exc
        whole = {"sha256": hashlib.sha256()} | ({"sha512": hashlib.sha512()} if sha512 else {})
        part_digests: list[bytes] = []
        parts: list[dict[str, Any]] = []
        try:
            while data := fh.read(part_size):
                for h in whole.values():
                    h.update(data)
                digest = hashlib.sha256(data).digest()
                number = len(parts) + 1
                try:
                    sent = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumSHA256=_b64(digest),
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise self._error(exc, f"send part {number}", key) from exc
                if sent.get("ChecksumSHA256") != _b64(digest):
                    raise ChecksumMismatch(f"{self._where(key)}: part {number} not confirmed")
                parts.append(
                    {"PartNumber": number, "ETag": sent["ETag"], "ChecksumSHA256": _b64(digest)}
                )
                part_digests.append(digest)
            expected = {"sha256": sha256, "sha512": sha512}
            for alg, h in whole.items():
                if h.hexdigest() != expected[alg]:
                    raise ChecksumMismatch(
                        f"{self._where(key)}: the file read from {fh.name} does not match the "
                        f"expected {alg} (expected {expected[alg]}, read {h.hexdigest()}); the "
                        "upload was aborted and nothing was stored",
                        hint="the source changed or is damaged: check it before replicating it",
                    )
            try:
                done = self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, "complete the multipart upload", key) from exc
        except BaseException:
            self._abort(full, upload_id)
            raise
        composite = _b64(hashlib.sha256(b"".join(part_digests)).digest()) + f"-{len(parts)}"
        if done.get("ChecksumSHA256") != composite:
            raise ChecksumMismatch(
                f"{self._where(key)}: the server stored version {done.get('VersionId')} but "
                f"reported checksum {done.get('ChecksumSHA256')!r}, not {composite!r}",
                hint="do not count this copy: read it back before relying on it",
            )
        return PutResult(
            self.name,
            key,
            size,
            sha256,
            sha512,
            verified=tuple(whole),
            version_id=done.get("VersionId"),
            lock_mode=self.lock_mode,
            retain_until=until,
        )

    def _abort(self, full: str, upload_id: str) -> None:
        """Best effort: a failed abort leaves parts the bucket's lifecycle rules can clean, and
        must not hide the error that caused it."""
        with contextlib.suppress(ClientError, BotoCoreError):
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)

    def open(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        full = self._key(key)
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            got = self._client.get_object(Bucket=self.bucket, Key=full, **extra)
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                raise ObjectMissing(f"{self._where(key)}: nothing stored") from exc
            raise self._error(exc, "read", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "read", key) from exc
        return _BodyReader(self, key, got.get("VersionId"), got["Body"])

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        full = self._key(key)
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            head = self._client.head_object(
                Bucket=self.bucket, Key=full, ChecksumMode="ENABLED", **extra
            )
        except ClientError as exc:
            # 405: the version named is a delete marker, which holds no object.
            if _code(exc) in _MISSING_CODES | {"405", "MethodNotAllowed"}:
                return None
            raise self._error(exc, "look up", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "look up", key) from exc
        until = head.get("ObjectLockRetainUntilDate")
        return ObjectInfo(
            key,
            head["ContentLength"],
            version_id=head.get("VersionId"),
            lock_mode=head.get("ObjectLockMode"),
            retain_until=until.astimezone(UTC) if until else None,
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
            server_checksum=head.get("ChecksumSHA256"),
        )

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list keys", prefix) from exc

    def hide(self, key: str) -> None:
        """Make ``key`` read as absent (a delete marker) while every version written stays
        stored, and locked as long as its retention says: what removing means where Object
        Lock forbids deleting a version (an orphan an interrupted deposit left, for one)."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "hide", key) from exc

    def versions(self, key: str) -> tuple[str, ...]:
        """Version ids of the objects stored under ``key``, newest first (delete markers
        excluded)."""
        return tuple(v for v, marker in self._versions(key) if not marker)

    def _versions(self, key: str) -> list[tuple[str, bool]]:
        full = self._key(key)
        found: list[tuple[str, bool]] = []
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=full
        )
        try:
            for page in pages:
                for v in page.get("Versions", []):
                    if v["Key"] == full:
                        found.append((v["VersionId"], False))
                for m in page.get("DeleteMarkers", []):
                    if m["Key"] == full:
                        found.append((m["VersionId"], True))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list versions", key) from exc
        return found

    def delete(self, key: str) -> None:
        """Remove every version of ``key``, only if none is locked.

        Raises :class:`ObjectLocked` before sending any delete if a version is under
        retention or a legal hold (or if the server refuses one), :class:`ObjectMissing` if
        nothing is stored, and :class:`StorageError` for other failures.
        """
        found = self._versions(key)
        objects = [v for v, marker in found if not marker]
        if not objects:
            raise ObjectMissing(f"{self._where(key)}: nothing stored")
        now = self._clock()
        locked = [
            info
            for v in objects
            if (info := self.stat(key, version_id=v)) is not None and info.locked_at(now)
        ]
        if locked:
            last = max(locked, key=lambda i: i.retain_until or now)
            retained = last.retain_until is not None and last.retain_until > now
            raise ObjectLocked(
                self.name,
                key,
                mode=last.lock_mode if retained else None,
                retain_until=last.retain_until if retained else None,
                version_id=last.version_id,
                legal_hold=last.legal_hold,
            )
        for version_id, _marker in found:
            try:
                self._client.delete_object(
                    Bucket=self.bucket, Key=self._key(key), VersionId=version_id
                )
            except ClientError as exc:
                if _code(exc) == "AccessDenied":
                    raise ObjectLocked(
                        self.name,
                        key,
                        mode=None,
                        retain_until=None,
                        version_id=version_id,
                        detail="the server refused to delete it",
                    ) from exc
                raise self._error(exc, "delete", key) from exc
            except BotoCoreError as exc:
                raise self._error(exc, "delete", key) from exc
