"""The replica-location contract, run against every implementation: a local folder and S3 with
Object Lock on a real SeaweedFS server (no mocks). S3-only behaviour is at the end."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocfl.storage_root import StorageRoot

from archive.errors import StorageError
from archive.services import Services
from archive.storage import ocfl
from archive.storage.replica import (
    PARTIAL_SUFFIX,
    ChecksumMismatch,
    KeyRejected,
    LocalFolderLocation,
    LocationUnavailable,
    ObjectLocked,
    ObjectMissing,
    ReplicaLocation,
)
from archive.storage.replicate import (
    ROOT_INVENTORY,
    ROOT_SIDECAR,
    Verdict,
    prepare_storage_root,
    read_back,
    replicate_object,
)
from archive.storage.s3 import MIB, S3Location
from tests.conftest import SAMPLE
from tests.helpers import deposit
from tests.servers import SeaweedServer, free_port

KINDS = ["local", "s3"]
PART = 5 * MIB  # S3's minimum part size; the S3 location under test sends files above it in parts


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha512(data).hexdigest(), hashlib.sha256(data).hexdigest()


def make_s3(server: SeaweedServer, bucket: str | None = None, **kw: Any) -> S3Location:
    values: dict[str, Any] = {
        "endpoint_url": server.endpoint_url,
        "bucket": bucket or f"t-{uuid.uuid4().hex[:12]}",
        "prefix": "custos/replica",
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "retention": timedelta(days=1),
        "multipart_threshold": PART,
        "part_size": PART,
        **kw,
    }
    return S3Location("offsite", **values)


@pytest.fixture(params=KINDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> ReplicaLocation:
    loc: ReplicaLocation
    if request.param == "local":
        loc = LocalFolderLocation("second-disk", tmp_path / "replica", fsync=False)
    else:
        loc = make_s3(request.getfixturevalue("seaweedfs"))
    loc.ensure()
    return loc


@pytest.fixture
def source(tmp_path: Path) -> Callable[[bytes], Path]:
    def write(data: bytes) -> Path:
        path = tmp_path / f"src-{uuid.uuid4().hex[:8]}"
        path.write_bytes(data)
        return path

    return write


def tamper(location: ReplicaLocation, key: str, data: bytes, server: SeaweedServer | None) -> None:
    """Damage a stored copy behind the archive's back: in place on disk for a folder; for S3,
    where a locked version cannot be altered, a new version with other bytes."""
    if isinstance(location, LocalFolderLocation):
        (location.root / key).write_bytes(data)
    else:
        assert isinstance(location, S3Location) and server is not None
        server.client().put_object(Bucket=location.bucket, Key=location.prefix + key, Body=data)


def server_of(request: pytest.FixtureRequest, location: ReplicaLocation) -> SeaweedServer | None:
    return request.getfixturevalue("seaweedfs") if isinstance(location, S3Location) else None


# -- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "data"),
    [
        ("a/b/file.txt", b"testimony of a witness\n"),
        ("empty", b""),
        ("v1/content/bag/data/Núñez — déclaration.txt", "é".encode() * 1000),
    ],
)
def test_put_stat_open_round_trip(
    location: ReplicaLocation, source: Callable[[bytes], Path], key: str, data: bytes
) -> None:
    sha512, sha256 = digests(data)
    put = location.put(key, source(data), sha256=sha256, sha512=sha512)
    assert (put.location, put.key, put.size, put.sha256) == (location.name, key, len(data), sha256)
    assert "sha256" in put.verified
    info = location.stat(key)
    assert info is not None and info.size == len(data) and info.key == key
    assert info.version_id == put.version_id
    with location.open(key) as reader:
        assert reader.read() == data
    assert list(location.iter_keys()) == [key]
    check = read_back(location, key, sha512=sha512, sha256=sha256, size=len(data))
    assert check.verdict is Verdict.OK and check.ok, check.describe()
    assert (check.size, check.sha512, check.sha256) == (len(data), sha512, sha256)


def test_absent_key(location: ReplicaLocation) -> None:
    assert location.stat("no/such/key") is None
    with pytest.raises(ObjectMissing):
        location.open("no/such/key")
    with pytest.raises(ObjectMissing):
        location.delete("no/such/key")
    assert list(location.iter_keys()) == []


def test_read_back_verdicts(
    request: pytest.FixtureRequest, location: ReplicaLocation, source: Callable[[bytes], Path]
) -> None:
    data = os.urandom(4096)
    sha512, sha256 = digests(data)
    for key in ("intact", "flipped", "truncated"):
        location.put(key, source(data), sha256=sha256)
    flipped = bytearray(data)
    flipped[1234] ^= 0x01
    server = server_of(request, location)
    tamper(location, "flipped", bytes(flipped), server)
    tamper(location, "truncated", data[:1000], server)

    def check(key: str) -> Any:
        return read_back(location, key, sha512=sha512, sha256=sha256, size=len(data))

    assert check("intact").verdict is Verdict.OK
    bad = check("flipped")
    assert bad.verdict is Verdict.MISMATCH and not bad.ok
    assert bad.size == len(data) and bad.sha512 == digests(bytes(flipped))[0]
    assert "does not match" in bad.describe()
    short = check("truncated")
    assert short.verdict is Verdict.TRUNCATED and short.size == 1000
    assert "1000 of 4096 bytes" in short.describe()
    gone = check("missing")
    assert gone.verdict is Verdict.MISSING and gone.size is None and gone.sha512 is None
    # Without an expected size, a short copy is still caught by its digests.
    assert read_back(location, "truncated", sha512=sha512, sha256=sha256).verdict is (
        Verdict.MISMATCH
    )


def test_put_refuses_bytes_that_do_not_match(
    location: ReplicaLocation, source: Callable[[bytes], Path]
) -> None:
    data = b"the bytes the catalog knows"
    wrong_sha512, wrong_sha256 = digests(b"other bytes")
    with pytest.raises(ChecksumMismatch, match="nothing was stored"):
        location.put("k/doc.txt", source(data), sha256=wrong_sha256)
    assert location.stat("k/doc.txt") is None
    assert list(location.iter_keys()) == []
    if isinstance(location, LocalFolderLocation):  # its own digest of the copy, both algorithms
        with pytest.raises(ChecksumMismatch, match="sha512"):
            location.put("k/doc.txt", source(data), sha256=digests(data)[1], sha512=wrong_sha512)
        assert list(location.root.rglob("*")) == []  # no partial file, no empty folder
    if isinstance(location, S3Location):
        assert location.versions("k/doc.txt") == ()


def test_large_file_round_trip(
    request: pytest.FixtureRequest, location: ReplicaLocation, source: Callable[[bytes], Path]
) -> None:
    """Above the S3 location's multipart threshold: three parts, each checked by the server."""
    data = os.urandom(2 * PART + 123_457)
    sha512, sha256 = digests(data)
    put = location.put("big/video.mp4", source(data), sha256=sha256, sha512=sha512)
    assert put.size == len(data) and set(put.verified) == {"sha512", "sha256"}
    info = location.stat("big/video.mp4")
    assert info is not None and info.size == len(data)
    if isinstance(location, S3Location):
        assert info.server_checksum is not None and info.server_checksum.endswith("-3")
        assert info.lock_mode == "COMPLIANCE" and info.retain_until == put.retain_until
    check = read_back(location, "big/video.mp4", sha512=sha512, sha256=sha256, size=len(data))
    assert check.verdict is Verdict.OK, check.describe()
    tamper(location, "big/video.mp4", data[:-1] + b"\x00", server_of(request, location))
    assert read_back(location, "big/video.mp4", sha512=sha512, sha256=sha256).verdict is (
        Verdict.MISMATCH
    )


