"""Protected copies encrypted at deposit, under names that name no one.

Once a tier has a key (``custos keys init``), every payload file that the deposit's access
declaration puts in that tier is stored encrypted in the age format to the tier's recipients
(its own key and its escrows): the staged plain copy is read once, encrypted and digested on
both sides (:func:`archive.crypt.encrypt_copy`), and replaced.

Names name people, so a protected file is not stored under its own: it becomes
``data/sealed/<32 hex>`` (random, so it says nothing of the name or the bytes), in the
object, the inventory, the catalog, the seals and every replica. The real names are kept in
``custos/names-<tier>.age``, encrypted to the tier's recipients. In a package holding such a
file, every tag file of the bag but ``bagit.txt`` (its manifests list every path, its
``bag-info.txt`` describes the holdings, ``custos-access.txt`` names folders) and
``custos/bag-info.json`` are stored encrypted too, to the most closed of those tiers; the
package's title falls back to its source's name; ``custos/access.json`` keeps only the
records on paths that public files show anyway, and gives each protected file its own
records under its sealed name.

``custos/encrypted.json`` lists each encrypted copy by content path, with its logical path,
tier, plain size and digests, and recipients, so that the catalog can be rebuilt from
storage alone. The inventory, fixity and replication see the stored (encrypted) bytes; the
file seals prove the plain ones.

Protected-identity files are encrypted, and restricted ones when the access policy says so
(``[tiers.restricted] encrypt_at_rest``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archive.catalog.index import names_path
from archive.crypt import MAGIC, Encrypted, encrypt_copy
from archive.digest import CopyResult, writing
from archive.findings import Finding
from policies.access import Assignment, Consent, effective, effective_consent, effective_tier
from policies.schema import AccessPolicy
from policies.vocabulary import TIERS

#: Where a protected file is stored in the bag, under a random name.
SEALED_FOLDER = "data/sealed/"
#: The format of ``custos/names-<tier>.age`` once decrypted.
NAMES_FORMAT = "custos-names/1"
#: The one tag file that stays in clear: it names nothing (RFC 8493 version and encoding).
CLEAR_TAG_FILES = frozenset({"bagit.txt"})


def sealed_tiers(policy: AccessPolicy) -> tuple[str, ...]:
    """Tiers whose files are stored encrypted once the tier has a key: protected-identity
    always, restricted when the access policy says so (``encrypt_at_rest``)."""
    return (
        "protected-identity",
        *(("restricted",) if policy.tiers.restricted.encrypt_at_rest else ()),
    )


@dataclass
class Concealment:
    """What sealing a deposit did: ``sealed``, the entries of ``custos/encrypted.json`` by
    content path; ``names``, per tier, each sealed payload file's real path by its sealed
    one (both ``data/…``); ``recipients``, per tier, those encrypted to."""

    sealed: dict[str, dict[str, Any]] = field(default_factory=dict)
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    recipients: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.names)

    @property
    def real_to_sealed(self) -> dict[str, str]:
        return {real: opaque for names in self.names.values() for opaque, real in names.items()}

    @property
    def closest(self) -> str:
        """The most closed tier sealed here: the one that governs the tag files."""
        return max(self.names, key=TIERS.index)


def _sealed_name(taken: set[str]) -> str:
    while True:
        name = SEALED_FOLDER + secrets.token_hex(16)
        if name not in taken:
            taken.add(name)
            return name


def _entry(logical: str, tier: str, plain: CopyResult, to: Sequence[str]) -> dict[str, Any]:
    return {
        "logical": logical,
        "tier": tier,
        "size": plain.size,
        "sha512": plain.digests["sha512"],
        "sha256": plain.digests["sha256"],
        "recipients": list(to),
    }


def _encrypt_staged(staged: Path, target: Path, to: Sequence[str], plain: CopyResult) -> Encrypted:
    sealing = target.with_name(target.name + ".custos-sealing")
    with open(staged, "rb") as src, writing(sealing), open(sealing, "xb") as dst:
        # Its plain digests are the receipt's, computed as the deposit was received.
        done = encrypt_copy(src, dst, to, plain=plain)
    with writing(target):
        os.replace(sealing, target)
    return done


def seal_payload(
    bag_dir: Path,
    payload: Iterable[str],
    assignments: Iterable[Assignment],
    files: dict[str, CopyResult],
    recipients: Mapping[str, list[str]],
) -> Concealment:
    """Encrypt each payload file (``data/…``) of ``bag_dir`` whose tier has recipients, to a
    sealed name (the plain staged copy removed, with the folders it leaves empty); then, if
    any was, every tag file but ``bagit.txt``, in place. ``files`` (the receipt, by path in
    the bag) is updated to the stored bytes under the stored names.

    Raises :class:`~archive.digest.WriteFailed` when staging refuses the write (nothing of the
    deposit is kept then, as for any write refused at deposit)."""
    rules = list(assignments)
    done = Concealment()
    payload = sorted(payload)
    taken = set(payload)
    for rel in payload:
        tier = effective_tier(rel, rules)
        to = recipients.get(tier or "")
        if not to or tier is None:
            continue
        opaque = _sealed_name(taken)
        staged, target = bag_dir / rel, bag_dir / opaque
        target.parent.mkdir(exist_ok=True)
        result = _encrypt_staged(staged, target, to, files.pop(rel))
        staged.unlink()
        _prune_up(staged.parent, bag_dir / "data")
        files[opaque] = result.stored
        done.sealed[f"v1/content/bag/{opaque}"] = _entry(f"bag/{opaque}", tier, result.plain, to)
        done.names.setdefault(tier, {})[opaque] = rel
        done.recipients[tier] = list(to)
    if done:
        tier = done.closest
        to = done.recipients[tier]
        for rel in sorted(r for r in files if not r.startswith("data/")):
            if rel in CLEAR_TAG_FILES:
                continue
            staged = bag_dir / rel
            result = _encrypt_staged(staged, staged, to, files[rel])
            files[rel] = result.stored
            done.sealed[f"v1/content/bag/{rel}"] = _entry(f"bag/{rel}", tier, result.plain, to)
    return done


def _prune_up(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to ``stop`` (kept) while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def seal_bytes(
    data: bytes, logical: str, tier: str, to: Sequence[str]
) -> tuple[bytes, dict[str, Any]]:
    """``data`` (a small metadata file: bag-info, a names map) encrypted to ``to``, and its
    ``custos/encrypted.json`` entry."""
    out = io.BytesIO()
    result = encrypt_copy(io.BytesIO(data), out, to)
    return out.getvalue(), _entry(logical, tier, result.plain, to)


def names_files(done: Concealment, empty_folders: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """Per tier, the logical path of its names map and the map's plain bytes: each sealed
    file's real path by its sealed one, and (in the most closed tier's) the bag's empty
    folders that no public file shows."""
    out: dict[str, tuple[str, bytes]] = {}
    for tier, names in sorted(done.names.items()):
        body: dict[str, Any] = {
            "format": NAMES_FORMAT,
            "tier": tier,
            "files": {f"bag/{o}": f"bag/{r}" for o, r in sorted(names.items())},
        }
        if tier == done.closest and empty_folders:
            body["empty_folders"] = list(empty_folders)
        text = json.dumps(body, indent=1, ensure_ascii=False) + "\n"
        out[tier] = (names_path(tier), text.encode())
    return out


def revealed_paths(payload: Iterable[str], done: Concealment) -> set[str]:
    """The paths (``data/…``, their folders, ``""`` and ``data``) that files stored under their
    own names show anyway."""
    hidden = done.real_to_sealed
    out = {"", "data"}
    for rel in payload:
        if rel in hidden:
            continue
        parts = rel.split("/")
        out.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def conceal_records(
    assignments: Sequence[Assignment],
    consents: Sequence[Consent],
    done: Concealment,
    revealed: set[str],
) -> tuple[list[Assignment], list[Consent]]:
    """The access records to store in clear: those on paths that public files show anyway,
    and for each sealed file its governing assignment and consent, copied to its sealed
    name (the same decisions, naming no one)."""
    kept_a = [a for a in assignments if a.path in revealed]
    kept_c = [c for c in consents if c.path in revealed]
    for real, opaque in sorted(done.real_to_sealed.items()):
        governing = effective(real, assignments)
        if governing is not None:
            kept_a.append(dataclasses.replace(governing, path=opaque))
        consent = effective_consent(real, consents)
        if consent is not None:
            kept_c.append(dataclasses.replace(consent, path=opaque))
    return kept_a, kept_c


def conceal_text(text: str, done: Concealment, revealed: set[str]) -> str:
    """``text`` (a finding to record) with each sealed file's path replaced by its sealed
    name, and each folder or file name that only they show by ``[protected]``."""
    if not done:
        return text
    for real, opaque in sorted(done.real_to_sealed.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(real, opaque)
    folders = {
        "/".join(real.split("/")[:i])
        for real in done.real_to_sealed
        for i in range(2, real.count("/") + 1)
    }
    shown = {part for path in revealed for part in path.split("/")}
    names = {real.rsplit("/", 1)[-1] for real in done.real_to_sealed} - shown
    for hidden in sorted((folders - revealed) | names, key=len, reverse=True):
        text = text.replace(hidden, "[protected]")
    return text


def conceal_finding(finding: Finding, done: Concealment, revealed: set[str]) -> Finding:
    """``finding`` (a warning to record) naming no protected file (:func:`conceal_text`)."""
    return dataclasses.replace(
        finding,
        message=conceal_text(finding.message, done, revealed),
        path=conceal_text(finding.path, done, revealed),
    )


def encrypted_json(sealed: Mapping[str, Mapping[str, Any]]) -> bytes:
    body = {"format": MAGIC.decode(), "files": dict(sorted(sealed.items()))}
    return (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode()
