"""The depositors the archive knows: the organisations that hand holdings over.

A depositor is registered on purpose (``custos depositors add``; ``custos ingest
--new-depositor`` for a first deposit; ``custos users add --role depositor
--new-organisation``), never by a deposit that names it: a misspelt name would otherwise
become a depositor of its own, and a facet of the reading room. Ingest and user
administration refuse a name that is not registered (:func:`require_registered`, finding
``DEPOSITOR-UNKNOWN``), naming the registered names close to it. Registering is a
``depositor administration`` custody event naming who did it and why.

Names are compared as written. Two names differing only in case or spaces are one
depositor: registering the second is refused (``DEPOSITOR-REGISTERED-AS``, naming the
first), and the close matches of a refusal list it first.

The catalog is an index of storage: each object's ``custos/deposit.json`` names its
depositor, and indexing the object (a new deposit, a recovered one, ``custos catalog
rebuild``) writes the depositor's row if the catalog lacks it
(:func:`archive.catalog.index.depositor_id`): that restores a registration, it does not make
one. A depositor registered without a deposit exists only in the catalog, as users do.

Raises :class:`InputRejected` for an unusable name, a name not registered, or a name
registered under another spelling. The caller commits.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive.catalog.tables import Deposit, Depositor, Package
from archive.catalog.upsert import insert_if_absent
from archive.custody import new_event, record_events
from archive.errors import InputRejected
from archive.findings import Finding
from archive.model import Link

#: The agent of a registration whose operator is not known.
AGENT = "Custos"
#: How many registered names a refusal suggests, and how alike they must be (difflib's ratio).
MATCHES = 3
CUTOFF = 0.6


@dataclass(frozen=True, slots=True)
class Registration:
    """What registering a name did: ``created`` false when it was registered already.
    ``similar``: other registered names close to it (a typo is worth a second look)."""

    name: str
    created: bool
    registered_at: datetime
    similar: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DepositorSummary:
    name: str
    registered_at: datetime
    deposits: int
    packages: int


def check_name(name: str, *, where: str = "--depositor") -> str:
    """The name without surrounding spaces; raises :class:`InputRejected` (``DEPOSITOR-NAME``)
    unless it is 1 to 255 printable characters. ``where`` names the option that gave it."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 255 or not cleaned.isprintable():
        raise InputRejected(
            f"depositor name {name!r} is not usable",
            [Finding("DEPOSITOR-NAME", "error", "1 to 255 printable characters", where)],
            hint=f"give {where} the organisation's name",
        )
    return cleaned


def fold(name: str) -> str:
    """The key two spellings of one name share: case and runs of spaces do not count."""
    return " ".join(name.split()).casefold()


def registered_names(session: Session) -> list[str]:
    return list(session.execute(select(Depositor.name).order_by(Depositor.name)).scalars())


def close_matches(name: str, known: Iterable[str], *, n: int = MATCHES) -> list[str]:
    """The registered names most like ``name``, best first (difflib, on the folded names, so
    a difference of case or spaces alone is the best match there is); never ``name`` itself."""
    by_key: dict[str, list[str]] = {}
    for k in known:
        if k != name:
            by_key.setdefault(fold(k), []).append(k)
    hits = difflib.get_close_matches(fold(name), list(by_key), n=n, cutoff=CUTOFF)
    return [k for key in hits for k in sorted(by_key[key])][:n]


def is_registered(session: Session, name: str) -> bool:
    found = session.execute(select(Depositor.id).where(Depositor.name == name)).scalar()
    return found is not None


def shell_word(text: str) -> str:
    """``text`` as one word of a POSIX shell command line, in double quotes."""
    escaped = "".join("\\" + c if c in '"\\$`' else c for c in text)
    return f'"{escaped}"'


