"""Tier keys that no single person holds: made, shared out, opened together, locked.

``custos keys init`` makes a tier's age identity, splits its secret into SLIP-39 share
mnemonics (:mod:`access.keys.shares`), one per registrar, and keeps only the recipient (the
public key) in the catalog (:class:`~archive.catalog.tables.TierKey`). The shares are handed
out once and kept nowhere by the archive. ``custos keys reshare`` makes a new set from enough
shares of the old one (a share lost or a registrar gone); the old set still opens the key, so
its shares are to be destroyed.

Opening a tier's key for reading (:func:`present_share`, ``POST /registrar/keys/unlock``):
each registrar, with their second factor, presents their share and the purpose of the
opening; once ``threshold`` different registrars have presented shares of the current set
for one purpose, the identity is rebuilt and held in this process's
:class:`~archive.keyring.KeyRing` for ``keys.unlock_minutes``, then dropped. A registrar's
second share does not count, nor does a share of another set.

Every step is a custody event (``key administration``, ``key custody``) naming the tier,
the recipient, the registrars and the purpose, never a share, a secret or an identity.
Services take a session and never commit; the shell owns the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyrage
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.decisions.rules import Principal
from access.keys.shares import (
    ShareSet,
    check_counts,
    identity_of,
    new_secret,
    read_share,
    recipient_of,
    recover,
    split,
)
from archive import clock
from archive.catalog.tables import TierKey
from archive.custody import new_event, record_events
from archive.errors import InputRejected, NotFound
from archive.findings import Finding
from archive.keyring import KeyRing, Opened, Waiting
from archive.model import EventRecord, Link
from policies.schema import AccessPolicy
from policies.vocabulary import TIERS, is_tier

#: Tiers whose copies may be encrypted: public material never is.
KEYED_TIERS = tuple(t for t in TIERS if t != "public")


def _reject(code: str, message: str, where: str, hint: str) -> InputRejected:
    return InputRejected(message, [Finding(code, "error", message, where)], hint=hint)


def check_tier(tier: str, where: str = "--tier") -> None:
    if not is_tier(tier) or tier not in KEYED_TIERS:
        raise _reject(
            "KEY-TIER",
            f"{tier!r} is not a tier whose copies are encrypted",
            where,
            f"name one of {', '.join(KEYED_TIERS)} (public material is never encrypted)",
        )


def _link(tier: str) -> Link:
    return Link("tier", tier, "key")


def event_of(type_: str, detail: str, tier: str, agent: str) -> EventRecord:
    return new_event(type_, "success", detail, links=[_link(tier)], agent=agent)


def own_key(session: Session, tier: str) -> TierKey | None:
    """The tier's own key (split into shares) in use, if one was made."""
    return session.execute(
        select(TierKey).where(
            TierKey.tier == tier, TierKey.kind == "shares", TierKey.retired_at.is_(None)
        )
    ).scalar_one_or_none()


def require_key(session: Session, tier: str, where: str = "--tier") -> TierKey:
    key = own_key(session, tier)
    if key is None:
        raise NotFound(
            f"the {tier} tier has no key",
            hint=f"a custodian makes one with `custos keys init --tier {tier}`",
        )
    return key


@dataclass(frozen=True, slots=True)
class NewShares:
    """A tier's key and a new set of its shares: the mnemonics are for the registrars, once."""

    tier: str
    recipient: str
    shares: ShareSet

    def as_dict(self) -> dict[str, Any]:  # never the mnemonics
        return {
            "tier": self.tier,
            "recipient": self.recipient,
            "shares": len(self.shares.mnemonics),
            "threshold": self.shares.threshold,
            "share_set": self.shares.share_set,
        }


