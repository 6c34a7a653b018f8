"""Court bundles: the layout, and ``custos verify --bundle DIR``.

A bundle is a BagIt bag (RFC 8493, sha512 and sha256 manifests). Its payload::

    data/files/…                   the released files, by their path in the deposit (minus data/)
    data/proofs/files/<path>.<tsa>-<serial>.ers   each file's own RFC 4998 evidence record(s),
                                   derived from its version's file seal
                                   (:mod:`archive.proofs.fileseal`)
    data/manifests/bag/manifest-*.txt   only when every payload file of the deposit is
                                   released: the deposit's bag manifests, as stored, and
    data/proofs/v1/content/bag/<manifest>.<tsa>-<serial>.ers   their evidence records
    data/proofs/tokens/<serial>-<sha256>.tst    each RFC 3161 token, DER, for `openssl ts`
    data/proofs/certs/tsa-<sha256>.pem          the TSA certificates that signed them
    data/proofs/certs/root-<sha256>.pem         the archive's trust anchors
    data/custody/premis.xml        the custody history of the released files (PREMIS 3)
    data/custos-bundle.json        the index :func:`verify_bundle` reads
    data/VERIFY.txt                how to check all of it with sha512sum and openssl alone

Nothing in a bundle names a file that was withheld (``access.export.bundle`` decides what may leave
the archive and writes it; this module only reads). Bundles of the first format
(``custos-court-bundle/1``: each file proven through the sealed inventory that lists it) are
still verified.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import bagit

from archive.digest import digest_file
from archive.errors import InputRejected, ProofError
from archive.findings import Finding
from archive.proofs.evidence import verify_record
from archive.proofs.renew import digest_all

INDEX = "data/custos-bundle.json"
BUNDLE_FORMAT = "custos-court-bundle/2"
_FORMATS = ("custos-court-bundle/1", BUNDLE_FORMAT)


@dataclass(frozen=True, slots=True)
class Step:
    ok: bool
    text: str


@dataclass
class BundleReport:
    bundle: Path
    package_id: str = ""
    steps: list[Step] = field(default_factory=list)
    anchors_from_bundle: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def passed(self, text: str) -> None:
        self.steps.append(Step(True, text))

    def failed(self, text: str) -> None:
        self.steps.append(Step(False, text))

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "package_id": self.package_id,
            "verified": self.ok,
            "trust_anchors_from_bundle": self.anchors_from_bundle,
            "steps": [{"ok": s.ok, "text": s.text} for s in self.steps],
        }


def _index(bundle: Path) -> dict[str, Any]:
    try:
        data = json.loads((bundle / INDEX).read_bytes())
    except FileNotFoundError as exc:
        raise InputRejected(
            f"{bundle} is not a Custos court bundle",
            [Finding("BUNDLE-NO-INDEX", "error", f"{INDEX} is missing", str(bundle))],
            hint="give the folder `custos export` wrote (the one holding bagit.txt)",
        ) from exc
    except ValueError as exc:
        raise InputRejected(
            f"{bundle} has an unreadable index",
            [Finding("BUNDLE-INDEX", "error", str(exc), INDEX)],
        ) from exc
    if data.get("format") not in _FORMATS:
        raise InputRejected(
            f"{bundle} is a bundle of an unknown format",
            [Finding("BUNDLE-FORMAT", "error", f"format {data.get('format')!r}", INDEX)],
        )
    return dict(data)


def _inside(bundle: Path, rel: str) -> Path:
    """A path of the index, refused if it leaves the bundle's payload."""
    path = (bundle / "data" / rel).resolve()
    if not path.is_relative_to((bundle / "data").resolve()):
        raise ProofError(f"the bundle's index names {rel!r}, outside the bundle")
    return path


