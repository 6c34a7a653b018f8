"""Pure hostile-input checks on names and name sets. No I/O here.

Each check returns findings; the caller decides when to stop. Codes are stable and cite the
clause of RFC 8493 or the archive policy they enforce.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from archive.config import Limits
from archive.findings import Finding, Severity
from policies.schema import IngestPolicy

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_COMPONENT_BYTES = 255
RFC_PATHS = "RFC 8493 §2.1.3: file paths are relative to the bag, inside it"


def display(name: str) -> str:
    """A printable form of a name that may hold undecodable bytes or control characters."""
    return name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")


#: Anything that any rule below could object to; a path without it needs only the length checks.
_SUSPECT = re.compile(
    r"^[/~\\]|^[A-Za-z]:|\\|(?:^|/)\.\.(?:/|$)|%[A-Za-z_]+%|[\x00-\x1f\x7f\udc80-\udcff]"
)


def check_relative_path(path: str, limits: Limits, *, where: str = "") -> list[Finding]:
    """Findings for a path that is not a plain relative path inside the bag."""
    if (
        not _SUSPECT.search(path)
        and len(path) * 4 <= min(limits.max_path_bytes, MAX_COMPONENT_BYTES)
        and path.count("/") < limits.max_depth
    ):
        return []  # the common case, decided in one regex pass (4 bytes per char at most)
    shown = display(path)
    loc = where or shown
    out: list[Finding] = []
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        return [
            Finding(
                "NAME-NOT-UTF8",
                "error",
                f"name {shown!r} is not valid UTF-8; rename it before bagging",
                loc,
                "RFC 8493 §2.1.3",
            )
        ]
    if path.startswith("/") or _DRIVE.match(path) or path.startswith("\\\\"):
        out.append(Finding("PATH-ABSOLUTE", "error", f"absolute path {shown!r}", loc, RFC_PATHS))
    if "\\" in path:
        out.append(
            Finding(
                "PATH-BACKSLASH",
                "error",
                f"path {shown!r} uses a backslash; bag paths use '/' only",
                loc,
                "RFC 8493 §2.1.3",
            )
        )
    parts = path.split("/")
    if any(p == ".." for p in parts):
        out.append(
            Finding("PATH-ESCAPES", "error", f"path {shown!r} contains '..'", loc, RFC_PATHS)
        )
    if parts and parts[0].startswith("~"):
        out.append(
            Finding(
                "PATH-HOME-SHORTCUT",
                "error",
                f"path {shown!r} starts with a home-directory shortcut",
                loc,
                RFC_PATHS,
            )
        )
    if "%" in parts[0] and re.search(r"%[A-Za-z_]+%", path):
        out.append(
            Finding(
                "PATH-ENV-VARIABLE",
                "error",
                f"path {shown!r} names an environment variable",
                loc,
                RFC_PATHS,
            )
        )
    if _CONTROL.search(path):
        out.append(
            Finding(
                "NAME-CONTROL-CHARACTER",
                "error",
                f"name {shown!r} contains a control character",
                loc,
                "archive policy: names must be printable",
            )
        )
    if len(raw) > limits.max_path_bytes:
        out.append(
            Finding(
                "PATH-TOO-LONG",
                "error",
                f"path is {len(raw)} bytes long (limit {limits.max_path_bytes})",
                loc,
                "archive limit max_path_bytes",
            )
        )
    if len(parts) > limits.max_depth:
        out.append(
            Finding(
                "PATH-TOO-DEEP",
                "error",
                f"path has {len(parts)} levels (limit {limits.max_depth})",
                loc,
                "archive limit max_depth",
            )
        )
    if any(len(p.encode("utf-8")) > MAX_COMPONENT_BYTES for p in parts):
        out.append(
            Finding(
                "NAME-TOO-LONG",
                "error",
                f"a name in {shown!r} is longer than {MAX_COMPONENT_BYTES} bytes",
                loc,
                "archive limit",
            )
        )
    return out


def collision_key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def check_collisions(names: Iterable[str], *, source: str) -> list[Finding]:
    """Names that become one after NFC normalisation and case folding (archive policy)."""
    seen: dict[str, str] = {}
    out: list[Finding] = []
    reported: set[str] = set()
    for name in names:
        key = collision_key(name)
        first = seen.setdefault(key, name)
        if first != name and key not in reported:
            reported.add(key)
            out.append(
                Finding(
                    "POLICY-NAME-COLLISION",
                    "error",
                    f"{display(first)!r} and {display(name)!r} in {source} are the same name "
                    "after Unicode normalisation or case folding; the archive refuses names "
                    "that would overwrite each other on other file systems",
                    display(name),
                    "ingest policy refuse_name_collisions",
                )
            )
    return out


def is_junk(path: str, policy: IngestPolicy) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return (
        name in policy.junk_file_names
        or any(name.startswith(p) for p in policy.junk_file_prefixes)
        or any(d in policy.junk_dir_names for d in parts[:-1])
    )


def check_junk(paths: Iterable[str], policy: IngestPolicy) -> list[Finding]:
    severity: Severity = "error" if policy.junk_action == "refuse" else "warning"
    return [
        Finding(
            "PAYLOAD-SYSTEM-FILE",
            severity,
            f"operating-system file {display(p)!r} in the payload",
            display(p),
            f"ingest policy junk_action={policy.junk_action}",
        )
        for p in paths
        if is_junk(p, policy)
    ]