def init_key(
    session: Session,
    *,
    tier: str,
    shares: int,
    threshold: int,
    by: str,
    hand_out: Callable[[NewShares], None],
    policy: AccessPolicy | None = None,
) -> NewShares:
    """Make the tier's key and split it into ``shares`` shares, ``threshold`` of which open it.
    ``hand_out`` gives the shares to the registrars before anything is written (a terminal
    may show them for minutes: the catalog is not held meanwhile); if it raises, nothing is
    recorded.

    Raises :class:`InputRejected`: ``KEY-TIER`` for public or an unknown tier, ``KEY-SHARES``
    for counts that do not split a key, ``KEY-EXISTS`` when the tier has a key already,
    ``KEY-TIER-PLAIN`` for ``restricted`` while ``policy`` does not encrypt it."""
    check_tier(tier)
    if tier == "restricted" and policy is not None and not policy.tiers.restricted.encrypt_at_rest:
        raise _reject(
            "KEY-TIER-PLAIN",
            f"the access policy ({policy.label}) does not store restricted files encrypted: "
            "a key would be used for nothing",
            "--tier",
            "set encrypt_at_rest = true under [tiers.restricted] in a new version of "
            "access.toml first (or make the key of protected-identity)",
        )
    check_counts(shares, threshold)
    held = own_key(session, tier)
    if held is not None:
        raise _reject(
            "KEY-EXISTS",
            f"the {tier} tier has a key already (recipient {held.recipient})",
            "--tier",
            "`custos keys status` shows it; `custos keys reshare` makes new shares of it",
        )
    new = make_key(session, tier=tier, shares=shares, threshold=threshold, by=by, hand_out=hand_out)
    record_events(
        session,
        [
            event_of(
                "key administration",
                f"key of the {tier} tier made: recipient {new.recipient}; split into {shares} "
                f"shares (set {new.shares.share_set}), any {threshold} of which open it; by "
                f"{by}",
                tier,
                by,
            )
        ],
    )
    return new


def make_key(
    session: Session,
    *,
    tier: str,
    shares: int,
    threshold: int,
    by: str,
    hand_out: Callable[[NewShares], None],
) -> NewShares:
    """A new key for ``tier``, its shares handed out (``hand_out``) before its row is added
    to the session; the secret is dropped once split. The caller records the event."""
    secret = new_secret()
    made = split(secret, shares=shares, threshold=threshold)
    new = NewShares(tier, recipient_of(secret), made)
    del secret
    hand_out(new)
    session.add(
        TierKey(
            tier=tier,
            recipient=new.recipient,
            kind="shares",
            holder="",
            shares=shares,
            threshold=threshold,
            share_set=made.share_set,
            created_at=clock.now(),
            created_by=by,
            last_opened="",
        )
    )
    return new


def reshare(
    session: Session,
    *,
    tier: str,
    presented: Sequence[tuple[str, str]],
    shares: int,
    threshold: int,
    by: str,
    hand_out: Callable[[NewShares], None],
) -> NewShares:
    """A new set of shares of the tier's key, from ``presented`` shares of the current set
    (``(where, words)`` each), handed out (``hand_out``) before anything is written. The key
    stays the same; the old set still opens it.

    Raises :class:`NotFound` when the tier has no key, :class:`InputRejected` for shares that
    do not open it (``KEY-SHARE-*``, ``KEY-SHARES-TOO-FEW``, ``KEY-WRONG``)."""
    check_tier(tier)
    check_counts(shares, threshold)
    key = require_key(session, tier)
    secret = open_secret(key, presented)
    made = split(secret, shares=shares, threshold=threshold)
    del secret
    new = NewShares(tier, key.recipient, made)
    hand_out(new)
    old = key.share_set
    key.shares, key.threshold, key.share_set = shares, threshold, made.share_set
    record_events(
        session,
        [
            event_of(
                "key administration",
                f"new shares of the {tier} tier's key (recipient {key.recipient}): {shares} "
                f"shares (set {made.share_set}), any {threshold} of which open it, made from "
                f"{len(presented)} shares of set {old}, which still open it until they are "
                f"destroyed; by {by}",
                tier,
                by,
            )
        ],
    )
    return new


