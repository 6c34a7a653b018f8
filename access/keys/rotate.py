"""``custos keys rotate``: a tier's key replaced by a new one, every encrypted copy of the tier
re-wrapped to the new key.

Re-wrapping changes only an age file's header (the file key wrapped to the new recipients,
:func:`archive.crypt.rewrap`); the payload is copied byte for byte, never decrypted. OCFL
never changes a stored file, so the re-wrapped copies are a new version of each package,
with ``custos/encrypted.json`` listing them beside the old ones (and an ``encryption`` event).
The old versions keep the copies wrapped to the old key, as OCFL keeps every version: the
old key's shares must still be destroyed.

The work is resumable: the new key is recorded first (the old one retired), then packages are
re-wrapped one at a time, each in its own commit. A rotation cut short (a crash, a storage
that stopped answering) is finished by ``custos keys rotate --resume`` with shares of the
retired key: the packages already done are skipped. Until then, copies not yet re-wrapped
open with the retired key only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.decisions.records import read_access
from access.decisions.rules import rules_from_rows
from access.keys.service import (
    NewShares,
    check_tier,
    event_of,
    make_key,
    open_secret,
    require_key,
)
from access.keys.shares import check_counts
from archive import clock, steps
from archive.catalog.index import ENCRYPTED_JSON, PREMIS_XML, run_index_hooks, sealed_files
from archive.catalog.queries import access_rows, tier_recipients
from archive.catalog.tables import AccessAssignment, File, Package, TierKey
from archive.crypt import encrypt_copy, identity_text, rewrap
from archive.custody import new_event, premis_xml, record_events
from archive.digest import CopyResult, writing
from archive.errors import NotFound, StorageError
from archive.model import Link
from archive.services import Services
from archive.storage import ocfl
from archive.versions import append_version, catalog_version, finish
from policies.access import effective_tier

AGENT = "Custos"
#: An entry of ``custos/encrypted.json``: logical path, tier, plain size and digests, recipients.
Entry = dict[str, Any]


@dataclass
class Rotation:
    """What a rotation did: the new key (its shares handed out once), packages and copies
    re-wrapped, and packages left (a rotation cut short)."""

    tier: str
    recipient: str
    retired: str
    packages: int = 0
    copies: int = 0
    new: NewShares | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "recipient": self.recipient,
            "retired": self.retired,
            "packages_rewrapped": self.packages,
            "copies_rewrapped": self.copies,
            **({"share_set": self.new.shares.share_set} if self.new else {}),
        }


def begin(
    session: Session,
    *,
    tier: str,
    presented: Sequence[tuple[str, str]],
    shares: int,
    threshold: int,
    by: str,
    hand_out: Callable[[NewShares], None],
) -> tuple[Rotation, bytes]:
    """Make the tier's new key from ``presented`` shares of the current one, hand its shares
    out (before anything is written), retire the old key and record the new one. Returns the
    rotation and the old key's secret (held by the caller for re-wrapping, never stored).

    Raises :class:`NotFound` when the tier has no key; :class:`InputRejected` for shares that
    do not open it or counts that do not split a key."""
    check_tier(tier)
    check_counts(shares, threshold)
    old = require_key(session, tier)
    old_secret = open_secret(old, presented)
    new = make_key(session, tier=tier, shares=shares, threshold=threshold, by=by, hand_out=hand_out)
    old.retired_at = clock.now()
    recipient, made = new.recipient, new.shares
    record_events(
        session,
        [
            event_of(
                "key administration",
                f"key of the {tier} tier rotated: recipient {recipient} ({shares} shares, set "
                f"{made.share_set}, any {threshold} open it) replaces {old.recipient}, retired; "
                f"its encrypted copies are re-wrapped to the new key; by {by}",
                tier,
                by,
            )
        ],
    )
    return Rotation(tier, recipient, old.recipient, new=new), old_secret


def resume(
    session: Session, *, tier: str, presented: Sequence[tuple[str, str]]
) -> tuple[Rotation, bytes]:
    """The rotation of ``tier`` under way, and the retired key's secret from ``presented``
    shares of it. Raises :class:`NotFound` when the tier's key was never rotated."""
    check_tier(tier)
    current = require_key(session, tier)
    retired = session.execute(
        select(TierKey)
        .where(TierKey.tier == tier, TierKey.kind == "shares", TierKey.retired_at.is_not(None))
        .order_by(TierKey.retired_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if retired is None:
        raise NotFound(
            f"the {tier} tier's key was never rotated: there is nothing to resume",
            hint=f"`custos keys rotate --tier {tier}` with shares of its key starts a rotation",
        )
    return Rotation(tier, current.recipient, retired.recipient), open_secret(retired, presented)


def packages_of(session: Session, tier: str) -> list[str]:
    """Every package holding copies encrypted to ``tier``."""
    return list(
        session.execute(
            select(File.package_id)
            .where(File.sealed_tier == tier)
            .distinct()
            .order_by(File.package_id)
        ).scalars()
    )


def rewrap_all(
    services: Services,
    rotation: Rotation,
    old_secret: bytes,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> Rotation:
    """Re-wrap every copy of the tier still wrapped to other recipients than the tier's
    current ones, package by package, each in its own commit. Raises what storage and the
    catalog raise; what was committed before stays done (resume with the retired key)."""
    old_identity = identity_text(old_secret)
    with services.sessions() as session:
        recipients = tier_recipients(session, rotation.tier)
        packages = packages_of(session, rotation.tier)
    for package_id in packages:
        copies = _rewrap_package(services, package_id, rotation.tier, old_identity, recipients)
        if copies:
            rotation.packages += 1
            rotation.copies += copies
            steps.reached("rewrapped")
        if progress is not None:
            progress(package_id, copies)
    return rotation


def _rewrap_package(
    services: Services, package_id: str, tier: str, old_identity: str, recipients: list[str]
) -> int:
    def choose(state: dict[str, str], sealed: dict[str, Any], _: Any) -> list[tuple[str, str]]:
        return [
            (logical, content)
            for logical, content in sorted(state.items())
            if content in sealed
            and sealed[content]["tier"] == tier
            and list(sealed[content]["recipients"]) != recipients
        ]

    def write(
        src: Any, dst: Any, entry: dict[str, Any] | None
    ) -> tuple[CopyResult, dict[str, Any]]:
        assert entry is not None
        return rewrap(src, dst, old_identity, recipients), {**entry, "recipients": recipients}

    return _store_again(
        services,
        package_id,
        choose,
        write,
        lambda n: (
            f"{n} encrypted cop{'y' if n == 1 else 'ies'} of the {tier} tier re-wrapped to "
            f"{len(recipients)} recipient(s) ({', '.join(recipients)}) after a key rotation: "
            "headers only, the encrypted contents copied unchanged",
            f"Copies of the {tier} tier re-wrapped to its new key",
        ),
    )


def encrypt_existing(
    services: Services,
    tier: str,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[int, int]:
    """Store again, encrypted to the tier's recipients, every plain copy of a payload file
    of ``tier`` in each package's head (files deposited before the tier had a key), a new
    version per package, each committed; packages already done are skipped, so a run cut
    short is finished by running it again. No key is needed: encrypting takes only the
    recipients. Returns (packages, copies) done.

    The earlier versions keep the plain copies: OCFL keeps every version, and their bytes
    are what the inventories and seals of those versions prove.

    Raises :class:`NotFound` when the tier has no key."""
    check_tier(tier)
    with services.sessions() as session:
        require_key(session, tier)
        recipients = tier_recipients(session, tier)
        packages = list(
            session.execute(
                select(AccessAssignment.package_id)
                .where(AccessAssignment.tier == tier)
                .distinct()
                .order_by(AccessAssignment.package_id)
            ).scalars()
        )
    done_packages = done_copies = 0
    for package_id in packages:
        with services.sessions() as session:
            pkg = session.get(Package, package_id)
            if pkg is None:
                continue
            rules = rules_from_rows(package_id, "", access_rows(session, package_id))

        def choose(
            state: dict[str, str], sealed: dict[str, Any], _: Any, rules: Any = rules
        ) -> list[tuple[str, str]]:
            return [
                (logical, content)
                for logical, content in sorted(state.items())
                if logical.startswith("bag/data/")
                and content not in sealed
                and effective_tier(logical.removeprefix("bag/"), rules.assignments) == tier
            ]

        def write(
            src: Any, dst: Any, _: dict[str, Any] | None
        ) -> tuple[CopyResult, dict[str, Any]]:
            done = encrypt_copy(src, dst, recipients)
            return done.stored, {
                "tier": tier,
                "size": done.plain.size,
                "sha512": done.plain.digests["sha512"],
                "sha256": done.plain.digests["sha256"],
                "recipients": list(recipients),
            }

        copies = _store_again(
            services,
            package_id,
            choose,
            write,
            lambda n: (
                f"{n} plain cop{'y' if n == 1 else 'ies'} of the {tier} tier stored again "
                f"encrypted (age-encryption.org/v1) to {len(recipients)} recipient(s) "
                f"({', '.join(recipients)}); the earlier versions keep the plain copies",
                f"Copies of the {tier} tier stored again encrypted",
            ),
            check_plain=True,
        )
        if copies:
            done_packages += 1
            done_copies += copies
            steps.reached("encrypted")
        if progress is not None:
            progress(package_id, copies)
    return done_packages, done_copies


Choose = Callable[[dict[str, str], dict[str, Any], Any], list[tuple[str, str]]]
Write = Callable[[Any, Any, "dict[str, Any] | None"], tuple[CopyResult, dict[str, Any]]]


def _store_again(
    services: Services,
    package_id: str,
    choose: Choose,
    write: Write,
    describe: Callable[[int], tuple[str, str]],
    *,
    check_plain: bool = False,
) -> int:
    """A new version of the package holding a new copy (``write``: from the stored one to
    the new one, with its ``custos/encrypted.json`` entry) of each head file ``choose``
    picks, beside the copies it replaces; recorded in the catalog with an ``encryption``
    event (``describe``: its detail and the version's message). ``check_plain``: each new
    entry's plain sha512 must be the replaced copy's own (a plain copy encrypted)."""
    with services.sessions() as session:
        rel = session.execute(
            select(Package.object_path).where(Package.id == package_id)
        ).scalar_one()
    obj = services.primary.object(rel)
    inventory = obj.inventory()
    sealed = sealed_files(obj, inventory)
    state = ocfl.head_state(inventory)
    chosen = choose(state, sealed, inventory)
    if not chosen:
        return 0
    digest_of = {p: d for d, ps in inventory["manifest"].items() for p in ps}
    number = ocfl.version_number(inventory["head"]) + 1
    scratch = services.store.staging / f"store-again-{uuid.uuid4().hex}"
    moved: dict[str, tuple[Any, CopyResult]] = {}
    entries = dict(sealed)
    try:
        with writing(scratch):
            scratch.mkdir(parents=True)
        for n, (logical, content) in enumerate(chosen):
            target = scratch / f"{n}.age"
            with obj.open(content) as src, writing(target), open(target, "xb") as dst:
                done, entry = write(src, dst, sealed.get(content))
            if check_plain and entry["sha512"] != digest_of[content]:
                raise StorageError(
                    f"a copy of {package_id} read back with another sha512 than its inventory "
                    "records; nothing of the package was changed",
                    hint="run a fixity check of the package (`custos fixity run`), which "
                    "repairs the copy from a replica, then run this again",
                )
            moved[logical] = (target, done)
            entries[f"v{number}/content/{logical}"] = {**entry, "logical": logical}
        stored = read_access(services, rel)
        detail, message = describe(len(chosen))
        event = new_event(
            "encryption", "success", detail, links=[Link("package", package_id)], agent=AGENT
        )
        body = json.dumps(
            {"format": "age-encryption.org/v1", "files": dict(sorted(entries.items()))},
            indent=1,
            ensure_ascii=False,
        )
        new = append_version(
            services.primary,
            rel,
            {
                ENCRYPTED_JSON: (body + "\n").encode(),
                PREMIS_XML: premis_xml([*stored.events, event]),
            },
            moved=moved,
            message=message,
            agent=AGENT,
            created=clock.local_now(),
        )
        if new.number != number:
            raise StorageError(
                f"{package_id} gained a version while its copies were stored again",
                hint="run the command again: what was done is kept",
            )
        with services.session_scope() as session:
            known = {
                f.logical_path: {
                    "puid": f.puid,
                    "mime_type": f.mime_type,
                    "format_name": f.format_name,
                }
                for f in session.execute(
                    select(File).where(
                        File.package_id == package_id,
                        File.content_path.in_([c for _, c in chosen]),
                    )
                ).scalars()
            }
            catalog_version(
                session,
                package_id,
                new,
                message=message,
                agent=AGENT,
                formats=known,
                sealed=entries,
            )
            record_events(session, [event], package_id=package_id)
            run_index_hooks(session, package_id)
        finish(services.store, new)
    finally:
        services.store.discard(scratch)
    return len(chosen)
