"""BagIt validation: the only module that imports ``bagit``.

bagit-python opens the bag (declaration, bag-info, encodings) and checks structure,
Payload-Oxum and completeness. It is lenient where an archive must not be (it skips malformed
manifest lines, accepts whitespace before the colon in bagit.txt, checks completeness across
all manifests merged, and leaves older tag manifests unchecked), so this module adds a strict
reading of ``bagit.txt`` and of every manifest, and compares every manifest entry, for every
algorithm present, with the digests computed while the bag was copied: payload bytes are not
read a second time unless a manifest uses an algorithm the copy did not compute.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import bagit

from archive.config import Limits
from archive.digest import KNOWN_ALGORITHMS, CopyResult, digest_file
from archive.findings import Finding, errors_in
from ingest.checks import check_collisions, check_junk, check_relative_path, display
from policies.schema import IngestPolicy

_DIGEST_LEN = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}
_VERSION_LINE = re.compile(r"^BagIt-Version:[ \t]+([0-9]+)\.([0-9]+)$")
_ENCODING_LINE = re.compile(r"^Tag-File-Character-Encoding:[ \t]+(\S+)$")
_MANIFEST_LINE = re.compile(r"^(\S+)[ \t]+(.+)$")
_MANIFEST_NAME = re.compile(r"^(tag)?manifest-([A-Za-z0-9_-]+)\.txt$")


class _StagedBag(bagit.Bag):  # type: ignore[misc]
    """A bag in our staging area.

    Receipt refused every link, so a lexical check of paths is exact there; bagit's own check
    resolves each path with realpath(), which cost 7 of 30 seconds on 50,000 files. Manifests
    are read once, strictly, by this module rather than a second time by bagit.
    Completeness and Payload-Oxum are checked by :func:`check_bag` from the sizes and digests
    taken during the copy instead of walking the tree twice more.
    """

    def _load_manifests(self) -> None:
        # Manifests are read by _read_manifest, strictly (bagit skips malformed lines).
        self.entries: dict[str, dict[str, str]] = {}

    def _path_is_dangerous(self, path: str) -> bool:
        return bool(path.startswith(("/", "~")) or ".." in path.split("/") or _DRIVE.match(path))


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_oxum(info: dict[str, str | list[str]], files: dict[str, int]) -> list[Finding]:
    """Payload-Oxum (RFC 8493 §2.2.2): octet count and stream count of the payload."""
    oxum = info.get("Payload-Oxum")
    if oxum is None:
        return []
    if isinstance(oxum, list):
        return [
            Finding(
                "BAG-OXUM-MISMATCH",
                "error",
                "bag-info.txt declares Payload-Oxum more than once",
                "bag-info.txt",
                "RFC 8493 §2.2.2",
            )
        ]
    octets, _, streams = oxum.strip().partition(".")
    if not octets.isdigit() or not streams.isdigit():
        return [
            Finding(
                "BAG-OXUM-MISMATCH",
                "error",
                f"malformed Payload-Oxum {oxum!r} (expected OCTETS.STREAMS)",
                "bag-info.txt",
                "RFC 8493 §2.2.2",
            )
        ]
    payload = [size for p, size in files.items() if p.startswith("data/")]
    if (int(octets), int(streams)) != (sum(payload), len(payload)):
        return [
            Finding(
                "BAG-OXUM-MISMATCH",
                "error",
                f"Payload-Oxum says {octets} bytes in {streams} files; the payload holds "
                f"{sum(payload)} bytes in {len(payload)} files",
                "bag-info.txt",
                "RFC 8493 §2.2.2",
            )
        ]
    return []


@dataclass
class BagReport:
    """The verdict on one bag: every finding, and what was read from it."""

    findings: list[Finding] = field(default_factory=list)
    version: str = ""
    encoding: str = ""
    info: dict[str, str | list[str]] = field(default_factory=dict)
    payload: dict[str, CopyResult] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not errors_in(self.findings)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _bagit_warnings() -> Iterator[_Capture]:
    logger = logging.getLogger("bagit")
    handler = _Capture()
    logger.addHandler(handler)
    old = logger.propagate
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = old


def _decode_manifest_path(path: str, version: tuple[int, int]) -> str:
    """RFC 8493 §2.1.3 percent-encoding of CR, LF (and, from 1.0, '%')."""
    path = re.sub("%0D", "\r", path, flags=re.IGNORECASE)
    path = re.sub("%0A", "\n", path, flags=re.IGNORECASE)
    if version >= (1, 0):
        path = path.replace("%25", "%")
    return path


def check_declaration(bag_dir: Path) -> tuple[list[Finding], tuple[int, int] | None, str]:
    """Strict reading of bagit.txt (RFC 8493 §2.1.1)."""
    clause = "RFC 8493 §2.1.1"
    path = bag_dir / "bagit.txt"
    if not path.is_file():
        return (
            [Finding("BAG-NO-DECLARATION", "error", "bagit.txt is missing", "bagit.txt", clause)],
            None,
            "",
        )
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        return (
            [
                Finding(
                    "BAG-DECLARATION-BOM",
                    "error",
                    "bagit.txt starts with a byte-order mark, which is not allowed",
                    "bagit.txt",
                    clause,
                )
            ],
            None,
            "",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return (
            [
                Finding(
                    "BAG-DECLARATION-SYNTAX", "error", "bagit.txt is not UTF-8", "bagit.txt", clause
                )
            ],
            None,
            "",
        )
    lines = [ln for ln in text.splitlines() if ln.strip()]
    version = _VERSION_LINE.match(lines[0]) if lines else None
    encoding = _ENCODING_LINE.match(lines[1]) if len(lines) > 1 else None
    if len(lines) != 2 or not version or not encoding:
        shown = " | ".join(lines[:3]) or "(empty)"
        return (
            [
                Finding(
                    "BAG-DECLARATION-SYNTAX",
                    "error",
                    "bagit.txt must be exactly 'BagIt-Version: M.N' then "
                    f"'Tag-File-Character-Encoding: ENCODING'; found {shown!r}",
                    "bagit.txt",
                    clause,
                )
            ],
            None,
            "",
        )
    return [], (int(version.group(1)), int(version.group(2))), encoding.group(1)


def _read_manifest(
    bag_dir: Path,
    name: str,
    alg: str,
    encoding: str,
    version: tuple[int, int],
    limits: Limits,
    findings: list[Finding],
) -> dict[str, str]:
    """path -> digest for one manifest, with a finding for every malformed or unsafe line."""
    clause = "RFC 8493 §2.1.3" if not name.startswith("tag") else "RFC 8493 §2.2.1"
    try:
        text = (bag_dir / name).read_bytes().decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        findings.append(
            Finding("BAG-MANIFEST-ENCODING", "error", f"cannot decode as {encoding}: {exc}", name)
        )
        return {}
    if text.startswith("\ufeff"):
        text = text[1:]
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):  # normal in UTF-16
            findings.append(
                Finding(
                    "BAG-MANIFEST-BOM", "warning", "starts with a byte-order mark", name, clause
                )
            )
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name} line {number}"
        if not line.strip():
            continue
        m = _MANIFEST_LINE.match(line.strip())
        if (
            not m
            or len(m.group(1)) != _DIGEST_LEN[alg]
            or not re.fullmatch("[0-9A-Fa-f]+", m.group(1))
        ):
            findings.append(
                Finding(
                    "BAG-MANIFEST-SYNTAX",
                    "error",
                    f"expected '<{alg} hex digest> <path>', found {display(line)[:120]!r}",
                    where,
                    clause,
                )
            )
            continue
        digest, path = m.group(1).lower(), m.group(2)
        if path.startswith("*"):
            path = path[1:]
            findings.append(
                Finding(
                    "BAG-MD5SUM-MARKER",
                    "warning",
                    "path carries md5sum's binary-mode marker '*', which is not part of the name",
                    where,
                    clause,
                )
            )
        while path.startswith("./"):
            path = path[2:]
        path = _decode_manifest_path(path, version)
        unsafe = check_relative_path(path, limits, where=where)
        if unsafe:
            findings.extend(unsafe)
            continue
        if not name.startswith("tag") and not path.startswith("data/"):
            findings.append(
                Finding(
                    "BAG-MANIFEST-OUTSIDE-PAYLOAD",
                    "error",
                    f"payload manifest lists {display(path)!r}, which is not under data/",
                    where,
                    clause,
                )
            )
            continue
        if path in entries:
            same = entries[path] == digest
            findings.append(
                Finding(
                    "BAG-MANIFEST-DUPLICATE",
                    "error" if version >= (1, 0) or not same else "warning",
                    f"{display(path)!r} is listed more than once"
                    + (" with the same digest" if same else " with different digests"),
                    where,
                    "RFC 8493 §2.1.3: each payload file is listed once",
                )
            )
            if not same:
                continue
        entries[path] = digest
    return entries


def check_bag(
    bag_dir: Path,
    files: dict[str, int],
    digests: Callable[[], dict[str, CopyResult]],
    *,
    limits: Limits,
    policy: IngestPolicy,
) -> BagReport:
    """Validate the bag copied at ``bag_dir``.

    ``files`` maps every bag-relative path to its size; ``digests`` returns the digests taken
    while copying (it may wait for the copy to finish: everything that needs only names and
    sizes is checked before it is called).
    """
    report = BagReport()
    findings = report.findings

    for rel, size in files.items():
        if rel.startswith("data/"):
            continue
        is_manifest = bool(_MANIFEST_NAME.match(rel))
        limit = limits.max_manifest_bytes if is_manifest else limits.max_tag_file_bytes
        if size > limit:
            findings.append(
                Finding(
                    "TAG-FILE-TOO-LARGE",
                    "error",
                    f"tag file is {size} bytes (limit {limit})",
                    display(rel),
                    "archive limit "
                    + ("max_manifest_bytes" if is_manifest else "max_tag_file_bytes"),
                )
            )
    if errors_in(findings):
        return report

    declared, version, encoding = check_declaration(bag_dir)
    findings.extend(declared)
    if version is None:
        return report
    report.version = f"{version[0]}.{version[1]}"
    report.encoding = encoding

    if (bag_dir / "fetch.txt").exists():
        findings.extend(_check_fetch(bag_dir, encoding, limits, policy))

    manifests: dict[str, tuple[str, dict[str, str]]] = {}
    for rel in sorted(files):
        m = _MANIFEST_NAME.match(rel)
        if not m:
            continue
        alg = m.group(2).lower()
        if alg not in KNOWN_ALGORITHMS:
            findings.append(
                Finding(
                    "BAG-UNKNOWN-ALGORITHM",
                    "error",
                    f"manifest uses algorithm {alg!r}, which the archive cannot check",
                    rel,
                    "RFC 8493 §2.4",
                )
            )
            continue
        entries = _read_manifest(bag_dir, rel, alg, encoding, version, limits, findings)
        manifests[rel] = (alg, entries)

    payload_manifests = {k: v for k, v in manifests.items() if not k.startswith("tag")}
    if not payload_manifests:
        findings.append(
            Finding(
                "BAG-NO-MANIFEST",
                "error",
                "no payload manifest (manifest-<algorithm>.txt)",
                "",
                "RFC 8493 §2.1.3",
            )
        )
    for name, (_alg, entries) in payload_manifests.items():
        findings.extend(check_collisions(entries, source=name))

    with _bagit_warnings() as captured:
        try:
            bag = _StagedBag(str(bag_dir))
            report.info = dict(bag.info)
            bag._validate_structure()
            bag._validate_bagittxt()
            findings.extend(_check_oxum(report.info, files))
        except (bagit.BagError, OSError, UnicodeError, LookupError, ValueError) as exc:
            # A structure failure (no data/ folder) is news; an opening failure usually
            # repeats what our own reading of the declaration and manifests already said.
            structural = isinstance(exc, bagit.BagValidationError) and "manifest" not in str(exc)
            if structural or not errors_in(findings):
                findings.append(
                    Finding("BAG-INVALID", "error", _bagit_text(exc, bag_dir), "", "RFC 8493")
                )

    payload_on_disk = sorted(p for p in files if p.startswith("data/"))
    findings.extend(check_collisions(payload_on_disk, source="the payload"))
    findings.extend(check_junk(payload_on_disk, policy))
    on_disk_nfc = {unicodedata.normalize("NFC", p): p for p in files}

    for name, (_alg, entries) in payload_manifests.items():
        listed = {unicodedata.normalize("NFC", p) for p in entries}
        for p in payload_on_disk:
            if unicodedata.normalize("NFC", p) not in listed:
                findings.append(
                    Finding(
                        "BAG-FILE-UNLISTED",
                        "error",
                        f"payload file is not listed in {name}",
                        display(p),
                        "RFC 8493 §3: every payload manifest lists every payload file",
                    )
                )

    copied = digests()  # everything above needed only names and sizes
    extra_digests: dict[str, CopyResult] = {}
    for name, (alg, entries) in manifests.items():
        for path, expected in entries.items():
            actual_name = (
                path if path in files else on_disk_nfc.get(unicodedata.normalize("NFC", path))
            )
            if actual_name is None:
                if not any(
                    f.code == "BAG-FILE-MISSING" and f.path == display(path) for f in findings
                ):
                    findings.append(
                        Finding(
                            "BAG-FILE-MISSING",
                            "error",
                            f"listed in {name} but not present in the bag",
                            display(path),
                            "RFC 8493 §3: every file listed in a manifest must be present",
                        )
                    )
                continue
            if actual_name != path:
                findings.append(
                    Finding(
                        "BAG-NAME-NORMALISATION",
                        "warning",
                        f"{name} lists the name in a different Unicode normalisation form than "
                        "the file carries; matched after NFC normalisation and kept as received",
                        display(actual_name),
                    )
                )
            computed = copied[actual_name].digests.get(alg)
            if computed is None:
                if actual_name not in extra_digests:
                    extra_digests[actual_name] = digest_file(
                        bag_dir / actual_name, _algorithms_for(manifests)
                    )
                computed = extra_digests[actual_name].digests[alg]
            if computed != expected:
                findings.append(
                    Finding(
                        "BAG-CHECKSUM-MISMATCH",
                        "error",
                        f"{alg} in {name} is {expected}, the file's is {computed}",
                        display(actual_name),
                        "RFC 8493 §3: every checksum must match",
                    )
                )

    for message in captured.messages:
        if not any(pattern in message for pattern in _BAGIT_ALREADY_COVERED):
            findings.append(Finding("BAG-WARNING", "warning", message, "", "bagit-python"))
    report.payload = {p: copied[p] for p in payload_on_disk}
    return report


#: bagit-python log messages about problems this module reports in its own words.
_BAGIT_ALREADY_COVERED = (
    "exists in manifest",
    "is not in the manifest",
    "multiple times",
    "byte-order mark",
    "Invalid",
)


def _check_fetch(
    bag_dir: Path, encoding: str, limits: Limits, policy: IngestPolicy
) -> list[Finding]:
    """fetch.txt (RFC 8493 §2.2.3): refused by policy, and every target path checked too."""
    out: list[Finding] = []
    if policy.refuse_fetch:
        out.append(
            Finding(
                "POLICY-FETCH",
                "error",
                "the bag has fetch.txt (a holey bag); holdings must arrive complete, with every "
                "file present",
                "fetch.txt",
                "ingest policy refuse_fetch",
            )
        )
    try:
        text = (bag_dir / "fetch.txt").read_bytes().decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        return [*out, Finding("BAG-FETCH-SYNTAX", "error", str(exc), "fetch.txt")]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"fetch.txt line {number}"
        parts = line.strip().split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            out.append(
                Finding(
                    "BAG-FETCH-SYNTAX",
                    "error",
                    "expected '<url> <length or -> <path>'",
                    where,
                    "RFC 8493 §2.2.3",
                )
            )
            continue
        target = parts[2]
        problems = check_relative_path(target, limits, where=where)
        if not problems and not target.startswith("data/"):
            problems = [
                Finding(
                    "PATH-ESCAPES",
                    "error",
                    f"fetch target {display(target)!r} is not under data/",
                    where,
                    "RFC 8493 §2.2.3",
                )
            ]
        out.extend(problems)
    return out


def _algorithms_for(manifests: dict[str, tuple[str, dict[str, str]]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(alg for alg, _ in manifests.values()))


def _bagit_text(exc: BaseException, bag_dir: Path) -> str:
    """bagit's message, with our staging path taken out (it means nothing to a depositor)."""
    text = str(exc).strip() or exc.__class__.__name__
    return text.replace(f"{bag_dir}{os.sep}", "").replace(str(bag_dir), "the bag")