def add_recipient(
    session: Session, *, tier: str, recipient: str, holder: str, by: str
) -> KeyStatus:
    """Escrow the tier to another institution's age recipient (``holder``'s public key):
    copies encrypted to the tier from now on can be opened with that institution's identity
    too, with none of the registrars' shares (a successor archive, a court's own archive).

    Raises :class:`NotFound` when the tier has no key of its own yet; :class:`InputRejected`:
    ``KEY-RECIPIENT`` for text that is not an age X25519 recipient (a secret key pasted by
    mistake is refused without being repeated), ``KEY-HOLDER`` for a missing holder,
    ``KEY-RECIPIENT-HELD`` for a recipient the tier has already."""
    check_tier(tier)
    recipient = recipient.strip()
    if recipient.upper().startswith("AGE-SECRET-KEY-"):
        raise _reject(
            "KEY-RECIPIENT",
            "that is an age secret key, not a recipient: it was not kept, and it is no longer "
            "secret to whoever saw it",
            "--recipient",
            "give the public key (`age-keygen -y KEYFILE` prints it, age1…); have the "
            "institution make a new key if the secret key was shown to anyone",
        )
    try:
        pyrage.x25519.Recipient.from_str(recipient)
    except pyrage.RecipientError as exc:
        raise _reject(
            "KEY-RECIPIENT",
            f"{recipient[:80]!r} is not an age X25519 recipient ({exc})",
            "--recipient",
            "give the institution's public key as `age-keygen` printed it: age1… (62 characters)",
        ) from None
    holder = " ".join(holder.split())
    if not holder or len(holder) > 500 or not holder.isprintable():
        raise _reject(
            "KEY-HOLDER",
            "the institution holding the recipient's identity must be named",
            "--holder",
            "name it, e.g. --holder 'Successor Archive of the Special Tribunal'",
        )
    require_key(session, tier)
    held = session.execute(
        select(TierKey).where(TierKey.tier == tier, TierKey.recipient == recipient)
    ).scalar_one_or_none()
    if held is not None:
        raise _reject(
            "KEY-RECIPIENT-HELD",
            f"the {tier} tier has recipient {recipient} already"
            + (f" (held by {held.holder})" if held.holder else " (its own key)"),
            "--recipient",
            "`custos keys status` lists the tier's recipients",
        )
    at = clock.now()
    row = TierKey(
        tier=tier,
        recipient=recipient,
        kind="escrow",
        holder=holder,
        created_at=at,
        created_by=by,
        last_opened="",
    )
    session.add(row)
    record_events(
        session,
        [
            event_of(
                "key administration",
                f"recipient {recipient} of {holder} added to the {tier} tier (escrow): copies "
                f"encrypted to the tier from now on open with that institution's key too; "
                f"by {by}",
                tier,
                by,
            )
        ],
    )
    session.flush()
    (status,) = [k for k in key_status(session) if k.recipient == recipient and k.tier == tier]
    return status


def open_secret(key: TierKey, presented: Sequence[tuple[str, str]]) -> bytes:
    """The secret of ``key`` from shares of its current set; raises :class:`InputRejected`."""
    for where, words in presented:
        if read_share(words, where=where).share_set != key.share_set:
            raise _stale_share(key, where)
    secret = recover(presented)
    if recipient_of(secret) != key.recipient:
        raise _reject(
            "KEY-WRONG",
            f"the shares open a key that is not the {key.tier} tier's",
            "shares",
            "give shares of the tier's current set",
        )
    return secret


def _stale_share(key: TierKey, where: str) -> InputRejected:
    return _reject(
        "KEY-SHARE-SET",
        f"{where} is not a share of the {key.tier} tier's current set (set {key.share_set})",
        where,
        "give a share of the set made last (`custos keys status` names it); shares of an "
        "older set, or of another tier, do not count",
    )


@dataclass(frozen=True, slots=True)
class KeyStatus:
    tier: str
    recipient: str
    kind: str
    holder: str
    shares: int | None
    threshold: int | None
    share_set: int | None
    created_at: datetime
    created_by: str
    open_until: datetime | None
    opened_by: tuple[str, ...]
    purpose: str | None
    waiting: int
    last_opened_at: datetime | None
    last_opened: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "recipient": self.recipient,
            "kind": self.kind,
            "holder": self.holder,
            "shares": self.shares,
            "threshold": self.threshold,
            "share_set": self.share_set,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "open_until": self.open_until.isoformat() if self.open_until else None,
            "opened_by": list(self.opened_by),
            "purpose": self.purpose,
            "shares_waiting": self.waiting,
            "last_opened_at": self.last_opened_at.isoformat() if self.last_opened_at else None,
            "last_opened_by": self.last_opened,
        }