def test_large_file_that_does_not_match_leaves_nothing(
    request: pytest.FixtureRequest, location: ReplicaLocation, source: Callable[[bytes], Path]
) -> None:
    data = os.urandom(PART + 1)
    with pytest.raises(ChecksumMismatch, match="nothing was stored"):
        location.put("big/bad.bin", source(data), sha256=digests(b"not it")[1])
    assert location.stat("big/bad.bin") is None
    assert list(location.iter_keys()) == []
    if isinstance(location, S3Location):
        server = request.getfixturevalue("seaweedfs")
        uploads = server.client().list_multipart_uploads(Bucket=location.bucket)
        assert uploads.get("Uploads", []) == []  # the upload was aborted


def test_iter_keys_by_prefix(location: ReplicaLocation, source: Callable[[bytes], Path]) -> None:
    keys = ["a/b/c.txt", "a/bc.txt", "ab.txt", "a/b/d/e.txt", "b.txt"]
    for key in keys:
        data = key.encode()
        location.put(key, source(data), sha256=digests(data)[1])

    def listed(prefix: str) -> list[str]:
        return sorted(location.iter_keys(prefix))

    assert listed("") == sorted(keys)
    assert listed("a/") == ["a/b/c.txt", "a/b/d/e.txt", "a/bc.txt"]
    assert listed("a/b") == ["a/b/c.txt", "a/b/d/e.txt", "a/bc.txt"]
    assert listed("a/b/") == ["a/b/c.txt", "a/b/d/e.txt"]
    assert listed("ab") == ["ab.txt"]
    assert listed("a/b/c.txt") == ["a/b/c.txt"]
    assert listed("zzz/") == []