def unknown_finding(name: str, similar: list[str], *, where: str) -> Finding:
    """The ``DEPOSITOR-UNKNOWN`` finding for ``name``, at ``where`` (the option or field that
    gave it), naming ``similar``: the registered names close to it (:func:`close_matches`)."""
    return Finding(
        "DEPOSITOR-UNKNOWN",
        "error",
        f"no depositor named {name!r} is registered"
        + (
            "; registered depositors with a close name: " + ", ".join(repr(s) for s in similar)
            if similar
            else "; no registered depositor has a close name"
        ),
        where,
    )


def register_hint(name: str, *, option: str, similar: Iterable[str] = ()) -> str:
    """What to do about a name that is not registered: give the registered spelling, or
    register it (``option`` is the flag of the command at hand that registers it)."""
    first = next(iter(similar), None)
    meant = f"if you meant {first!r}, give that name as registered; " if first else ""
    return (
        f"{meant}if {name!r} is a new depositor, register it first with "
        f"`custos depositors add {shell_word(name)}`, or add {option} to this command "
        "(`custos depositors list` shows the registered depositors)"
    )


def require_registered(session: Session, name: str, *, where: str, option: str) -> None:
    """Raise :class:`InputRejected` (``DEPOSITOR-UNKNOWN``) unless ``name`` is registered.

    The message and the finding name the registered names close to it; the hint says how to
    register it (``option``: the flag of the calling command that does)."""
    if is_registered(session, name):
        return
    similar = close_matches(name, registered_names(session))
    raise InputRejected(
        f"depositor {name!r} is not registered"
        + (f" (did you mean {' or '.join(repr(s) for s in similar)}?)" if similar else ""),
        [unknown_finding(name, similar, where=where)],
        hint=register_hint(name, option=option, similar=similar),
    )


def register(
    session: Session, name: str, *, by: str | None = None, reason: str = "", where: str = "NAME"
) -> Registration:
    """Register ``name`` as a depositor, unless it is registered already (then nothing
    changes: ``created`` is false). A new registration is a ``depositor administration``
    custody event naming ``by`` (the operator, where known), the depositor and ``reason``.

    Raises :class:`InputRejected`: ``DEPOSITOR-NAME`` for an unusable name,
    ``DEPOSITOR-REGISTERED-AS`` when the name differs from a registered one only in case or
    spaces (``where`` names the option that gave it). Two processes registering one name at
    once make one row and one event. The caller commits."""
    name = check_name(name, where=where)
    known = registered_names(session)
    twins = [k for k in known if fold(k) == fold(name) and k != name]
    if twins and name not in known:
        raise InputRejected(
            f"depositor {name!r} is registered as {twins[0]!r}",
            [
                Finding(
                    "DEPOSITOR-REGISTERED-AS",
                    "error",
                    f"registered as {twins[0]!r}: names differing only in case or spaces are "
                    "one depositor",
                    where,
                )
            ],
            hint=f"give the name as registered: {shell_word(twins[0])}",
        )
    at = datetime.now(UTC)
    created = insert_if_absent(session, Depositor, {"name": name, "created_at": at}, key=["name"])
    if created:
        why = " ".join(reason.split()) or "none stated"
        record_events(
            session,
            [
                new_event(
                    "depositor administration",
                    "success",
                    f"depositor {name} registered; by {by or 'an operator not named'}; "
                    f"reason: {why}",
                    links=[Link("depositor", name)],
                    agent=by or AGENT,
                )
            ],
        )
    else:
        at = session.execute(
            select(Depositor.created_at).where(Depositor.name == name)
        ).scalar_one()
    return Registration(name, created, at, tuple(close_matches(name, known)))


def list_depositors(session: Session) -> list[DepositorSummary]:
    """Every registered depositor, by name, with its number of deposits and of packages."""
    deposits = (
        select(func.count(Deposit.id)).where(Deposit.depositor_id == Depositor.id).scalar_subquery()
    )
    packages = (
        select(func.count(Package.id)).where(Package.depositor_id == Depositor.id).scalar_subquery()
    )
    rows = session.execute(
        select(Depositor.name, Depositor.created_at, deposits, packages).order_by(Depositor.name)
    )
    return [DepositorSummary(name, at, d or 0, p or 0) for name, at, d, p in rows]
