"""Open a file with a validator (pdfinfo, ImageMagick's identify, ffprobe) and read its
significant properties; identify its format with FIDO. dcraw reads a raw camera file's
(which no validator opens): the pixel dimensions of the image it decodes to.

Each reader runs a Debian program from an argument list, with a time limit, in the work
folder; what it prints is parsed here and nothing else is kept (no content ever reaches a log).
A file a reader cannot open raises :class:`Unreadable`, which the migration records as the
reason of a failed migration.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migration import tools
from policies.formats import Tool

PROBE_TIME_LIMIT = 120.0
FIDO_TIME_LIMIT = 120.0

#: The validators (and dcraw, a source reader), as tools: found and version-checked like the
#: pathways' tools.
VALIDATORS: dict[str, Tool] = {
    "pdfinfo": Tool(commands=("pdfinfo",), version_args=("-v",), debian_package="poppler-utils"),
    "identify": Tool(
        commands=("identify", "identify-im6.q16", "magick"),
        version_args=("-version",),
        identifies_as="ImageMagick",
        debian_package="imagemagick",
    ),
    "ffprobe": Tool(
        commands=("ffprobe",),
        version_args=("-version",),
        identifies_as="ffprobe version",
        debian_package="ffmpeg",
    ),
    # dcraw has no version option: run bare, it prints its name and version ("v9.28").
    "dcraw": Tool(
        commands=("dcraw",), version_args=(), identifies_as='"dcraw"', debian_package="dcraw"
    ),
}

Properties = dict[str, Any]


class Unreadable(Exception):
    """A validator could not open the file (internal to migration; becomes a reason)."""


@dataclass(frozen=True, slots=True)
class Identified:
    puid: str | None
    mime_type: str | None
    format_name: str | None
    basis: str


def validator(name: str) -> tools.ResolvedTool:
    """Raises :class:`tools.ToolUnavailable` when the validator is not installed."""
    return tools.resolve(name, VALIDATORS[name])


def _run(argv: list[str], workdir: Path, what: str) -> str:
    """Run a reader in its own sub-folder of ``workdir``; its standard output as text."""
    folder = workdir / f"probe-{what}"
    folder.mkdir(exist_ok=True)
    result = tools.run(argv, cwd=folder, time_limit=PROBE_TIME_LIMIT)
    if not result.ok:
        raise Unreadable(f"{what} {result.describe()}")
    return (folder / "tool.stdout").read_bytes().decode("utf-8", "replace")


def read_properties(kind: str, path: Path, workdir: Path) -> Properties:
    """Open ``path`` with validator ``kind`` and read every property it knows.

    Raises :class:`Unreadable` if it cannot open the file."""
    if kind == "pdfinfo":
        return _pdfinfo(path, workdir)
    if kind == "identify":
        return _identify(path, workdir)
    if kind == "ffprobe":
        return _ffprobe(path, workdir)
    if kind == "dcraw":
        return _dcraw(path, workdir)
    raise ValueError(f"unknown validator {kind!r}")


_PDFAID_ATTR = re.compile(r"pdfaid:(part|conformance)\s*=\s*['\"]([^'\"]*)['\"]")
_PDFAID_ELEM = re.compile(r"<pdfaid:(part|conformance)>\s*([^<\s]*)\s*</pdfaid:\1>")


def _pdfinfo(path: Path, workdir: Path) -> Properties:
    exe = validator("pdfinfo").executable
    text = _run([exe, str(path)], workdir, "pdfinfo")
    pages = re.search(r"^Pages:\s+(\d+)\s*$", text, re.MULTILINE)
    if pages is None:
        raise Unreadable("pdfinfo reported no page count")
    meta = _run([exe, "-meta", str(path)], workdir, "pdfinfo")
    found = {k: v for k, v in (*_PDFAID_ATTR.findall(meta), *_PDFAID_ELEM.findall(meta))}
    pdfa = f"{found.get('part', '')}{found.get('conformance', '').upper()}" or None
    return {"page_count": int(pages.group(1)), "pdfa": pdfa}


def _identify(path: Path, workdir: Path) -> Properties:
    exe = validator("identify")
    argv = [exe.executable]
    if Path(exe.executable).name == "magick":
        argv.append("identify")
    text = _run([*argv, "-format", "%w %h\\n", str(path)], workdir, "identify")
    frames = [line.split() for line in text.splitlines() if line.strip()]
    if not frames or any(len(f) != 2 or not all(x.isdigit() for x in f) for f in frames):
        raise Unreadable("identify reported no image")
    width, height = frames[0]
    return {"pixel_dimensions": f"{width}x{height}", "frame_count": len(frames)}


def _ffprobe(path: Path, workdir: Path) -> Properties:
    exe = validator("ffprobe").executable
    text = _run(
        [
            exe, "-v", "error", "-of", "json",
            "-show_entries",
            "format=duration:stream=index,codec_type,width,height,channels"
            ":stream_disposition=attached_pic",
            str(path),
        ],
        workdir,
        "ffprobe",
    )  # fmt: skip
    try:
        doc = json.loads(text)
        streams = list(doc.get("streams", []))
        duration = float(doc["format"]["duration"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Unreadable("ffprobe reported no duration") from exc
    if not streams:
        raise Unreadable("ffprobe found no stream")
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return {
        "duration": round(duration, 3),
        "pixel_dimensions": f"{video['width']}x{video['height']}" if video else None,
        "audio_channels": int(audio["channels"]) if audio and "channels" in audio else None,
    }


_DCRAW_SIZE = re.compile(r"^Output size:\s+(\d+)\s*x\s*(\d+)\s*$", re.MULTILINE)


def _dcraw(path: Path, workdir: Path) -> Properties:
    """``dcraw -i -v``: "Output size" is the size of the image dcraw writes (after its
    rotation and pixel-aspect correction), so what its TIFF must measure."""
    exe = validator("dcraw").executable
    text = _run([exe, "-i", "-v", str(path)], workdir, "dcraw")
    size = _DCRAW_SIZE.search(text)
    if size is None:
        raise Unreadable("dcraw reported no output size")
    return {"pixel_dimensions": f"{size.group(1)}x{size.group(2)}"}


_MATCH = "OK\t%(info.puid)s\t%(info.mimetype)s\t%(info.matchtype)s\t%(info.formatname)s\n"


def fido_version() -> str:
    from fido import __version__

    return f"fido {__version__}"


def identify_format(path: Path, workdir: Path) -> Identified:
    """FIDO's first (best) match for one file, run as its own command line (see
    ``ingest.identify`` for why); ``puid`` None when nothing matched.

    Raises :class:`Unreadable` if FIDO fails or exceeds its time limit."""
    folder = workdir / "fido"
    folder.mkdir(exist_ok=True)
    argv = [
        sys.executable, "-c", "from fido.fido import main; main()", "-q",
        "-matchprintf", _MATCH, "-nomatchprintf", "KO\n", str(path),
    ]  # fmt: skip
    result = tools.run(argv, cwd=folder, time_limit=FIDO_TIME_LIMIT)
    if not result.ok:
        raise Unreadable(f"FIDO {result.describe()}")
    for line in (folder / "tool.stdout").read_bytes().decode("utf-8", "replace").splitlines():
        fields = line.split("\t")
        if fields[0] == "OK" and len(fields) >= 5:
            mime = fields[2] if fields[2] not in ("None", "") else None
            return Identified(fields[1], mime, fields[4], fields[3])
    return Identified(None, None, None, "none")