BAD_KEYS = [
    "",
    "/etc/passwd",
    "a//b",
    "a/",
    "../outside",
    "a/../../b",
    "./a",
    "a/./b",
    "a\\..\\b",
    "a\x00b",
    "a\nb",
    f"a/.b{PARTIAL_SUFFIX}",
    "x" * 1025,
]


@pytest.fixture(params=KINDS)
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> ReplicaLocation:
    """A location that any request would fail on: a folder that does not exist and must not
    be created, an S3 endpoint on a closed port."""
    if request.param == "local":
        return LocalFolderLocation("second-disk", tmp_path / "never-created", fsync=False)
    return S3Location(
        "offsite",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        bucket="never-contacted",
        access_key="k",
        secret_key="s",
        retention=timedelta(days=1),
        max_attempts=1,
    )


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_before_any_request(
    unreachable: ReplicaLocation, source: Callable[[bytes], Path], tmp_path: Path, key: str
) -> None:
    sha512, sha256 = digests(b"x")
    src = source(b"x")
    calls: list[Callable[[], object]] = [
        lambda: unreachable.put(key, src, sha256=sha256),
        lambda: unreachable.open(key),
        lambda: unreachable.stat(key),
        lambda: unreachable.delete(key),
        lambda: read_back(unreachable, key, sha512=sha512, sha256=sha256),
    ]
    for call in calls:
        with pytest.raises(KeyRejected, match="refused storage key"):
            call()  # KeyRejected, not LocationUnavailable: nothing was attempted
    assert not (tmp_path / "never-created").exists()


@pytest.mark.parametrize("prefix", ["/a", "../", "a//", "a/../b/"])
def test_bad_prefixes_are_refused(unreachable: ReplicaLocation, prefix: str) -> None:
    with pytest.raises(KeyRejected, match="prefix"):
        list(unreachable.iter_keys(prefix))


# -- replicating an OCFL object written by the project ---------------------------------------


@pytest.fixture
def stored_object(make_services: Callable[..., Services]) -> tuple[Path, str, dict[str, Any]]:
    """The sample holding ingested for real: (object root, its path in the root, inventory)."""
    services = make_services(identify_formats=False)
    result = deposit(services, SAMPLE, depositor="Sample Closing Mechanism")
    root = services.store.object_root(result.object_path)
    return root, result.object_path, ocfl.read_inventory(root)


def object_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_replicate_object_writes_every_file_inventory_last(
    location: ReplicaLocation, stored_object: tuple[Path, str, dict[str, Any]]
) -> None:
    root, rel, inventory = stored_object
    prepare_storage_root(location)
    assert prepare_storage_root(location) == []  # already declared
    done = replicate_object(location, root, rel)
    written = [p.key for p in done.puts]
    assert written[-2:] == [f"{rel}/{ROOT_SIDECAR}", f"{rel}/{ROOT_INVENTORY}"]
    files = object_files(root)
    assert sorted(written) == [f"{rel}/{f}" for f in files]
    assert sorted(location.iter_keys(rel + "/")) == sorted(written)
    if isinstance(location, S3Location):
        assert all(p.version_id and p.lock_mode == "COMPLIANCE" for p in done.puts)
    # Every copy reads back intact against the inventory's own digests (sha512 + sha256).
    fixity = {p: d for d, paths in inventory["fixity"]["sha256"].items() for p in paths}
    for sha512, paths in inventory["manifest"].items():
        for path in paths:
            size = (root / path).stat().st_size
            check = read_back(
                location, f"{rel}/{path}", sha512=sha512, sha256=fixity[path], size=size
            )
            assert check.ok, check.describe()
    if isinstance(location, LocalFolderLocation):  # an independent OCFL validator agrees
        sr = StorageRoot(root=str(location.root))
        assert sr.validate(validate_objects=True, check_digests=True), str(sr.log)
        assert sr.num_objects == sr.good_objects == 1


