"""Many small files of common kinds, each with its own bytes (so a digest cache never hits
within the set): text, CSV, JSON, XML, HTML, SVG, RTF, PDF, PNG, GIF, ZIP and e-mail.
Used by ``bench/identify.py``; deterministic for a given count."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from pathlib import Path

import common  # noqa: F401  (puts the project folder on sys.path)

from tests.helpers import make_pdf

WORDS = [
    "witness",
    "statement",
    "report",
    "village",
    "river",
    "bridge",
    "convoy",
    "school",
    "clinic",
    "market",
    "road",
    "evidence",
    "archive",
    "record",
    "mechanism",
    "tribunal",
    "closure",
    "holding",
    "camera",
    "photo",
    "night",
    "morning",
    "soldier",
    "civilian",
    "checkpoint",
    "document",
    "ledger",
    "inventory",
    "transfer",
    "letter",
    "map",
    "site",
    "grave",
]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _png(rng: random.Random) -> bytes:
    w, h = rng.randint(4, 24), rng.randint(4, 24)
    raw = b"".join(b"\0" + rng.randbytes(w * 3) for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _gif(rng: random.Random) -> bytes:
    w, h = rng.randint(1, 64), rng.randint(1, 64)
    palette = rng.randbytes(6)
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", w, h, 0x80, 0, 0)
        + palette
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, w, h, 0)
        + b"\x02\x02\x4c\x01\x00\x3b"
    )


def _zip(rng: random.Random, i: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"note-{i}.txt", _sentence(rng, 30))
    return buf.getvalue()


def make(i: int, rng: random.Random) -> tuple[str, bytes]:
    """The ``i``-th file: its name and bytes."""
    kind = i % 12
    s = _sentence(rng, rng.randint(20, 120))
    if kind == 0:
        return f"notes-{i}.txt", (s + "\n").encode()
    if kind == 1:
        rows = "\n".join(f"{i},{j},{rng.random():.6f},{rng.choice(WORDS)}" for j in range(20))
        return f"table-{i}.csv", ("id,row,value,word\n" + rows + "\n").encode()
    if kind == 2:
        return f"data-{i}.json", f'{{"id": {i}, "text": "{s}"}}\n'.encode()
    if kind == 3:
        return f"record-{i}.xml", (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<record id="{i}"><text>{s}</text></record>\n'
        ).encode()
    if kind == 4:
        return f"page-{i}.html", (
            f"<!DOCTYPE html>\n<html><head><title>{i}</title></head>"
            f"<body><p>{s}</p></body></html>\n"
        ).encode()
    if kind == 5:
        return f"figure-{i}.svg", (
            '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
            f'height="10"><!-- {i} {s} --></svg>\n'
        ).encode()
    if kind == 6:
        return f"memo-{i}.rtf", (
            "{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}} " + s + "}\n"
        ).encode()
    if kind == 7:
        return f"report-{i}.pdf", make_pdf(f"{i} {s}")
    if kind == 8:
        return f"photo-{i}.png", _png(rng)
    if kind == 9:
        return f"icon-{i}.gif", _gif(rng)
    if kind == 10:
        return f"bundle-{i}.zip", _zip(rng, i)
    return f"mail-{i}.eml", (
        f"From: a{i}@example.org\nTo: b@example.org\nSubject: {s[:40]}\n"
        f"Date: Mon, 2 Jan 2023 10:00:00 +0000\n\n{s}\n"
    ).encode()


def write(folder: Path, count: int, seed: int = 6) -> list[Path]:
    """Write ``count`` files under ``folder`` (500 to a sub-folder); return their paths."""
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        name, data = make(i, rng)
        p = folder / f"{i // 500:03d}" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        paths.append(p)
    return paths