def verify_bundle(
    bundle: Path, *, trust: list[bytes] | None = None, at: datetime | None = None
) -> BundleReport:
    """Check a bundle on its own: the bag, every file against the manifest that lists it, every
    manifest against its evidence records and the tokens in them.

    ``trust``: PEM trust anchors to verify the tokens against; without them the anchors
    inside the bundle are used (and the report says so: their fingerprints must then be
    compared with those the archive publishes). Raises :class:`InputRejected` if ``bundle``
    is not a bundle at all."""
    bundle = bundle.resolve()
    report = BundleReport(bundle)
    index = _index(bundle)
    report.package_id = str(index.get("package_id", ""))
    # 1. The bag: every payload file is the one its manifests list, none missing or extra.
    try:
        bagit.Bag(str(bundle)).validate(processes=1)
    except (bagit.BagError, bagit.BagValidationError) as exc:
        report.failed(f"The bundle is not an intact BagIt bag: {exc}")
        return report
    report.passed(
        "The bundle is a complete BagIt bag: every file in it has the sha512 and sha256 its "
        "manifests list."
    )
    if trust is None:
        report.anchors_from_bundle = True
        trust = [_inside(bundle, a["path"]).read_bytes() for a in index.get("trust_anchors", [])]
        fingerprints = ", ".join(a["sha256"][:16] + "…" for a in index.get("trust_anchors", []))
        report.passed(
            "Trust anchors are taken from the bundle itself (SHA-256 "
            f"{fingerprints}): compare them with those the archive publishes."
        )
    # 2. Each manifest: its bytes, then its evidence records.
    manifests: dict[str, str] = {}
    for m in index.get("manifests", []):
        data = _inside(bundle, m["path"]).read_bytes()
        actual = hashlib.sha512(data).hexdigest()
        manifests[m["path"]] = actual
        if actual != m["sha512"]:
            report.failed(
                f"{m['path']}: hashes to {actual[:16]}…, not the sealed {m['sha512'][:16]}…"
            )
            continue
        if not m.get("records"):
            report.failed(f"{m['path']}: no evidence record in the bundle.")
            continue
        _check_records(report, bundle, m["path"], m["records"], digest_all(data), trust, at)
    # 3. Each file: its own evidence records, and the sealed manifest that lists it, if any.
    for f in index.get("files", []):
        path = _inside(bundle, f["path"])
        hexes = digest_file(path, ("sha512", "sha384", "sha256")).digests
        actual = hexes["sha512"]
        if not f.get("records") and not f.get("manifest"):
            report.failed(f"{f['path']}: no proof of it in the bundle.")
            continue
        digests = {a: bytes.fromhex(d) for a, d in hexes.items()}
        _check_records(report, bundle, f["path"], f.get("records", []), digests, trust, at)
        if not f.get("manifest"):
            continue
        listed = _listed(bundle, f["manifest"], f["entry"])
        if listed is None:
            report.failed(f"{f['path']}: {f['manifest']} does not list {f['entry']}.")
        elif actual != listed:
            report.failed(
                f"{f['path']}: hashes to {actual[:16]}…, but {f['manifest']} lists "
                f"{listed[:16]}… for it: the file is not the one received."
            )
        elif f["manifest"] not in manifests:
            report.failed(f"{f['path']}: its manifest {f['manifest']} is not in the bundle.")
        else:
            report.passed(
                f"{f['path']} hashes to sha512 {actual[:16]}…, as the sealed {f['manifest']} "
                f"lists for {f['entry']}."
            )
    return report


def _check_records(
    report: BundleReport,
    bundle: Path,
    document: str,
    records: list[str],
    digests: dict[str, bytes],
    trust: list[bytes],
    at: datetime | None,
) -> None:
    """Each evidence record of a file or manifest, against its digests (one step each)."""
    for rec in records:
        try:
            check = verify_record(_inside(bundle, rec).read_bytes(), digests, roots=trust, at=at)
        except (ProofError, OSError) as exc:
            reason = exc.message if isinstance(exc, ProofError) else str(exc)
            report.failed(f"{document}: its evidence record {rec} fails: {reason}")
            continue
        report.passed(
            f"{document} (sha512 {digests['sha512'].hex()[:16]}…) existed at "
            f"{check.gen_time.isoformat()}: {rec} verifies"
            + (f", renewed {check.renewals} time(s)" if check.renewals else "")
            + "."
        )


def _listed(bundle: Path, manifest: str, entry: str) -> str | None:
    """The sha512 a manifest lists for ``entry``: an OCFL inventory or a BagIt manifest."""
    path = _inside(bundle, manifest)
    if path.name == "inventory.json":
        inventory = json.loads(path.read_bytes())
        for digest, paths in inventory.get("manifest", {}).items():
            if entry in paths:
                return str(digest)
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition(" ")
        if name.strip().lstrip("*") == entry:
            return digest.strip()
    return None