def test_replicate_object_with_catalog_digests(
    location: ReplicaLocation, stored_object: tuple[Path, str, dict[str, Any]]
) -> None:
    root, rel, inventory = stored_object
    fixity = {p: d for d, paths in inventory["fixity"]["sha256"].items() for p in paths}
    expected = {p: (d, fixity[p]) for d, paths in inventory["manifest"].items() for p in paths}
    done = replicate_object(location, root, rel, expected)
    assert done.puts[-1].key == f"{rel}/{ROOT_INVENTORY}"
    # A catalog that disagrees with the object stops the copy before anything is written.
    some = sorted(expected)[0]
    with pytest.raises(StorageError, match="not in the expected digests"):
        replicate_object(location, root, rel, {k: v for k, v in expected.items() if k != some})


def test_replicate_never_spreads_a_changed_file(
    location: ReplicaLocation, stored_object: tuple[Path, str, dict[str, Any]]
) -> None:
    """A content file damaged on the primary is refused; the replica gets no root inventory,
    so it never looks complete."""
    root, rel, _ = stored_object
    payload = sorted(p for p in object_files(root) if "/content/bag/data/" in p)[0]
    target = root / payload
    target.write_bytes(target.read_bytes() + b"tampered")
    with pytest.raises(ChecksumMismatch):
        replicate_object(location, root, rel)
    assert location.stat(f"{rel}/{ROOT_INVENTORY}") is None
    assert location.stat(f"{rel}/{payload}") is None


# -- S3 only: Object Lock, versions, checksums, failures --------------------------------------


@pytest.fixture
def s3(seaweedfs: SeaweedServer) -> S3Location:
    loc = make_s3(seaweedfs)
    loc.ensure()
    return loc


def test_s3_delete_of_a_locked_object_is_refused_promptly(
    s3: S3Location, seaweedfs: SeaweedServer, source: Callable[[bytes], Path]
) -> None:
    data = b"evidence"
    sha512, sha256 = digests(data)
    put = s3.put("locked.txt", source(data), sha256=sha256)
    assert put.retain_until is not None
    started = time.monotonic()
    with pytest.raises(ObjectLocked) as caught:
        s3.delete("locked.txt")
    assert time.monotonic() - started < 5
    text = caught.value.diagnostics()
    assert f"under COMPLIANCE retention until {put.retain_until:%Y-%m-%d %H:%M:%S}" in text
    assert "never deletes locked objects" in text
    assert caught.value.retain_until == put.retain_until
    # Nothing was hidden either: no delete marker, the object reads back intact.
    raw = seaweedfs.client()
    listed = raw.list_object_versions(Bucket=s3.bucket, Prefix=s3.prefix)
    assert listed.get("DeleteMarkers", []) == []
    assert read_back(s3, "locked.txt", sha512=sha512, sha256=sha256).ok
    # The server enforces the lock itself, whatever the client does.
    with pytest.raises(Exception, match="AccessDenied"):
        raw.delete_object(Bucket=s3.bucket, Key=s3.prefix + "locked.txt", VersionId=put.version_id)


def test_s3_overwrite_creates_a_new_version(
    s3: S3Location, source: Callable[[bytes], Path]
) -> None:
    first, second = b"damaged copy", b"good copy from another replica"
    one = s3.put("doc.pdf", source(first), sha256=digests(first)[1])
    two = s3.put("doc.pdf", source(second), sha256=digests(second)[1])
    assert one.version_id and two.version_id and one.version_id != two.version_id
    assert s3.versions("doc.pdf") == (two.version_id, one.version_id)
    with s3.open("doc.pdf") as latest:
        assert latest.read() == second and latest.version_id == two.version_id
    with s3.open("doc.pdf", version_id=one.version_id) as old:
        assert old.read() == first
    old_info = s3.stat("doc.pdf", version_id=one.version_id)
    assert old_info is not None and old_info.lock_mode == "COMPLIANCE"
    check = read_back(s3, "doc.pdf", sha512=digests(first)[0], sha256=digests(first)[1],
                      version_id=one.version_id)  # fmt: skip
    assert check.ok and check.version_id == one.version_id


