"""Hostile and broken deposits: each is refused with a finding naming the problem and the path,
and leaves no package, no object and no staging debris; the refusal is one recorded event."""

from __future__ import annotations

import json
import os
import stat
import tarfile
import unicodedata
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from ocfl import StorageRoot

from archive.errors import InputRejected
from archive.services import Services
from tests.conftest import MakeServices
from tests.helpers import (
    add_tar_member,
    assert_nothing_stored,
    deposit,
    make_bag,
    staging_debris,
    tar_folder,
    zip_folder,
)

PAYLOAD = {"a.txt": b"alpha\n", "sub/b.txt": b"bravo\n"}


def refused(services: Services, source: Path) -> InputRejected:
    with pytest.raises(InputRejected) as err:
        deposit(services, source, depositor="Hostile Test")
    assert_nothing_stored(services)
    return err.value


def assert_finding(exc: InputRejected, code: str, path_fragment: str) -> None:
    matches = [f for f in exc.findings if f.code == code and f.severity == "error"]
    assert matches, f"expected {code}, got {[f.render() for f in exc.findings]}"
    assert any(path_fragment in f.path or path_fragment in f.message for f in matches), [
        f.render() for f in matches
    ]
    assert code in exc.diagnostics()


# --- folders ---------------------------------------------------------------------------------


