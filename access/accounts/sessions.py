"""Sessions: one TOTP code for many requests, for a short time.

Each TOTP code is accepted once (:mod:`access.accounts.totp`), so a registrar's client that sent a
new code with every request could make one second-factor request per 30 seconds. Instead it starts a
session (``POST /auth/sessions``) with its API token and one fresh code, and gets a session token
(``custos_session_<secret>``, shown once) that stands for the user, *with* the second factor
verified at the start, until the session expires (``auth.session_minutes``) or ends: ended by its
client (``DELETE /auth/sessions/current``), or every session of a user at once when the user is
disabled or given a new token or TOTP secret (:func:`end_user_sessions`, called by
:mod:`access.accounts.users`).

A session never raises a role: it carries the user's role and whether a second factor was
verified when it started, nothing more. Roles that need no second factor may start one too;
it grants what their API token grants. A session token cannot start another session (that
would make a session last for ever on one code): a new one needs the API token and a new code.

A session token that is unknown, expired or ended, or whose user is disabled, is refused with
the words a wrong API token gets (:data:`access.decisions.rules.BAD_CREDENTIALS`): nothing tells the
cases apart. A TOTP code sent with a session token is not read (the session already carries
the second factor), so it is neither checked nor used up.

Starting and ending are ``user session`` custody events (the session's id, the user, the
role, the client address, the expiry, why it ended); never the token or its hash. A session
that simply runs out records no end: its start event says until when it lasted.

Raises :class:`AuthenticationFailed` for a session token that is not valid,
:class:`SecondFactorRequired` for a session started without the code the role needs,
:class:`InputRejected` for a session started with a session token or ended without one,
:class:`TooManyAttempts` when the user holds ``auth.sessions_per_user`` live sessions.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from access.decisions.rules import (
    BAD_CREDENTIALS,
    BAD_CREDENTIALS_HINT,
    Principal,
    needs_second_factor,
)
from archive import clock
from archive.catalog.tables import AuthSession, User
from archive.config import AuthSettings
from archive.custody import new_event, record_events
from archive.errors import (
    AuthenticationFailed,
    InputRejected,
    SecondFactorRequired,
    TooManyAttempts,
)
from archive.findings import Finding
from archive.model import EventRecord, Link
from policies.schema import AccessPolicy

#: The public prefix of every session token (an API token is ``custos_<hex id>_<secret>``).
SESSION_PREFIX = "custos_session_"
_SESSION_TOKEN = re.compile(r"^custos_session_[A-Za-z0-9_-]{43}$")
#: Why a session ended when its client ended it (``auth_sessions.ended_reason``).
BY_CLIENT = "ended by its client"
#: The agent of an event whose operator is not known.
AGENT = "Custos"

log = logging.getLogger("custos.access")


def is_session_token(value: str) -> bool:
    """Whether ``value`` has the form of a session token (and not of an API token)."""
    return value.strip().startswith(SESSION_PREFIX)


def _digest(token: str) -> str:
    # SHA-256, not argon2 as for API tokens: a slow, salted hash protects secrets that can be
    # guessed (passwords, or anything with few bits) from a stolen catalog. A session token
    # is 256 random bits (``secrets.token_urlsafe(32)``): no guess is ever worth trying, so a
    # fast hash hides it as well as a slow one, lets the row be found by an index on the
    # hash, and costs nothing per request (a salted hash could not be looked up at all).
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    """What ``POST /auth/sessions`` shows once: the token, and until when it works."""

    id: str
    token: str
    name: str
    role: str
    second_factor: bool
    expires_at: datetime
    lifetime_seconds: int

    def as_dict(self) -> dict[str, object]:
        return {
            "session": self.id,
            "token": self.token,
            "user": self.name,
            "role": self.role,
            "second_factor": self.second_factor,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
            "expires_in": self.lifetime_seconds,
        }


def start_session(
    db: Session,
    who: Principal,
    *,
    policy: AccessPolicy,
    auth: AuthSettings,
    address: str,
) -> NewSession:
    """Start a session for ``who``, authenticated for this request by their API token (and,
    for roles the policy asks a second factor of, a code verified for it). The caller commits.

    Raises :class:`InputRejected` when ``who`` came with a session token,
    :class:`SecondFactorRequired` without the code the role needs, :class:`TooManyAttempts`
    when the user holds ``auth.sessions_per_user`` live sessions,
    :class:`AuthenticationFailed` if the user is gone or disabled meanwhile."""
    if who.session is not None:
        raise InputRejected(
            "a session cannot start another session",
            [
                Finding(
                    "SESSION-FROM-SESSION",
                    "error",
                    "start a session with your API token (and a new TOTP code), not a "
                    "session token",
                    "Authorization",
                )
            ],
            hint="send `Authorization: Bearer <API token>` and, for registrars, the current "
            "code in X-Custos-TOTP",
        )
    if needs_second_factor(policy, who.role) and not who.second_factor:
        raise SecondFactorRequired(
            f"a session of the {who.role} role starts with a second factor",
            hint="send the current 6-digit TOTP code in the X-Custos-TOTP header with your "
            "API token; the session then needs no code until it expires",
        )
    user = db.execute(select(User).where(User.name == who.name)).scalar_one_or_none()
    if user is None or not user.active:
        raise AuthenticationFailed(BAD_CREDENTIALS, hint=BAD_CREDENTIALS_HINT)
    now = clock.now()
    live = db.execute(
        select(func.count(), func.min(AuthSession.expires_at)).where(
            AuthSession.user_id == user.id,
            AuthSession.ended_at.is_(None),
            AuthSession.expires_at > now,
        )
    ).one()
    if live[0] >= auth.sessions_per_user:
        first_end = live[1]
        wait = int((first_end - now).total_seconds()) + 1 if first_end is not None else 60
        raise TooManyAttempts(
            f"this user holds {live[0]} live sessions, the most allowed (auth.sessions_per_user)",
            retry_after=max(wait, 1),
            hint="end a session you no longer use (DELETE /auth/sessions/current with its "
            "token), or wait until the time in Retry-After",
        )
    secret = secrets.token_urlsafe(32)  # 256 bits
    token = SESSION_PREFIX + secret
    lifetime = timedelta(minutes=auth.session_minutes)
    row = AuthSession(
        id=str(uuid.uuid4()),
        token_sha256=_digest(token),
        user_id=user.id,
        second_factor=who.second_factor,
        client_address=_address(address),
        created_at=now,
        expires_at=now + lifetime,
    )
    db.add(row)
    db.flush()
    factor = "with a second factor (TOTP)" if who.second_factor else "without a second factor"
    until = _text(row.expires_at)
    record_events(
        db,
        [
            _event(
                f"session {row.id} of user {user.name} ({_role(user)}) started {factor} from "
                f"{row.client_address}; expires {until}",
                user.name,
                agent=f"{user.role} {user.name}",
            )
        ],
    )
    log.info("session %s of user %s started from %s until %s", row.id, user.name, address, until)
    return NewSession(
        row.id,
        token,
        user.name,
        user.role,
        who.second_factor,
        row.expires_at,
        int(lifetime.total_seconds()),
    )


def session_principal(db: Session, token: str) -> Principal:
    """The reader a session token stands for: the user, with the second factor the session
    started with. Raises :class:`AuthenticationFailed` (the words a wrong API token gets) for
    a token that is malformed, unknown, expired or ended, or whose user is disabled."""
    value = token.strip()
    found = (
        db.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_sha256 == _digest(value))
        ).first()
        if _SESSION_TOKEN.match(value)
        else None
    )
    if found is None:
        raise AuthenticationFailed(BAD_CREDENTIALS, hint=BAD_CREDENTIALS_HINT)
    row, user = found
    if row.ended_at is not None or row.expires_at <= clock.now() or not user.active:
        raise AuthenticationFailed(BAD_CREDENTIALS, hint=BAD_CREDENTIALS_HINT)
    return Principal(user.name, user.role, user.organisation, row.second_factor, row.id)


def end_session(db: Session, who: Principal, *, address: str) -> datetime:
    """End the session ``who`` came with (``DELETE /auth/sessions/current``); return when.
    The caller commits. Raises :class:`InputRejected` for a request made with an API token,
    :class:`AuthenticationFailed` if the session ended meanwhile."""
    if who.session is None:
        raise InputRejected(
            "no session to end",
            [
                Finding(
                    "SESSION-NONE",
                    "error",
                    "this request was made with an API token, not a session token",
                    "Authorization",
                )
            ],
            hint="send `Authorization: Bearer <session token>` with the token that "
            "POST /auth/sessions gave; an API token is withdrawn by an administrator "
            "(custos users disable|token)",
        )
    now = clock.now()
    ended = _end(db, AuthSession.id == who.session, now=now, reason=BY_CLIENT)
    if not ended:
        raise AuthenticationFailed(BAD_CREDENTIALS, hint=BAD_CREDENTIALS_HINT)
    record_events(
        db,
        [
            _event(
                f"session {ended[0][0]} of user {who.name} (role {who.role}) ended: {BY_CLIENT} "
                f"from {_address(address)}; it would have expired {_text(ended[0][1])}",
                who.name,
                agent=who.agent,
            )
        ],
    )
    log.info("session %s of user %s ended by its client", who.session, who.name)
    return now


def end_user_sessions(db: Session, user: User, *, reason: str, by: str | None) -> int:
    """End every live session of ``user`` (disabled, or given a new token or TOTP secret),
    one ``user session`` event each, naming ``by`` (the operator, where known) and
    ``reason``. The caller commits. Returns how many ended."""
    ended = _end(db, AuthSession.user_id == user.id, now=clock.now(), reason=reason)
    record_events(
        db,
        [
            _event(
                f"session {sid} of user {user.name} ({_role(user)}) ended: {reason}; "
                f"by {by or 'an operator not named'}; it would have expired {_text(expires)}",
                user.name,
                agent=by or AGENT,
            )
            for sid, expires in ended
        ],
    )
    if ended:
        log.warning("%d session(s) of user %s ended: %s", len(ended), user.name, reason)
    return len(ended)


def _end(
    db: Session, which: ColumnElement[bool], *, now: datetime, reason: str
) -> list[tuple[str, datetime]]:
    """Mark the live sessions ``which`` selects ended; return their ids and expiry times."""
    rows = db.execute(
        update(AuthSession)
        .where(which, AuthSession.ended_at.is_(None), AuthSession.expires_at > now)
        .values(ended_at=now, ended_reason=reason)
        .returning(AuthSession.id, AuthSession.expires_at)
    ).all()
    return [(sid, expires) for sid, expires in rows]


def _event(detail: str, user: str, *, agent: str) -> EventRecord:
    return new_event("user session", "success", detail, links=[Link("user", user)], agent=agent)


def _role(user: User) -> str:
    return f"role {user.role}" + (f" of {user.organisation}" if user.organisation else "")


def _address(address: str) -> str:
    return address[:255] or "unknown"


def _text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