def test_s3_retention_is_compliance_with_the_right_date(
    s3: S3Location, seaweedfs: SeaweedServer, source: Callable[[bytes], Path]
) -> None:
    before = datetime.now(UTC)
    put = s3.put("r.txt", source(b"r"), sha256=digests(b"r")[1])
    after = datetime.now(UTC)
    assert put.lock_mode == "COMPLIANCE" and put.retain_until is not None
    assert before + timedelta(days=1) <= put.retain_until <= after + timedelta(days=1, seconds=1)
    info = s3.stat("r.txt")
    assert info is not None
    assert (info.lock_mode, info.retain_until) == ("COMPLIANCE", put.retain_until)
    raw = seaweedfs.client().get_object_retention(Bucket=s3.bucket, Key=s3.prefix + "r.txt")
    assert raw["Retention"]["Mode"] == "COMPLIANCE"
    assert raw["Retention"]["RetainUntilDate"] == put.retain_until


def test_s3_governance_mode_is_reported_and_still_refused(
    seaweedfs: SeaweedServer, source: Callable[[bytes], Path]
) -> None:
    loc = make_s3(seaweedfs, lock_mode="GOVERNANCE")
    loc.ensure()
    put = loc.put("g.txt", source(b"g"), sha256=digests(b"g")[1])
    info = loc.stat("g.txt")
    assert info is not None and info.lock_mode == put.lock_mode == "GOVERNANCE"
    with pytest.raises(ObjectLocked, match="under GOVERNANCE retention"):
        loc.delete("g.txt")


def test_s3_wrong_checksum_is_refused_by_the_server(
    s3: S3Location, seaweedfs: SeaweedServer, source: Callable[[bytes], Path]
) -> None:
    with pytest.raises(ChecksumMismatch) as caught:
        s3.put("bad.txt", source(b"real bytes"), sha256=digests(b"claimed bytes")[1])
    text = caught.value.diagnostics()
    assert "the server refused the bytes" in text and "BadDigest" in text
    assert f"key {s3.prefix}bad.txt" in text and s3.endpoint_url in text
    assert s3.stat("bad.txt") is None and s3.versions("bad.txt") == ()
    listed = seaweedfs.client().list_object_versions(Bucket=s3.bucket, Prefix=s3.prefix)
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []


@pytest.mark.slow
def test_s3_delete_removes_every_version_once_retention_ends(
    seaweedfs: SeaweedServer, source: Callable[[bytes], Path]
) -> None:
    loc = make_s3(seaweedfs, retention=timedelta(seconds=2))
    loc.ensure()
    loc.put("short.txt", source(b"1"), sha256=digests(b"1")[1])
    loc.put("short.txt", source(b"2"), sha256=digests(b"2")[1])
    with pytest.raises(ObjectLocked):
        loc.delete("short.txt")
    time.sleep(3.2)
    loc.delete("short.txt")
    assert loc.stat("short.txt") is None and loc.versions("short.txt") == ()
    listed = seaweedfs.client().list_object_versions(Bucket=loc.bucket, Prefix=loc.prefix)
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []


def test_s3_bucket_without_object_lock_is_refused(seaweedfs: SeaweedServer) -> None:
    bucket = f"plain-{uuid.uuid4().hex[:8]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    loc = make_s3(seaweedfs, bucket=bucket)
    with pytest.raises(StorageError, match="exists without Object Lock") as caught:
        loc.ensure()
    assert "new bucket" in caught.value.diagnostics()


