"""Shared pieces of the migration tests: sample payloads, a stored package, and checks made
with the tools themselves (independently of the code under test)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import subprocess
import wave
from pathlib import Path
from typing import Any

from ocfl import StorageRoot
from sqlalchemy import select

from archive.catalog.tables import Event, File, Package
from archive.services import Services
from ingest.service import identify_package
from policies.load import POLICY_DIR
from tests.conftest import ROOT, SHARED_CORPORA
from tests.helpers import deposit, make_bag

CC0 = ROOT / "tests" / "data" / "format-samples-cc0"
CORPUS = SHARED_CORPORA / "format-samples"


def bmp(width: int = 9, height: int = 6) -> bytes:
    """A 24-bit Windows bitmap (BMP 3.0), written by hand."""
    row = bytes([30, 60, 200] * width)
    row += b"\0" * ((4 - len(row) % 4) % 4)
    pixels = row * height
    header = b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + dib + pixels


def tiff() -> bytes:
    """A plain 8-bit RGB TIFF (fmt/353, kept by the policy), made by ImageMagick from bmp()."""
    exe = shutil.which("convert") or "convert-im6.q16"
    done = subprocess.run([exe, "bmp:-", "tiff:-"], input=bmp(), capture_output=True, check=True)
    return done.stdout


def wav(seconds: int = 1, channels: int = 2, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(bytes(range(256)) * (rate * channels * 2 * seconds // 256))
    return buf.getvalue()


def dng(width: int = 64, height: int = 48) -> bytes:
    """A minimal DNG 1.4 raw camera file (little-endian TIFF, one uncompressed 16-bit Bayer
    CFA image), written by hand: FIDO names it fmt/730 and dcraw decodes it."""
    pixels = b"".join(
        struct.pack("<H", (x * 997 + y * 613) % 4096) for y in range(height) for x in range(width)
    )
    tags: list[tuple[int, int, int, bytes]] = []  # tag, TIFF type, count, value bytes

    def add(tag: int, kind: int, fmt: str, *values: int) -> None:
        tags.append((tag, kind, len(values), struct.pack(f"<{len(values)}{fmt}", *values)))

    def ascii_(tag: int, text: str) -> None:
        data = text.encode() + b"\0"
        tags.append((tag, 2, len(data), data))

    add(254, 4, "I", 0)  # NewSubfileType: the main image
    add(256, 4, "I", width)
    add(257, 4, "I", height)
    add(258, 3, "H", 16)  # BitsPerSample
    add(259, 3, "H", 1)  # no compression
    add(262, 3, "H", 32803)  # PhotometricInterpretation: CFA
    ascii_(271, "Custos")
    ascii_(272, "Test DNG")
    add(273, 4, "I", 0)  # StripOffsets: set below
    add(277, 3, "H", 1)
    add(278, 4, "I", height)
    add(279, 4, "I", len(pixels))
    add(284, 3, "H", 1)
    add(33421, 3, "H", 2, 2)  # CFARepeatPatternDim
    add(33422, 1, "B", 0, 1, 1, 2)  # CFAPattern: RGGB
    add(50706, 1, "B", 1, 4, 0, 0)  # DNGVersion 1.4.0.0
    add(50717, 4, "I", 4095)  # WhiteLevel
    tags.sort()
    extra_at = 8 + 2 + 12 * len(tags) + 4
    ifd, extra = bytearray(struct.pack("<H", len(tags))), bytearray()
    for tag, kind, count, data in tags:
        if len(data) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, extra_at + len(extra))
            extra += data + b"\0" * (len(data) % 2)
    ifd += struct.pack("<I", 0)
    at = 2 + 12 * [t[0] for t in tags].index(273) + 8
    ifd[at : at + 4] = struct.pack("<I", extra_at + len(extra))
    return b"II*\0" + struct.pack("<I", 8) + bytes(ifd) + bytes(extra) + pixels


def store(services: Services, folder: Path, payload: dict[str, bytes]) -> str:
    """Ingest a bag of ``payload`` and identify its formats (versions 1 and 2)."""
    bag = make_bag(folder, payload)
    package_id = deposit(services, bag, depositor="Migration Tests").package_id
    identify_package(services, package_id)
    return package_id


def corpus(*paths: str) -> dict[str, bytes]:
    return {p: (CORPUS / p).read_bytes() for p in paths}


def policy_folder(tmp: Path, formats_toml: str | None = None) -> Path:
    """A copy of the shipped policies (every file), with ``formats.toml`` replaced if given."""
    folder = tmp / "policies"
    folder.mkdir()
    for p in POLICY_DIR.iterdir():
        if p.suffix in (".toml", ".ps"):
            shutil.copy(p, folder / p.name)
    if formats_toml is not None:
        (folder / "formats.toml").write_text(formats_toml, encoding="utf-8")
    return folder


def object_root(services: Services, package_id: str) -> Path:
    with services.sessions() as s:
        pkg = s.get(Package, package_id)
        assert pkg is not None
        return services.store.object_root(pkg.object_path)


def head(services: Services, package_id: str) -> int:
    with services.sessions() as s:
        pkg = s.get(Package, package_id)
        assert pkg is not None
        return pkg.head


def stored_payload_digests(services: Services, package_id: str) -> dict[str, str]:
    """sha512 of every stored original, read from storage now."""
    root = object_root(services, package_id)
    with services.sessions() as s:
        rows = s.execute(
            select(File.logical_path, File.content_path).where(
                File.package_id == package_id, File.role == "payload"
            )
        ).all()
    return {
        logical: hashlib.sha512((root / content).read_bytes()).hexdigest()
        for logical, content in rows
    }


def derivatives(services: Services, package_id: str) -> dict[str, File]:
    with services.sessions() as s:
        return {
            f.logical_path: f
            for f in s.execute(
                select(File).where(File.package_id == package_id, File.role == "derivative")
            ).scalars()
        }


def migration_events(services: Services, package_id: str) -> list[dict[str, Any]]:
    from archive.catalog.queries import package_events

    with services.sessions() as s:
        return [
            {
                "outcome": e.outcome,
                "detail": e.detail,
                "agent": e.agent,
                "links": {(lk.object_type, lk.object_id, lk.role) for lk in e.links},
                "source": next(lk.object_id for lk in e.links if lk.role == "source"),
            }
            for e in package_events(s, package_id)
            if e.type == "migration"
        ]


def event_count(services: Services) -> int:
    with services.sessions() as s:
        return len(s.execute(select(Event.id)).all())


def validate_storage(services: Services) -> None:
    sr = StorageRoot(root=str(services.store.root))
    ok = sr.validate(validate_objects=True, check_digests=True, log_warnings=True)
    assert ok and sr.num_objects == sr.good_objects, str(sr.log)


# --- independent readings of files (the tools themselves, not migration.probe) -------------


def pages(path: Path) -> int:
    text = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    return int(next(ln.split()[1] for ln in text.stdout.splitlines() if ln.startswith("Pages:")))


def av(path: Path) -> dict[str, Any]:
    text = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_entries",
         "format=duration:stream=codec_type,codec_name,width,height,channels", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    doc = json.loads(text)
    video = [s for s in doc["streams"] if s["codec_type"] == "video"]
    audio = [s for s in doc["streams"] if s["codec_type"] == "audio"]
    return {
        "duration": float(doc["format"]["duration"]),
        "video": [(s["codec_name"], s["width"], s["height"]) for s in video],
        "audio": [(s["codec_name"], s["channels"]) for s in audio],
    }


def dimensions(path: Path) -> str:
    exe = shutil.which("identify") or "identify-im6.q16"
    out = subprocess.run(
        [exe, "-format", "%wx%h;", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return out.split(";")[0]


def fido(path: Path) -> str:
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "from fido.fido import main; main()", "-q", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split(",")[2]
