"""Protected copies encrypted at deposit.

Once a tier has a key (``custos keys init``), every payload file that the deposit's access
declaration puts in that tier is stored encrypted in the age format to the tier's recipients
(its own key and its escrows): the staged plain copy is read once, encrypted and digested on
both sides (:func:`archive.crypt.encrypt_copy`), and replaced. The object keeps the file under
its own name; ``custos/encrypted.json`` lists each encrypted copy by content path, with its
logical path, tier, plain size and digests, and recipients, so that the catalog can be
rebuilt from storage alone.
The inventory, fixity and replication see the stored (encrypted) bytes; the bag's manifests
and the file seals prove the plain ones.

Protected-identity files are encrypted, and restricted ones when the access policy says so
(``[tiers.restricted] encrypt_at_rest``). **Today** only the files' contents are: the bag's
tag files (its manifests name every path), ``bag-info.txt`` and the catalog's paths stay in
clear.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from archive.crypt import MAGIC, encrypt_copy
from archive.digest import CopyResult, writing
from policies.access import Assignment, effective_tier
from policies.schema import AccessPolicy


def sealed_tiers(policy: AccessPolicy) -> tuple[str, ...]:
    """Tiers whose files are stored encrypted once the tier has a key: protected-identity
    always, restricted when the access policy says so (``encrypt_at_rest``)."""
    return (
        "protected-identity",
        *(("restricted",) if policy.tiers.restricted.encrypt_at_rest else ()),
    )


def seal_payload(
    bag_dir: Path,
    payload: Iterable[str],
    assignments: Iterable[Assignment],
    files: dict[str, CopyResult],
    recipients: Mapping[str, list[str]],
) -> dict[str, dict[str, Any]]:
    """Encrypt, in place in ``bag_dir``, each payload file (``data/…``) whose tier has
    recipients; replace its entry in ``files`` with the stored bytes' digests. Returns the
    entries of ``custos/encrypted.json`` by content path (``v1/content/bag/data/…``).

    Raises :class:`~archive.digest.WriteFailed` when staging refuses the write (nothing of the
    deposit is kept then, as for any write refused at deposit)."""
    rules = list(assignments)
    sealed: dict[str, dict[str, Any]] = {}
    for rel in sorted(payload):
        tier = effective_tier(rel, rules)
        to = recipients.get(tier or "")
        if not to:
            continue
        staged = bag_dir / rel
        sealing = staged.with_name(staged.name + ".custos-sealing")
        with open(staged, "rb") as src, writing(sealing), open(sealing, "xb") as dst:
            # Its plain digests are the receipt's, computed as the deposit was received.
            done = encrypt_copy(src, dst, to, plain=files[rel])
        with writing(staged):
            os.replace(sealing, staged)
        files[rel] = done.stored
        sealed[f"v1/content/bag/{rel}"] = {
            "logical": f"bag/{rel}",
            "tier": tier,
            "size": done.plain.size,
            "sha512": done.plain.digests["sha512"],
            "sha256": done.plain.digests["sha256"],
            "recipients": list(to),
        }
    return sealed


def encrypted_json(sealed: Mapping[str, Mapping[str, Any]]) -> bytes:
    body = {"format": MAGIC.decode(), "files": dict(sorted(sealed.items()))}
    return (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode()
