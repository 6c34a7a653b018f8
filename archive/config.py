"""Settings: one typed object, loaded once at the composition root and passed down.

Sources, later ones winning: built-in defaults (the embedded default: SQLite catalog and a
local storage root inside the data folder, no server), a TOML file, ``CUSTOS_*`` environment
variables, then command-line flags. Nested keys use ``__`` in environment names, e.g.
``CUSTOS_LIMITS__MAX_FILES=1000``. This module is the only one that reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from archive.errors import ConfigError

ENV_PREFIX = "CUSTOS_"
#: Not settings: a user's own credentials, which commands that act in a user's name (a
#: registrar's review step) read instead of asking for them.
CREDENTIAL_ENV = frozenset({f"{ENV_PREFIX}TOKEN", f"{ENV_PREFIX}TOTP"})
DEFAULT_DATA_DIR = Path("custos-data")
CONFIG_FILE_NAME = "custos.toml"


class Limits(BaseModel):
    """Refusal thresholds for deposits (compression bombs, floods, oversize tag files)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Bytes in one deposit, unpacked.
    max_total_bytes: int = Field(default=4 * 1024**4, gt=0)  # 4 TiB
    #: Files in one deposit, unpacked.
    max_files: int = Field(default=2_000_000, gt=0)
    #: Bytes out of an archive per byte in it (a compression bomb is refused).
    max_compression_ratio: float = Field(default=200.0, gt=1)
    #: The ratio limit applies once this many bytes have come out of an archive.
    ratio_floor_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    #: The size of one tag file other than a manifest.
    max_tag_file_bytes: int = Field(default=1024 * 1024, gt=0)  # bagit.txt, bag-info.txt, ...
    #: The size of one manifest or tag manifest.
    max_manifest_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    #: The length of one path in the bag, in bytes (UTF-8).
    max_path_bytes: int = Field(default=1024, gt=0)
    #: Folders nested in the bag.
    max_depth: int = Field(default=64, gt=0)


class TSASettings(BaseModel):
    """Timestamp authorities. The embedded default runs a local one (OpenSSL) in the data
    folder; production lists external ones (each batch then gets a token from each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Run the local timestamp authority (OpenSSL, its PKI made in DATA_DIR/tsa at first use).
    local: bool = True
    #: External RFC 3161 timestamp authorities: each batch gets a token from each.
    urls: tuple[str, ...] = ()
    roots: tuple[Path, ...] = ()  # PEM trust anchors of the external TSAs
    policy: str = ""  # the policy OID tokens must carry ("" accepts the TSA's default)
    #: Seconds per request to an authority.
    timeout: float = Field(default=30.0, gt=0)
    #: After a failed seal, wait this long before the next try, doubling per failure...
    retry_base: float = Field(default=30.0, gt=0)
    #: ...up to this (seconds).
    retry_max: float = Field(default=3600.0, gt=0)


class ProofSettings(BaseModel):
    """The archive's proof policy: the digest algorithm of new seals and renewals, those
    retired (records resting on them get a hash-tree renewal), and how long before a TSA
    certificate expires its timestamps are renewed. Every renewal event names what applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The digest algorithm of new seals and of hash-tree renewals.
    algorithm: Literal["sha256", "sha384", "sha512"] = "sha512"
    #: Algorithms no longer trusted: records resting on them get a hash-tree renewal.
    retired_algorithms: tuple[Literal["sha256", "sha384", "sha512"], ...] = ()
    #: A timestamp renewal is made this many days before a TSA certificate expires.
    renew_before_days: int = Field(default=180, ge=1)

    @model_validator(mode="after")
    def _not_retired(self) -> ProofSettings:
        if self.algorithm in self.retired_algorithms:
            raise ValueError(f"proofs.algorithm {self.algorithm} is listed as retired")
        return self