def test_s3_ensure_creates_a_locked_bucket_once(seaweedfs: SeaweedServer) -> None:
    loc = make_s3(seaweedfs)
    loc.ensure()
    loc.ensure()
    raw = seaweedfs.client()
    lock = raw.get_object_lock_configuration(Bucket=loc.bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert raw.get_bucket_versioning(Bucket=loc.bucket)["Status"] == "Enabled"


def test_s3_server_down_is_a_prompt_clear_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there

    def dead(**kw: Any) -> S3Location:
        return S3Location(
            "offsite",
            endpoint_url=f"http://127.0.0.1:{port}",
            bucket="custos-replica",
            access_key="k",
            secret_key="s",
            retention=timedelta(days=1),
            **kw,
        )

    src = tmp_path / "f"
    src.write_bytes(b"f")
    sha512, sha256 = digests(b"f")
    default, once = dead(), dead(max_attempts=1)
    calls: list[Callable[[], object]] = [
        default.ensure,  # the default settings: 3 attempts, then a clear error
        lambda: once.put("k", src, sha256=sha256),
        lambda: once.stat("k"),
        lambda: list(once.iter_keys()),
        lambda: once.delete("k"),
        lambda: read_back(once, "k", sha512=sha512, sha256=sha256),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(LocationUnavailable) as caught:
            call()
        assert time.monotonic() - started < 10
        text = caught.value.diagnostics()
        assert f"http://127.0.0.1:{port}" in text and "offsite" in text
        assert "what to do: check that the S3 server" in text


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def test_s3_hung_server_times_out(silent_server: int) -> None:
    loc = S3Location(
        "offsite",
        endpoint_url=f"http://127.0.0.1:{silent_server}",
        bucket="custos-replica",
        access_key="k",
        secret_key="s",
        retention=timedelta(days=1),
        read_timeout=0.5,
        max_attempts=2,
    )
    started = time.monotonic()
    with pytest.raises(LocationUnavailable, match="did not answer"):
        loc.stat("k")
    assert time.monotonic() - started < 10


# -- local folder only ------------------------------------------------------------------------


def test_local_replaces_and_removes_empty_folders(
    tmp_path: Path, source: Callable[[bytes], Path]
) -> None:
    loc = LocalFolderLocation("second-disk", tmp_path / "replica", fsync=True)
    loc.ensure()
    loc.put("a/b/c.txt", source(b"one"), sha256=digests(b"one")[1])
    loc.put("a/b/c.txt", source(b"two"), sha256=digests(b"two")[1])
    assert (loc.root / "a/b/c.txt").read_bytes() == b"two"
    with pytest.raises(StorageError, match="keeps no versions"):
        loc.open("a/b/c.txt", version_id="v1")
    loc.delete("a/b/c.txt")
    assert not (loc.root / "a").exists() and loc.root.is_dir()


def test_local_refuses_links_out_of_the_folder(
    tmp_path: Path, source: Callable[[bytes], Path]
) -> None:
    loc = LocalFolderLocation("second-disk", tmp_path / "replica", fsync=False)
    loc.ensure()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not the archive's")
    (loc.root / "link").symlink_to(outside, target_is_directory=True)
    for key in ("link/x.txt", "link/sub/x.txt"):
        with pytest.raises(StorageError, match="leads outside"):
            loc.put(key, source(b"x"), sha256=digests(b"x")[1])
    with pytest.raises(StorageError, match="leads outside"):
        loc.open("link/secret.txt")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert list(loc.iter_keys()) == []


def test_s3_server_enforces_the_lock_even_if_the_client_clock_is_wrong(
    seaweedfs: SeaweedServer, source: Callable[[bytes], Path]
) -> None:
    """With a clock far ahead, the client's own check lets the delete through; the server
    refuses it, and that refusal is reported as ObjectLocked too (not retried)."""
    honest = make_s3(seaweedfs)
    honest.ensure()
    put = honest.put("held.txt", source(b"held"), sha256=digests(b"held")[1])
    ahead = make_s3(
        seaweedfs, bucket=honest.bucket, clock=lambda: datetime.now(UTC) + timedelta(days=30)
    )
    started = time.monotonic()
    with pytest.raises(ObjectLocked, match="the server refused to delete it"):
        ahead.delete("held.txt")
    assert time.monotonic() - started < 5
    assert honest.versions("held.txt") == (put.version_id,)


def test_s3_legal_hold_is_reported_and_blocks_delete(
    s3: S3Location, seaweedfs: SeaweedServer, source: Callable[[bytes], Path]
) -> None:
    short = make_s3(seaweedfs, bucket=s3.bucket, retention=timedelta(seconds=1))
    put = short.put("hold.txt", source(b"h"), sha256=digests(b"h")[1])
    seaweedfs.client().put_object_legal_hold(
        Bucket=s3.bucket, Key=s3.prefix + "hold.txt", LegalHold={"Status": "ON"}
    )
    # Retention over (the server keeps whole seconds: wait for its own date); the hold remains.
    assert put.retain_until is not None
    time.sleep(max(0.0, (put.retain_until - datetime.now(UTC)).total_seconds()) + 0.5)
    info = short.stat("hold.txt")
    assert info is not None and info.legal_hold and info.version_id == put.version_id
    with pytest.raises(ObjectLocked, match=r"hold.txt \(version \w+\) is under a legal hold;"):
        short.delete("hold.txt")