def key_status(session: Session, keyring: KeyRing | None = None) -> list[KeyStatus]:
    """Every tier key in use (own and escrow), with whether it is open in this process."""
    rows = session.execute(
        select(TierKey).where(TierKey.retired_at.is_(None)).order_by(TierKey.tier, TierKey.id)
    ).scalars()
    out = []
    for k in rows:
        opened = keyring.opened(k.tier) if keyring and k.kind == "shares" else None
        waiting = keyring.waiting(k.tier) if keyring and k.kind == "shares" else None
        out.append(
            KeyStatus(
                k.tier,
                k.recipient,
                k.kind,
                k.holder,
                k.shares,
                k.threshold,
                k.share_set,
                k.created_at,
                k.created_by,
                opened.until if opened else None,
                opened.by if opened else (),
                opened.purpose if opened else None,
                len(waiting.shares) if waiting else 0,
                k.last_opened_at,
                k.last_opened,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Unlock:
    """Where an opening stands after a share: ``presented`` of ``threshold`` so far."""

    tier: str
    purpose: str
    presented: int
    threshold: int
    by: tuple[str, ...]
    open_until: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "purpose": self.purpose,
            "presented": self.presented,
            "threshold": self.threshold,
            "registrars": list(self.by),
            "unlocked": self.open_until is not None,
            "open_until": self.open_until.isoformat() if self.open_until else None,
        }


def _check_purpose(purpose: str, policy: AccessPolicy, where: str) -> None:
    if purpose not in policy.purposes:
        raise _reject(
            "KEY-PURPOSE",
            f"{purpose!r} is not a purpose the access policy declares",
            where,
            f"name one of {', '.join(sorted(policy.purposes))}",
        )


def present_share(
    session: Session,
    keyring: KeyRing,
    who: Principal,
    *,
    tier: str,
    share: str,
    purpose: str,
    policy: AccessPolicy,
    minutes: int,
) -> Unlock:
    """Count ``who``'s share towards opening the tier's key for ``purpose``; once
    ``threshold`` different registrars have presented one, hold the key open for ``minutes``.

    Raises :class:`NotFound` when the tier has no key; :class:`InputRejected` for a purpose the
    policy does not declare (``KEY-PURPOSE``), a purpose other than the one shares are waiting
    for (``KEY-PURPOSE-OTHER``), a share that does not read or is not of the current set, a
    registrar's second share (``KEY-SHARE-SAME-REGISTRAR``), a share presented already
    (``KEY-SHARE-DUPLICATE``), or shares that open another key (``KEY-WRONG``: the shares
    waiting are dropped). Nothing refused counts."""
    record_lapsed(session, keyring)
    check_tier(tier, "tier")
    _check_purpose(purpose, policy, "purpose")
    key = require_key(session, tier, "tier")
    assert key.threshold is not None and key.share_set is not None
    where = f"{who.name}'s share"
    read = read_share(share, where=where)
    if read.share_set != key.share_set:
        raise _stale_share(key, where)
    now = clock.now()
    waiting = keyring.waiting(tier)
    if waiting is not None and waiting.share_set != key.share_set:
        waiting = None  # shares of a set replaced since do not count
    if waiting is not None and waiting.purpose != purpose:
        raise _reject(
            "KEY-PURPOSE-OTHER",
            f"shares of the {tier} tier's key are waiting to open it for {waiting.purpose!r}",
            "purpose",
            f"present your share for {waiting.purpose!r}, or wait until "
            f"{waiting.until.isoformat()} for those shares to lapse",
        )
    if waiting is None:
        waiting = Waiting(key.share_set, purpose, now + timedelta(minutes=minutes))
    if who.name in waiting.shares:
        raise _reject(
            "KEY-SHARE-SAME-REGISTRAR",
            f"{who.name} has presented a share already",
            "share",
            f"{key.threshold} different registrars must each present their own share",
        )
    if any(index == read.index for index, _ in waiting.shares.values()):
        raise _reject(
            "KEY-SHARE-DUPLICATE",
            f"{where} was presented already by another registrar",
            "share",
            "each registrar presents the share handed to them",
        )
    shares = {**waiting.shares, who.name: (read.index, share)}
    by = tuple(sorted(shares))
    events = [
        event_of(
            "key custody",
            f"share presented by {who.agent} to open the {tier} tier's key for {purpose}: "
            f"{len(by)} of {key.threshold}",
            tier,
            who.agent,
        )
    ]
    # The events are written (flushed) before the ring changes: a catalog that fails then
    # leaves the share uncounted, never counted without its event.
    if len(by) < key.threshold:
        record_events(session, events)
        session.flush()
        waiting.shares = shares
        keyring.wait(tier, waiting)
        return Unlock(tier, purpose, len(by), key.threshold, by, None)
    try:
        secret = open_secret(key, [(f"{n}'s share", w) for n, (_, w) in shares.items()])
    except InputRejected:
        keyring.forget_waiting(tier)  # shares that open another key: start again
        raise
    until = now + timedelta(minutes=minutes)
    key.last_opened_at = now
    key.last_opened = f"{', '.join(by)} for {purpose}"
    events.append(
        event_of(
            "key custody",
            f"the {tier} tier's key (recipient {key.recipient}) opened for {purpose} by "
            f"{', '.join(by)} until {until.isoformat()}",
            tier,
            who.agent,
        )
    )
    record_events(session, events)
    session.flush()
    keyring.hold(Opened(tier, key.recipient, identity_of(secret), purpose, by, until))
    del secret
    return Unlock(tier, purpose, len(by), key.threshold, by, until)


def open_for_command(
    session: Session,
    keyring: KeyRing,
    *,
    tier: str,
    purpose: str,
    presented: Sequence[tuple[str, str]],
    by: str,
    policy: AccessPolicy,
    minutes: int,
) -> Opened:
    """Open the tier's key in this process, for one command run by an operator (``by``) with
    ``presented`` shares of its current set (``(where, words)``: files or prompts), for
    ``purpose``, for at most ``minutes``. The opening is a ``key custody`` event naming the
    operator, the purpose and the number of shares, never a share.

    Raises :class:`NotFound` when the tier has no key, and :class:`InputRejected` for a
    purpose the policy does not declare (``KEY-PURPOSE``), fewer shares than the threshold
    (``KEY-SHARES-FEW``) and shares that do not open the key (as ``keys reshare`` does)."""
    check_tier(tier)
    _check_purpose(purpose, policy, "--purpose")
    key = require_key(session, tier)
    assert key.threshold is not None
    if len(presented) < key.threshold:
        raise _reject(
            "KEY-SHARES-FEW",
            f"{len(presented)} share(s) given; the {tier} tier's key needs {key.threshold}",
            "--share-file",
            f"give {key.threshold} shares of different registrars (--share-file, once each)",
        )
    secret = open_secret(key, presented)
    now = clock.now()
    until = now + timedelta(minutes=minutes)
    key.last_opened_at = now
    key.last_opened = f"{by}, from the command line, for {purpose}"
    record_events(
        session,
        [
            event_of(
                "key custody",
                f"the {tier} tier's key (recipient {key.recipient}) opened for {purpose} from "
                f"the command line with {len(presented)} shares, for one command, at most "
                f"until {until.isoformat()}",
                tier,
                by,
            )
        ],
    )
    session.flush()
    opened = Opened(tier, key.recipient, identity_of(secret), purpose, (by,), until)
    del secret
    keyring.hold(opened)
    return opened


def lock_key(session: Session, keyring: KeyRing, who: Principal, tier: str) -> bool:
    """Close the tier's key now (and drop shares waiting for it); false if it was not open."""
    record_lapsed(session, keyring)
    check_tier(tier, "tier")
    opened = keyring.close(tier)
    if opened is None:
        return False
    record_events(
        session,
        [
            event_of(
                "key custody",
                f"the {tier} tier's key locked by {who.agent} (open for {opened.purpose} "
                f"since its opening by {', '.join(opened.by)})",
                tier,
                who.agent,
            )
        ],
    )
    return True


def record_lapsed(session: Session, keyring: KeyRing) -> None:
    """One ``key custody`` event for each key dropped because its time was up."""
    lapsed = keyring.lapsed()
    if lapsed:
        record_events(
            session,
            [
                event_of(
                    "key custody",
                    f"the {o.tier} tier's key locked: its time was up at {o.until.isoformat()} "
                    f"(open for {o.purpose} by {', '.join(o.by)})",
                    o.tier,
                    "Custos",
                )
                for o in lapsed
            ],
        )