class PadesSettings(BaseModel):
    """The archive's own signing identity for PAdES on the PDF/A copies it makes (its
    "archive seal"). The embedded default (``local``) makes a key, a certificate and the CA
    that issued it in ``DATA_DIR/pades`` at first use, like the local timestamp authority;
    production names a key and certificate its CA issued (PEM files), the chain up to the
    root, and the roots a verifier trusts. Revocation information is then fetched from the
    URLs the certificates name (the local CA issues its CRLs itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The embedded default: a key, certificate and CA made in DATA_DIR/pades at first use
    #: (false: production, with the key, certificate and roots below).
    local: bool = True
    key: Path | None = None  # PEM private key (unencrypted; keep the file 0600)
    certificate: Path | None = None  # PEM certificate of that key
    chain: tuple[Path, ...] = ()  # PEM intermediate certificates, signer's issuer first
    roots: tuple[Path, ...] = ()  # PEM trust anchors of the signing certificate

    @model_validator(mode="after")
    def _identity(self) -> PadesSettings:
        if not self.local and (self.key is None or self.certificate is None or not self.roots):
            raise ValueError(
                "pades.local = false needs pades.key, pades.certificate and pades.roots "
                "(PEM files of the archive's signing key, its certificate and its CA's root)"
            )
        return self


class MigrationSettings(BaseModel):
    """When the worker runs format migration (what is migrated is policy:
    ``policies/formats.toml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The worker runs ``migrate`` every this many minutes (0: only when a job is queued).
    every_minutes: int = Field(default=0, ge=0, le=1440)
    #: The ``characterise`` job queues ``migrate`` for each package it has just identified
    #: (where ``custos worker`` runs; off by default: the embedded default has no worker).
    after_identification: bool = False


#: A location's key: lowercase, so that ``CUSTOS_LOCATIONS__<KEY>__...`` can reach it.
LOCATION_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: S3 bucket names (the AWS rules, which SeaweedFS and Ceph follow): 3 to 63 characters.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class LocalLocationSettings(BaseModel):
    """A replica location in a folder (another disk, a mounted share)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A folder.
    kind: Literal["local"]
    #: The folder (another disk or a mounted share); it is made a storage root OCFL tools read.
    path: Path
    #: Flush each copy to disk before it is counted.
    fsync: bool = True


class S3LocationSettings(BaseModel):
    """A replica location in an S3-compatible bucket with Object Lock (WORM).

    Credentials can come from the environment like any other key, e.g.
    ``CUSTOS_LOCATIONS__OFFSITE__SECRET_KEY``; they are kept as secrets (never printed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: An S3-compatible bucket with Object Lock.
    kind: Literal["s3"]
    #: The server's http(s) URL (SeaweedFS, Ceph, MinIO, AWS…).
    endpoint_url: str
    #: The bucket, created with Object Lock if missing (one without Object Lock is refused).
    bucket: str
    #: A key prefix inside the bucket (optional).
    prefix: str = ""
    #: The region the server expects.
    region: str = "us-east-1"
    #: The access key id: best from the environment (CUSTOS_LOCATIONS__<NAME>__ACCESS_KEY).
    access_key: SecretStr
    #: The secret key: best from the environment (CUSTOS_LOCATIONS__<NAME>__SECRET_KEY).
    secret_key: SecretStr
    #: Every object version is locked for this many days from the moment it is written.
    retention_days: int = Field(gt=0, le=36_500)
    #: COMPLIANCE: nobody can shorten the lock; GOVERNANCE: privileged users can bypass it.
    lock_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    #: Seconds to connect to the server...
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    #: ...and to wait for its answer.
    read_timeout: float = Field(default=60.0, gt=0, le=3600)
    #: Attempts per request, the first included (botocore's "standard" retry mode).
    max_attempts: int = Field(default=3, ge=1, le=10)
    #: Files above this size are sent in parts (S3's minimum part size is 5 MiB).
    multipart_threshold_mib: int = Field(default=64, ge=5, le=5 * 1024)
    #: The size of each part, in MiB.
    part_size_mib: int = Field(default=16, ge=5, le=5 * 1024)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not BUCKET_NAME.match(value) or ".." in value:
            raise ValueError(
                f"{value!r} is not a valid bucket name (3 to 63 characters: lowercase letters, "
                "digits, dots and hyphens, starting and ending with a letter or digit)"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value == "":
            return value
        body = value.removesuffix("/")
        segments = body.split("/")
        if (
            value.startswith("/")
            or "\\" in value
            or any(s in ("", ".", "..") for s in segments)
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
        ):
            raise ValueError(
                f"{value!r} is not a safe key prefix (relative, '/'-separated, no empty, "
                "'.' or '..' segments, no control characters)"
            )
        return body + "/"


LocationSettings = Annotated[
    LocalLocationSettings | S3LocationSettings, Field(discriminator="kind")
]
#: The name the primary storage root goes by among locations; no configured location takes it.
PRIMARY_LOCATION = "primary"


def location_example(kind: Literal["local", "s3"], name: str) -> str:
    """A ``[locations.NAME]`` table of ``kind`` with the keys it requires, for an operator
    to copy into the settings file (the S3 credentials are left to the environment, whose
    variables the text names). The values are examples to change."""
    if kind == "local":
        return f'[locations.{name}]\nkind = "local"\npath = "/mnt/replica/custos"\n'
    env = f"{ENV_PREFIX}LOCATIONS__{name.upper()}"
    return (
        f"[locations.{name}]\n"
        'kind = "s3"\n'
        'endpoint_url = "https://s3.example.org"\n'
        'bucket = "custos-replicas"\n'
        "retention_days = 3650\n"
        "# access_key and secret_key: best from the environment, in\n"
        f"#   {env}__ACCESS_KEY\n"
        f"#   {env}__SECRET_KEY\n"
    )


class QueueSettings(BaseModel):
    """The job queue (Huey) of scheduled jobs, and how the outbox (the work that follows a
    commit, kept in the catalog) is run. The embedded default keeps the queue in a SQLite
    file in the data folder (no server); ``redis`` lets workers on many machines share it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: sqlite: a file in the data folder (one machine); redis: one queue for many machines.
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: Path | None = None  # default: DATA_DIR/queue.sqlite3
    #: With backend = "redis": redis://HOST:PORT/DB (rediss:// for TLS).
    redis_url: str = ""
    #: The queue's name (several archives can share one Redis).
    name: str = Field(default="custos", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: ``custos serve`` runs the work that follows a commit (identify, seal, replicate,
    #: migrate: the outbox) in a thread of its own; set false where ``custos worker``
    #: processes run.
    in_serve: bool = True
    #: How often an idle worker (or ``custos serve``) looks at the outbox for work.
    poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: A process holds an outbox entry it runs this long; if it dies, another takes the
    #: entry once the lease has run out.
    lease_minutes: int = Field(default=60, ge=1, le=1440)
    #: A failed entry is tried again after 1 minute, then 2, 4 ... at most this many.
    retry_max_minutes: int = Field(default=60, ge=1, le=1440)

    @model_validator(mode="after")
    def _redis_url(self) -> QueueSettings:
        if self.backend == "redis" and not re.match(r"^rediss?://", self.redis_url):
            raise ValueError("queue.backend = redis needs queue.redis_url = redis://HOST:PORT/DB")
        return self


class FixitySettings(BaseModel):
    """How fixity work is cut and scheduled (what is checked, and how often, is policy:
    ``policies/fixity.toml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Copies a worker claims at a time (their results are written in one transaction).
    batch_files: int = Field(default=500, ge=1, le=100_000)
    #: ...and at most this many bytes of content (one file if it is larger): large files are
    #: shared out between workers rather than claimed all at once by the first.
    batch_bytes: int = Field(default=128 * 1024 * 1024, ge=1)
    #: A claim older than this (seconds) is taken to belong to a dead worker and is released.
    claim_timeout: float = Field(default=900.0, gt=0)
    #: The worker's schedule, in minutes: look for due copies, sample, seal what is pending.
    due_every_minutes: int = Field(default=10, ge=1, le=1440)
    #: The worker checks copies picked at random (policies/fixity.toml's sampling) this often.
    sample_every_minutes: int = Field(default=10, ge=1, le=1440)
    #: The worker replicates packages not safely stored this often.
    replicate_every_minutes: int = Field(default=10, ge=1, le=1440)
    #: The worker seals what awaits a seal (with the seal's back-off) this often.
    seal_every_minutes: int = Field(default=5, ge=1, le=1440)
    #: The daily renewal of evidence records runs at this hour (UTC).
    renew_hour: int = Field(default=3, ge=0, le=23)


class AuthSettings(BaseModel):
    """Limits on guessing credentials through the API, and the lifetime of sessions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Wrong credentials one client address may send in a minute; after that its requests
    #: with credentials are refused (429) unchecked until the minute is over. Counted by
    #: each serving process (argon2 makes every check cost ~50 ms of CPU on purpose).
    failures_per_minute: int = Field(default=20, ge=1, le=100_000)
    #: Wrong TOTP codes in a row before a user's second factor is locked (in the catalog,
    #: so every serving process and machine honours it)...
    totp_attempts: int = Field(default=5, ge=1, le=100)
    #: ...for this many minutes, during which no code is even checked.
    totp_lockout_minutes: int = Field(default=15, ge=1, le=1440)
    #: How long a session (``POST /auth/sessions``: one TOTP code for many requests) lasts.
    session_minutes: int = Field(default=15, ge=1, le=480)
    #: Sessions one user may hold at once; starting another is refused (429) until one ends.
    sessions_per_user: int = Field(default=20, ge=1, le=1000)


class CharacterisationSettings(BaseModel):
    """Format identification and text extraction after a deposit (the ``characterise`` job
    of the outbox: ``custos ingest`` runs it at once unless ``--no-identify``; for API
    deposits ``custos serve`` or a worker runs it, see ``queue.in_serve``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, value: Any) -> Any:
        if isinstance(value, dict) and "in_serve" in value:
            raise ValueError(
                "characterisation.in_serve is now queue.in_serve (it covers all the work "
                "that follows a commit): move the line to the [queue] table"
            )
        return value

    #: How often ``custos serve`` (and the worker's schedule) looks for work left pending.
    every_minutes: int = Field(default=5, ge=1, le=1440)
    #: Plain text of public documents for the reading-room search (PDF via pdftotext).
    extract_text: bool = True
    #: Files larger than this are not read for text.
    source_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    #: Characters of text kept (and indexed) per file; the rest is cut off.
    text_max_chars: int = Field(default=200_000, ge=1, le=2_000_000)
    #: pdftotext is killed after this many seconds (the file is recorded as failed).
    time_limit_seconds: float = Field(default=60.0, gt=0)


class KeySettings(BaseModel):
    """Tier keys split among registrars (``custos keys``, ``POST /registrar/keys/unlock``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: How long a tier's key stays open once enough registrars have presented their shares
    #: (then it is dropped from memory), and how long a share presented waits for the others.
    unlock_minutes: int = Field(default=30, ge=1, le=1440)


class Settings(BaseModel):
    """Everything Custos needs to know about where it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The data folder: the catalog, storage root, staging, queue and local PKIs by default
    #: (``--data-dir`` or ``CUSTOS_DATA_DIR``; a settings file cannot move it).
    data_dir: Path = DEFAULT_DATA_DIR
    #: The catalog, as an SQLAlchemy URL (``postgresql+psycopg://USER@HOST:PORT/DB``);
    #: empty: SQLite in the data folder.
    database_url: str = ""
    #: The OCFL storage root (default: DATA_DIR/storage).
    storage_root: Path | None = None
    #: Where objects are built before they are renamed in: on the storage root's filesystem
    #: (default: DATA_DIR/staging). With ``primary_location``, this host's scratch space.
    staging_dir: Path | None = None
    #: The key of the ``[locations.*]`` entry that holds the primary copy (an S3 bucket that
    #: several hosts share, or a folder) instead of ``storage_root``; empty: ``storage_root``.
    #: That location is no replica target: the replication policy names the others.
    primary_location: str = ""
    #: Refusal thresholds for deposits (table ``[limits]``).
    limits: Limits = Limits()
    #: Timestamp authorities (table ``[tsa]``).
    tsa: TSASettings = TSASettings()
    #: The proof policy (table ``[proofs]``).
    proofs: ProofSettings = ProofSettings()
    #: Replica storage locations by key (see archive/storage/replica.py); the replication
    #: policy says which of them hold each package's copies.
    locations: dict[str, LocationSettings] = Field(default_factory=dict)
    #: The job queue of ``custos worker`` (table ``[queue]``).
    queue: QueueSettings = QueueSettings()
    #: How fixity work is cut and scheduled (table ``[fixity]``).
    fixity: FixitySettings = FixitySettings()
    #: Limits on guessing credentials, and sessions (table ``[auth]``).
    auth: AuthSettings = AuthSettings()
    #: Tier keys split among registrars (table ``[keys]``).
    keys: KeySettings = KeySettings()
    #: The archive seal on PDF/A copies (table ``[pades]``).
    pades: PadesSettings = PadesSettings()
    #: When the worker runs format migration (table ``[migration]``).
    migration: MigrationSettings = MigrationSettings()
    #: A folder holding every policy file (ingest.toml, access.toml, fixity.toml,
    #: replication.toml, formats.toml, pdfa_def.ps); default: those shipped in policies/.
    policy_dir: Path | None = None
    #: False: no format identification (nor text extraction) at all.
    identify_formats: bool = True
    #: Identification and text extraction after a deposit (table ``[characterisation]``).
    characterisation: CharacterisationSettings = CharacterisationSettings()
    #: Flush staged objects to disk before they become visible.
    fsync: bool = True
    #: Cores to use: FIDO runs this many processes, small files get two copy processes each.
    workers: int = Field(default=2, ge=1, le=64)

    @field_validator("locations")
    @classmethod
    def _location_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not LOCATION_KEY.match(key):
                raise ValueError(
                    f"location key {key!r} must be lowercase letters, digits, '-' or '_', "
                    "starting with a letter (so that CUSTOS_LOCATIONS__<KEY>__... can set it)"
                )
            if key == PRIMARY_LOCATION:
                raise ValueError(
                    f"location key {PRIMARY_LOCATION!r} is the storage root's own name: "
                    "choose another"
                )
        return value

    @model_validator(mode="after")
    def _primary_is_a_location(self) -> Settings:
        if self.primary_location and self.primary_location not in self.locations:
            raise ValueError(
                f"primary_location names {self.primary_location!r}, which is not among "
                f"[locations.*] ({', '.join(sorted(self.locations)) or 'none configured'})"
            )
        return self

    @property
    def replica_locations(self) -> dict[str, LocationSettings]:
        """The locations that hold replicas: every configured one but the primary."""
        return {k: v for k, v in self.locations.items() if k != self.primary_location}

    @property
    def catalog_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'catalog.sqlite3').resolve()}"

    @property
    def queue_path(self) -> Path:
        return (self.queue.path or self.data_dir / "queue.sqlite3").resolve()

    @property
    def tsa_path(self) -> Path:
        return (self.data_dir / "tsa").resolve()

    @property
    def pades_path(self) -> Path:
        return (self.data_dir / "pades").resolve()

    @property
    def storage_path(self) -> Path:
        return (self.storage_root or self.data_dir / "storage").resolve()

    @property
    def staging_path(self) -> Path:
        """Staging must share a filesystem with the storage root (objects are renamed in)."""
        return (self.staging_dir or self.data_dir / "staging").resolve()


def _set_nested(target: dict[str, Any], dotted: list[str], value: Any) -> None:
    for key in dotted[:-1]:
        nxt = target.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"setting {'.'.join(dotted)} conflicts with a plain value {key}")
        target = nxt
    target[dotted[-1]] = value


def _env_value(name: str, raw: str) -> Any:
    """Lists and tables come as JSON (``CUSTOS_TSA__URLS='["https://tsa.example/"]'``)."""
    if raw.lstrip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} looks like JSON but is not valid JSON: {exc}") from exc
    return raw


def load_settings(
    *,
    data_dir: Path | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, TOML, environment and explicit overrides.

    Raises :class:`ConfigError` naming the offending key and source.
    """
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}

    env_data_dir = env.get(f"{ENV_PREFIX}DATA_DIR")
    chosen_dir = data_dir or (Path(env_data_dir) if env_data_dir else DEFAULT_DATA_DIR)

    env_config = env.get(f"{ENV_PREFIX}CONFIG")
    path = config_file or (Path(env_config) if env_config else None)
    if path is None and (chosen_dir / CONFIG_FILE_NAME).is_file():
        path = chosen_dir / CONFIG_FILE_NAME
    if path is not None:
        try:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"configuration file {path} does not exist",
                hint="pass an existing file with --config, or drop the option",
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc

    for name, raw in env.items():
        if (
            not name.startswith(ENV_PREFIX)
            or name in {f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}DATA_DIR"}
            or name in CREDENTIAL_ENV
        ):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        _set_nested(values, keys, _env_value(name, raw))

    values["data_dir"] = chosen_dir
    for key, val in (overrides or {}).items():
        if val is not None:
            values[key] = val
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings ({problems})",
            hint=f"check {path or 'the defaults'} and the {ENV_PREFIX}* environment variables",
        ) from exc
