"""Builders for test bags and archives, a deposit for tests about something other than the
depositors, and checks that a refusal left nothing behind."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from archive.catalog.tables import Deposit, Event, File, Package, PendingInstall
from archive.services import Services
from ingest.service import IngestResult, ingest


def drop_tier_keys_schema(conn: Any) -> None:
    """Undo revisions 0020 and 0021 on a catalog connection, for tests that set a catalog back
    to an earlier release's schema: the ``tier_keys`` table and the encrypted copies' columns
    of ``files``."""
    conn.execute(text("DROP TABLE tier_keys"))
    for column in ("sealed_tier", "plain_size", "plain_sha512", "plain_sha256"):
        conn.execute(text(f"ALTER TABLE files DROP COLUMN {column}"))


def make_bag(
    folder: Path,
    payload: dict[str, bytes],
    *,
    algorithms: tuple[str, ...] = ("sha512",),
    info: dict[str, str] | None = None,
    version: str = "1.0",
    extra_tag_files: dict[str, bytes] | None = None,
    manifest_extra_lines: dict[str, str] | None = None,
    omit_from_manifest: tuple[str, ...] = (),
) -> Path:
    """Write a BagIt bag by hand (so tests can also write broken ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bagit.txt").write_bytes(
        f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n".encode()
    )
    for rel, data in payload.items():
        p = folder / "data" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    total = sum(len(d) for d in payload.values())
    info_lines = {"Payload-Oxum": f"{total}.{len(payload)}", **(info or {})}
    (folder / "bag-info.txt").write_text(
        "".join(f"{k}: {v}\n" for k, v in info_lines.items()), encoding="utf-8"
    )
    for name, data in (extra_tag_files or {}).items():
        (folder / name).write_bytes(data)
    for alg in algorithms:
        lines = [
            f"{hashlib.new(alg, data).hexdigest()}  data/{rel}\n"
            for rel, data in sorted(payload.items())
            if rel not in omit_from_manifest
        ]
        lines += [f"{v}\n" for v in (manifest_extra_lines or {}).values()]
        (folder / f"manifest-{alg}.txt").write_text("".join(lines), encoding="utf-8")
    for alg in algorithms:
        tag_lines = []
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith("tagmanifest-"):
                tag_lines.append(f"{hashlib.new(alg, p.read_bytes()).hexdigest()}  {p.name}\n")
        (folder / f"tagmanifest-{alg}.txt").write_text("".join(tag_lines), encoding="utf-8")
    return folder


def zip_folder(folder: Path, target: Path, *, prefix: str | None = None) -> Path:
    top = folder.name if prefix is None else prefix
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                rel = p.relative_to(folder).as_posix()
                zf.write(p, f"{top}/{rel}" if top else rel)
    return target


def tar_folder(folder: Path, target: Path, *, mode: str = "w:gz") -> Path:
    with tarfile.open(target, mode) as tf:
        tf.add(folder, arcname=folder.name)
    return target


def add_tar_member(tf: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def deposit(services: Services, source: Path, *, depositor: str, **kwargs: Any) -> IngestResult:
    """Ingest ``source`` as ``custos ingest --new-depositor`` does: ``depositor`` is registered
    first, unless it is already. For the tests of something else than the registry of
    depositors (tests/functional/test_depositors.py tests it, and ingest's refusal of a name
    that is not registered)."""
    return ingest(services, source, depositor=depositor, new_depositor=True, **kwargs)


def catalog_counts(services: Services) -> dict[str, int]:
    with services.sessions() as s:
        return {
            "packages": s.scalar(select(func.count()).select_from(Package)) or 0,
            "deposits": s.scalar(select(func.count()).select_from(Deposit)) or 0,
            "files": s.scalar(select(func.count()).select_from(File)) or 0,
            "events": s.scalar(select(func.count()).select_from(Event)) or 0,
        }


def assert_nothing_stored(services: Services) -> None:
    """A refused deposit leaves no package, no object, no staging debris: one event only."""
    counts = catalog_counts(services)
    assert counts["packages"] == 0 and counts["deposits"] == 0 and counts["files"] == 0, counts
    assert list(services.store.iter_objects()) == []
    assert staging_debris(services.store.staging) == []
    with services.sessions() as s:
        events = s.execute(select(Event.type, Event.outcome)).all()
    assert [tuple(e) for e in events][-1] == ("ingestion", "failure")


def staging_debris(staging: Path) -> list[Path]:
    """What a deposit left in staging (the commit lock file is permanent, not debris)."""
    return [p for p in staging.iterdir() if p.name != ".commit.lock"]


def make_pdf(text: str) -> bytes:
    """A small, valid PDF 1.4 with one page showing ``text`` (ASCII) in Helvetica: enough for
    FIDO to call it a PDF and for pdftotext to read the words back."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    out += trailer.encode()
    return bytes(out)


def pending_install(services: Services, object_id: str, deposit_id: str) -> None:
    """What another host's ingest records before storing an object, then stops (for good)."""
    with services.session_scope() as s:
        s.add(
            PendingInstall(
                object_id=object_id,
                deposit_id=deposit_id,
                host="host-b (process 4242)",
                started_at=datetime.now(UTC),
            )
        )


def stored_bundle(services: Services, key: str) -> Path:
    """The folder of a court bundle that answered a justice request, as the API names it (a
    key in the primary copy), in a local primary's storage root."""
    assert key.startswith("extensions/custos-exports/"), key
    return services.settings.storage_path.joinpath(*key.split("/"))