def test_symlink_in_folder(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    os.symlink("/etc/passwd", bag / "data" / "link")
    assert_finding(refused(services, bag), "SOURCE-SYMLINK", "data/link")


def test_symlinked_directory_in_folder(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    os.symlink("/etc", bag / "data" / "etc")
    assert_finding(refused(services, bag), "SOURCE-SYMLINK", "data/etc")


def test_hard_link_in_folder(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    os.link(bag / "data" / "a.txt", tmp_path / "elsewhere.txt")
    assert_finding(refused(services, bag), "SOURCE-HARDLINK", "data/a.txt")


def test_fifo_in_folder(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    os.mkfifo(bag / "data" / "pipe")
    assert_finding(refused(services, bag), "SOURCE-SPECIAL-FILE", "data/pipe")


def test_device_in_folder(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    try:
        os.mknod(bag / "data" / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root (CI runs as root)")
    assert_finding(refused(services, bag), "SOURCE-SPECIAL-FILE", "data/null")


def test_non_utf8_name_in_folder(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    with open(os.path.join(os.fsencode(bag / "data"), b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"latin-1 name\n")
    assert_finding(refused(services, bag), "NAME-NOT-UTF8", "caf")


def test_payload_file_missing_from_manifest(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD, omit_from_manifest=("sub/b.txt",))
    exc = refused(services, bag)
    assert_finding(exc, "BAG-FILE-UNLISTED", "data/sub/b.txt")


def test_manifest_entry_missing_from_payload(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    (bag / "data" / "sub" / "b.txt").unlink()
    assert_finding(refused(services, bag), "BAG-FILE-MISSING", "data/sub/b.txt")


def test_checksum_mismatch(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    (bag / "data" / "a.txt").write_bytes(b"ALPHA\n")  # same size, other bytes
    assert_finding(refused(services, bag), "BAG-CHECKSUM-MISMATCH", "data/a.txt")


def test_every_algorithm_is_checked(tmp_path: Path, services: Services) -> None:
    """A bag with md5 and sha512 manifests where only the md5 one is wrong is refused."""
    bag = make_bag(tmp_path / "bag", PAYLOAD, algorithms=("sha512", "md5"))
    manifest = bag / "manifest-md5.txt"
    manifest.write_text(manifest.read_text().replace(manifest.read_text()[:8], "00000000", 1))
    exc = refused(services, bag)
    assert_finding(exc, "BAG-CHECKSUM-MISMATCH", "data/a.txt")
    on_payload = [
        f for f in exc.findings if f.code == "BAG-CHECKSUM-MISMATCH" and f.path == "data/a.txt"
    ]
    assert on_payload and all("md5" in f.message for f in on_payload)


def test_unicode_normalisation_collision(tmp_path: Path, services: Services) -> None:
    nfc = unicodedata.normalize("NFC", "Núñez.txt")
    nfd = unicodedata.normalize("NFD", "Núñez.txt")
    assert nfc != nfd
    bag = make_bag(tmp_path / "bag", {nfc: b"one\n", nfd: b"two\n"})
    assert_finding(refused(services, bag), "POLICY-NAME-COLLISION", "N")


def test_case_folding_collision(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", {"Report.txt": b"one\n", "REPORT.txt": b"two\n"})
    exc = refused(services, bag)
    assert_finding(exc, "POLICY-NAME-COLLISION", "eport.txt")
    assert "ingest policy" in " ".join(f.clause for f in exc.findings)


def test_oversize_tag_file(tmp_path: Path, make_services: MakeServices) -> None:
    services = make_services(limits={"max_tag_file_bytes": 4096})
    bag = make_bag(tmp_path / "bag", PAYLOAD, info={"Description": "x" * 10_000})
    assert_finding(refused(services, bag), "TAG-FILE-TOO-LARGE", "bag-info.txt")


def test_dot_dot_in_manifest(tmp_path: Path, services: Services) -> None:
    bag = make_bag(
        tmp_path / "bag", PAYLOAD, manifest_extra_lines={"x": "0" * 128 + "  data/../../etc/passwd"}
    )
    assert_finding(refused(services, bag), "PATH-ESCAPES", "manifest-sha512.txt line 3")


def test_absolute_path_in_manifest(tmp_path: Path, services: Services) -> None:
    bag = make_bag(
        tmp_path / "bag", PAYLOAD, manifest_extra_lines={"x": "0" * 128 + "  /etc/passwd"}
    )
    assert_finding(refused(services, bag), "PATH-ABSOLUTE", "manifest-sha512.txt line 3")


def test_malformed_manifest_line(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD, manifest_extra_lines={"x": "not-a-digest"})
    assert_finding(refused(services, bag), "BAG-MANIFEST-SYNTAX", "manifest-sha512.txt line 3")


def test_file_count_limit(tmp_path: Path, make_services: MakeServices) -> None:
    services = make_services(limits={"max_files": 5})
    bag = make_bag(tmp_path / "bag", {f"f{i}.txt": b"x" for i in range(10)})
    assert_finding(refused(services, bag), "LIMIT-FILE-COUNT", "")


def test_total_size_limit(tmp_path: Path, make_services: MakeServices) -> None:
    services = make_services(limits={"max_total_bytes": 1000})
    bag = make_bag(tmp_path / "bag", {"big.bin": b"x" * 5000})
    assert_finding(refused(services, bag), "LIMIT-TOTAL-SIZE", "")


def test_missing_source(tmp_path: Path, services: Services) -> None:
    assert_finding(refused(services, tmp_path / "nowhere"), "SOURCE-MISSING", "nowhere")


def test_unsupported_source(tmp_path: Path, services: Services) -> None:
    odd = tmp_path / "holding.rar"
    odd.write_bytes(b"Rar!\x1a\x07\x00")
    assert_finding(refused(services, odd), "SOURCE-UNSUPPORTED", "holding.rar")


# --- zip -------------------------------------------------------------------------------------


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names; we want them
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for info, data in members:
                zf.writestr(info, data)
    return path


def _bag_members(tmp_path: Path, prefix: str = "bag/") -> list[tuple[zipfile.ZipInfo | str, bytes]]:
    bag = make_bag(tmp_path / "src", PAYLOAD)
    return [
        (prefix + p.relative_to(bag).as_posix(), p.read_bytes())
        for p in sorted(bag.rglob("*"))
        if p.is_file()
    ]


def test_zip_member_escapes(tmp_path: Path, services: Services) -> None:
    z = _zip(tmp_path / "x.zip", [*_bag_members(tmp_path), ("bag/../../evil.txt", b"x")])
    assert_finding(refused(services, z), "PATH-ESCAPES", "evil.txt")
    assert not (tmp_path / "evil.txt").exists()


def test_zip_absolute_member(tmp_path: Path, services: Services) -> None:
    info = zipfile.ZipInfo("placeholder")
    info.filename = "/tmp/custos-evil.txt"
    z = _zip(tmp_path / "x.zip", [*_bag_members(tmp_path), (info, b"x")])
    assert_finding(refused(services, z), "PATH-ABSOLUTE", "custos-evil.txt")
    assert not Path("/tmp/custos-evil.txt").exists()


def test_zip_symlink_member(tmp_path: Path, services: Services) -> None:
    info = zipfile.ZipInfo("bag/data/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = _zip(tmp_path / "x.zip", [*_bag_members(tmp_path), (info, b"/etc/passwd")])
    assert_finding(refused(services, z), "SOURCE-SYMLINK", "bag/data/link")


def test_zip_non_utf8_member(tmp_path: Path, services: Services) -> None:
    z = _zip(tmp_path / "x.zip", [*_bag_members(tmp_path), ("bag/data/cafX.txt", b"x")])
    data = z.read_bytes()
    assert data.count(b"cafX.txt") == 2  # local header and central directory
    z.write_bytes(data.replace(b"cafX.txt", b"caf\xe9.txt"))  # Latin-1, not UTF-8, no flag
    assert_finding(refused(services, z), "NAME-NOT-UTF8", "caf")


def test_zip_duplicate_member(tmp_path: Path, services: Services) -> None:
    members = _bag_members(tmp_path)
    z = _zip(tmp_path / "x.zip", [*members, ("bag/data/a.txt", b"other\n")])
    assert_finding(refused(services, z), "ARCHIVE-DUPLICATE-MEMBER", "bag/data/a.txt")


def test_zip_compression_bomb(tmp_path: Path, make_services: MakeServices) -> None:
    services = make_services(limits={"ratio_floor_bytes": 1024 * 1024, "max_compression_ratio": 50})
    z = _zip(tmp_path / "x.zip", [*_bag_members(tmp_path), ("bag/data/zeros", bytes(8 << 20))])
    assert z.stat().st_size < 100_000
    assert_finding(refused(services, z), "LIMIT-COMPRESSION-RATIO", "")


def test_zip_outside_bag(tmp_path: Path, services: Services) -> None:
    z = _zip(tmp_path / "x.zip", [*_bag_members(tmp_path), ("stray.txt", b"x")])
    assert_finding(refused(services, z), "ARCHIVE-OUTSIDE-BAG", "stray.txt")


def test_zip_truncated(tmp_path: Path, services: Services) -> None:
    z = _zip(tmp_path / "x.zip", _bag_members(tmp_path))
    data = z.read_bytes()
    z.write_bytes(data[: len(data) // 2])
    assert_finding(refused(services, z), "ARCHIVE-CORRUPT", "x.zip")


def test_zip_encrypted_member(tmp_path: Path, services: Services) -> None:
    z = _zip(tmp_path / "x.zip", _bag_members(tmp_path))
    data = bytearray(z.read_bytes())
    # set the "encrypted" bit (general purpose flag bit 0) in every central directory header
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        data[pos + 8] |= 0x01
        pos = data.find(b"PK\x01\x02", pos + 4)
    z.write_bytes(bytes(data))
    assert_finding(refused(services, z), "ARCHIVE-ENCRYPTED", "bag/")


# --- tar -------------------------------------------------------------------------------------


def _tar(
    path: Path, tmp_path: Path, extra: Callable[[tarfile.TarFile], None], mode: str = "w"
) -> Path:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    with tarfile.open(
        path, mode, format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tf:
        tf.add(bag, arcname="bag")
        extra(tf)
    return path


def test_tar_member_escapes(tmp_path: Path, services: Services) -> None:
    t = _tar(
        tmp_path / "x.tar", tmp_path, lambda tf: add_tar_member(tf, "bag/../../evil.txt", b"x")
    )
    assert_finding(refused(services, t), "PATH-ESCAPES", "evil.txt")


def test_tar_absolute_member(tmp_path: Path, services: Services) -> None:
    t = _tar(tmp_path / "x.tar", tmp_path, lambda tf: add_tar_member(tf, "/tmp/custos-evil", b"x"))
    assert_finding(refused(services, t), "PATH-ABSOLUTE", "custos-evil")


def test_tar_symlink_member(tmp_path: Path, services: Services) -> None:
    t = _tar(
        tmp_path / "x.tar",
        tmp_path,
        lambda tf: add_tar_member(
            tf, "bag/data/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"
        ),
    )
    assert_finding(refused(services, t), "SOURCE-SYMLINK", "bag/data/link")


def test_tar_hardlink_member(tmp_path: Path, services: Services) -> None:
    t = _tar(
        tmp_path / "x.tar",
        tmp_path,
        lambda tf: add_tar_member(
            tf, "bag/data/hard", type=tarfile.LNKTYPE, linkname="bag/data/a.txt"
        ),
    )
    assert_finding(refused(services, t), "SOURCE-HARDLINK", "bag/data/hard")


def test_tar_device_member(tmp_path: Path, services: Services) -> None:
    t = _tar(
        tmp_path / "x.tar",
        tmp_path,
        lambda tf: add_tar_member(
            tf, "bag/data/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3
        ),
    )
    assert_finding(refused(services, t), "SOURCE-SPECIAL-FILE", "bag/data/null")


def test_tar_non_utf8_member(tmp_path: Path, services: Services) -> None:
    t = _tar(
        tmp_path / "x.tar", tmp_path, lambda tf: add_tar_member(tf, "bag/data/caf\udce9.txt", b"x")
    )
    assert_finding(refused(services, t), "NAME-NOT-UTF8", "caf")


def test_tar_gz_compression_bomb(tmp_path: Path, make_services: MakeServices) -> None:
    services = make_services(limits={"ratio_floor_bytes": 1024 * 1024, "max_compression_ratio": 50})
    t = _tar(
        tmp_path / "x.tar.gz",
        tmp_path,
        lambda tf: add_tar_member(tf, "bag/data/zeros", bytes(16 << 20)),
        mode="w:gz",
    )
    assert t.stat().st_size < 200_000
    assert_finding(refused(services, t), "LIMIT-COMPRESSION-RATIO", "")


def test_tar_file_count_bomb(tmp_path: Path, make_services: MakeServices) -> None:
    services = make_services(limits={"max_files": 50})

    def many(tf: tarfile.TarFile) -> None:
        for i in range(200):
            add_tar_member(tf, f"bag/data/many/{i}", b"")

    t = _tar(tmp_path / "x.tar.gz", tmp_path, many, mode="w:gz")
    assert_finding(refused(services, t), "LIMIT-FILE-COUNT", "")


def test_tar_truncated(tmp_path: Path, services: Services) -> None:
    t = _tar(
        tmp_path / "x.tar.gz",
        tmp_path,
        lambda tf: add_tar_member(tf, "bag/data/big", os.urandom(200_000)),
        mode="w:gz",
    )
    data = t.read_bytes()
    t.write_bytes(data[: len(data) // 2])
    assert_finding(refused(services, t), "ARCHIVE-CORRUPT", "x.tar.gz")


def test_tar_member_larger_than_budget_stops_early(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(limits={"max_total_bytes": 100_000})
    t = _tar(
        tmp_path / "x.tar",
        tmp_path,
        lambda tf: add_tar_member(tf, "bag/data/big", bytes(1_000_000)),
    )
    assert_finding(refused(services, t), "LIMIT-TOTAL-SIZE", "")


# --- the same bag packed every accepted way is stored ---------------------------------------


@pytest.mark.parametrize("packing", ["folder", "zip", "zip-flat", "tar", "tar.gz"])
def test_accepted_packings(packing: str, tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    source = {
        "folder": lambda: bag,
        "zip": lambda: zip_folder(bag, tmp_path / "bag.zip"),
        "zip-flat": lambda: zip_folder(bag, tmp_path / "flat.zip", prefix=""),
        "tar": lambda: tar_folder(bag, tmp_path / "bag.tar", mode="w"),
        "tar.gz": lambda: tar_folder(bag, tmp_path / "bag.tar.gz"),
    }[packing]()
    result = deposit(services, source, depositor="Packing Test")
    assert result.status == "stored"
    assert result.payload_files == 2
    obj = services.store.object_root(result.object_path)
    assert (obj / "v1/content/bag/data/sub/b.txt").read_bytes() == b"bravo\n"
    assert (obj / "v1/content/bag/bagit.txt").is_file()
    assert staging_debris(services.store.staging) == []


# --- many small files: the payload is copied by worker processes while validation runs ------

MANY = {f"d{i % 13}/f{i}.txt": f"{i}\n".encode() for i in range(2600)}


def test_many_files_stored(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", MANY)
    result = deposit(services, bag, depositor="Many Files")
    assert result.payload_files == len(MANY)
    obj = services.store.object_root(result.object_path)
    assert (obj / "v1/content/bag/data/d11/f2000.txt").read_bytes() == b"2000\n"


def test_many_files_one_wrong(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", MANY)
    (bag / "data/d5/f1500.txt").write_bytes(b"9999\n")
    assert_finding(refused(services, bag), "BAG-CHECKSUM-MISMATCH", "data/d5/f1500.txt")


def test_many_files_refused_early_stops_the_copy(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", MANY)
    (bag / "bagit.txt").write_bytes(b"BagIt-Version : 1.0\nTag-File-Character-Encoding: UTF-8\n")
    assert_finding(refused(services, bag), "BAG-DECLARATION-SYNTAX", "bagit.txt")


# --- unusual but valid bags --------------------------------------------------------------------


@pytest.mark.parametrize("packing", ["folder", "zip", "tar"])
def test_empty_payload_and_empty_folders(packing: str, tmp_path: Path, services: Services) -> None:
    """RFC 8493 allows an empty payload; OCFL stores no empty folder, so they are recorded."""
    bag = make_bag(tmp_path / "bag", {})
    (bag / "data" / "empty" / "deeper").mkdir(parents=True)
    source = {
        "folder": lambda: bag,
        "zip": lambda: _zip_with_folders(bag, tmp_path / "bag.zip"),
        "tar": lambda: tar_folder(bag, tmp_path / "bag.tar", mode="w"),
    }[packing]()
    result = deposit(services, source, depositor="Empty")
    assert result.status == "stored" and result.payload_files == 0
    obj = services.store.object_root(result.object_path)
    meta = json.loads((obj / "v1/content/custos/deposit.json").read_text())
    assert meta["empty_folders"] == ["data", "data/empty", "data/empty/deeper"]
    sr = StorageRoot(root=str(services.store.root))
    sr.validate(validate_objects=True, check_digests=True)
    assert sr.good_objects == 1


def _zip_with_folders(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, f"{folder.name}/{p.relative_to(folder).as_posix()}")
    return target


def test_utf16_tag_files(tmp_path: Path, services: Services) -> None:
    bag = make_bag(tmp_path / "bag", PAYLOAD)
    (bag / "bagit.txt").write_text("BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-16\n")
    for name in ("manifest-sha512.txt", "bag-info.txt"):
        p = bag / name
        p.write_bytes(p.read_text(encoding="utf-8").encode("utf-16"))  # with its BOM
    (bag / "tagmanifest-sha512.txt").unlink()
    result = deposit(services, bag, depositor="UTF-16")
    assert result.status == "stored" and result.warnings == ()


def test_missing_data_folder_is_named_without_staging_paths(
    tmp_path: Path, services: Services
) -> None:
    bag = make_bag(tmp_path / "bag", {})
    assert not (bag / "data").exists()
    exc = refused(services, bag)
    assert_finding(exc, "BAG-INVALID", "data")
    assert "staging" not in exc.diagnostics()
