"""Users of the API: roles, API tokens kept as argon2 hashes, and TOTP second factors.

A token is shown once, when the user is made: ``custos_<id>_<secret>``. The catalog keeps
``<id>`` (to find the row) and an argon2id hash of the whole token, never the token. Roles
that the access policy asks a second factor of (every row of a role that may read
protected-identity content) get a TOTP secret at creation, also shown once; their requests
carry the current code in the ``X-Custos-TOTP`` header.

Guessing is bounded: :class:`FailureWindow` counts wrong credentials per client address
(in each serving process), and a user's second factor is locked in the catalog after
``auth.totp_attempts`` wrong codes in a row, for ``auth.totp_lockout_minutes``, during which
no code is checked at all (a six-digit code would otherwise fall to a few hours of guessing
with a stolen token). Codes are checked in :mod:`access.accounts.totp`, each accepted once. A leaked
token is withdrawn with :func:`disable_user` or replaced with :func:`replace_token`; both end
every session of the user (:mod:`access.accounts.sessions`) at once. Adding, disabling and replacing
are ``user administration`` custody events (the operator where known, the user, the role, the
reason; never a token, its hash or a TOTP secret).

Raises :class:`AuthenticationFailed` for unknown or wrong credentials (the same words for
both), :class:`SecondFactorRequired` for a missing or wrong code, :class:`TooManyAttempts`
while locked out, :class:`InputRejected` for a bad user definition, :class:`NotFound` for
an unknown user name given to an administration command.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.accounts.sessions import end_user_sessions
from access.accounts.totp import new_secret, provisioning_uri, require_code, reset
from access.decisions.rules import (
    BAD_CREDENTIALS,
    BAD_CREDENTIALS_HINT,
    Principal,
    needs_second_factor,
)
from archive import clock
from archive.catalog.tables import User
from archive.config import AuthSettings
from archive.custody import new_event, record_events
from archive.depositors import (
    Registration,
    close_matches,
    is_registered,
    register,
    register_hint,
    registered_names,
    unknown_finding,
)
from archive.errors import (
    AuthenticationFailed,
    InputRejected,
    NotFound,
    SecondFactorRequired,
    TooManyAttempts,
)
from archive.findings import Finding
from archive.model import Link
from policies.schema import AccessPolicy
from policies.sunset import person_key

#: Roles a user can be given (``anonymous`` is nobody's role: it is the absence of a token).
USER_ROLES = ("researcher", "depositor", "archivist", "registrar")
TOKEN_PREFIX = "custos"  # noqa: S105 - the public prefix of every token, not a secret
_TOKEN = re.compile(r"^custos_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
#: The agent of a user administration event whose operator is not known.
AGENT = "Custos"

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
log = logging.getLogger("custos.access")


@dataclass(frozen=True, slots=True)
class NewUser:
    """What `custos users add` shows once: the token, and for TOTP roles the secret."""

    name: str
    role: str
    organisation: str | None
    token: str
    totp_secret: str | None
    totp_uri: str | None
    #: The organisation's registration, when the user was added with ``new_organisation``.
    registration: Registration | None = None


def add_user(
    session: Session,
    name: str,
    *,
    role: str,
    policy: AccessPolicy,
    organisation: str | None = None,
    new_organisation: bool = False,
    by: str | None = None,
    reason: str = "",
) -> NewUser:
    """Create a user; return the token (and TOTP secret) to show once. The caller commits.

    A depositor's organisation must be a registered depositor (:mod:`archive.depositors`),
    unless ``new_organisation`` registers it with the user (a ``depositor administration``
    event). The creation is a ``user administration`` custody event naming ``by`` (the
    operator, where known), the user, the role and ``reason``. Raises :class:`InputRejected`
    for a bad name, an unknown role, a depositor without an organisation (or another role
    with one), an organisation that is not a registered depositor (``DEPOSITOR-UNKNOWN``,
    naming the registered ones close to it), or a name already taken."""
    problems = []
    if not _NAME.match(name):
        problems.append(
            Finding("USER-NAME", "error", "1 to 128 letters, digits, '.', '_', '@' or '-'", "NAME")
        )
    if role not in USER_ROLES:
        problems.append(
            Finding("USER-ROLE", "error", f"unknown role {role!r}: {', '.join(USER_ROLES)}")
        )
    org = organisation.strip() if organisation else None
    if role == "depositor" and not org:
        problems.append(
            Finding("USER-ORGANISATION", "error", "a depositor is bound to its organisation")
        )
    if role != "depositor" and (org or new_organisation):
        problems.append(
            Finding("USER-ORGANISATION", "error", "only depositors belong to an organisation")
        )
    register_org = ""  # when the organisation is all that is wrong: how to register it
    if role == "depositor" and org and not new_organisation and not is_registered(session, org):
        similar = close_matches(org, registered_names(session))
        problems.append(unknown_finding(org, similar, where="--organisation"))
        register_org = register_hint(org, option="--new-organisation", similar=similar)
    if not problems and any(
        person_key(taken) == person_key(name)
        for taken in session.execute(select(User.name)).scalars()
    ):  # reviews tell registrars apart by this key: two names for one key would be one person
        problems.append(
            Finding(
                "USER-EXISTS",
                "error",
                "a user with this name exists (names differing only in case or spaces are "
                "the same name)",
                name,
            )
        )
    if problems:
        raise InputRejected(
            "user not created",
            problems,
            hint=register_org
            if register_org and len(problems) == 1
            else "custos users add NAME --role researcher|depositor|archivist|registrar "
            "[--organisation ORG for depositors]",
        )
    registration = None
    if role == "depositor" and org and new_organisation:
        registration = register(
            session, org, by=by, reason=f"the organisation of user {name}", where="--organisation"
        )
    token_id, token = _new_token()
    totp_secret = new_secret() if needs_second_factor(policy, role) else None
    session.add(
        User(
            name=name,
            role=role,
            organisation=org,
            token_id=token_id,
            token_hash=_hasher.hash(token),
            totp_secret=totp_secret,
            created_at=clock.now(),
            active=True,
            totp_failures=0,
        )
    )
    session.flush()
    enrolled = "second factor (TOTP) enrolled" if totp_secret else "no second factor"
    _record(session, name, f"added: {_role(role, org)}, {enrolled}", by=by, reason=reason)
    return NewUser(
        name, role, org, token, totp_secret, provisioning_uri(name, totp_secret), registration
    )


def _new_token() -> tuple[str, str]:
    token_id = secrets.token_hex(8)
    return token_id, f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"


def _role(role: str, organisation: str | None) -> str:
    return f"role {role}" + (f" of {organisation}" if organisation else "")


def _record(session: Session, name: str, what: str, *, by: str | None, reason: str) -> None:
    """The custody event of a change to a user: who, the user, the change, why. Never a
    token, its hash or a TOTP secret."""
    why = " ".join(reason.split()) or "none stated"
    record_events(
        session,
        [
            new_event(
                "user administration",
                "success",
                f"user {name} {what}; by {by or 'an operator not named'}; reason: {why}",
                links=[Link("user", name)],
                agent=by or AGENT,
            )
        ],
    )


def _named(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named {name!r}", hint="custos users list shows them")
    return user


def disable_user(session: Session, name: str, *, reason: str, by: str | None = None) -> User:
    """Refuse every request with ``name``'s token from now on (every serving process reads
    the row on each request) and end the user's sessions; a custody event names ``by``, the
    user and the reason (and one more each session ended). The caller commits. Raises
    :class:`NotFound`, :class:`InputRejected` without a reason."""
    why = reason.strip()
    if not why:
        raise InputRejected(
            "user not disabled",
            [Finding("USER-REASON", "error", "say why the user is disabled", "--reason")],
            hint='custos users disable NAME --reason "token seen in a shared mailbox"',
        )
    user = _named(session, name)
    user.active = False
    user.disabled_at = clock.now()
    user.disabled_reason = why
    what = f"({_role(user.role, user.organisation)}) disabled"
    _record(session, user.name, what, by=by, reason=why)
    end_user_sessions(session, user, reason="the user was disabled", by=by)
    log.warning("user %s disabled", user.name)
    return user


def replace_token(
    session: Session,
    name: str,
    *,
    policy: AccessPolicy,
    new_second_factor: bool = False,
    by: str | None = None,
    reason: str = "",
) -> NewUser:
    """Give ``name`` a new token (the old one stops working at once, and every session of
    the user ends) and enable the user if disabled; with ``new_second_factor``, a new TOTP
    secret too (its lock and the last code used go with the old one). A custody event names
    ``by``, the user, what changed and ``reason``. The caller commits. Raises
    :class:`NotFound`."""
    user = _named(session, name)
    token_id, token = _new_token()
    user.token_id, user.token_hash = token_id, _hasher.hash(token)
    enabled = "" if user.active else "; enabled again"
    user.active, user.disabled_at, user.disabled_reason = True, None, None
    secret = None
    if new_second_factor or (user.totp_secret is None and needs_second_factor(policy, user.role)):
        secret = reset(user)
    what = "a new API token" + (" and a new TOTP secret" if secret else "")
    _record(
        session,
        user.name,
        f"({_role(user.role, user.organisation)}) given {what}{enabled}",
        by=by,
        reason=reason,
    )
    end_user_sessions(session, user, reason=f"the user was given {what}", by=by)
    log.warning("user %s given %s", user.name, what)
    return NewUser(
        user.name,
        user.role,
        user.organisation,
        token,
        secret,
        provisioning_uri(user.name, secret),
    )


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    role: str
    organisation: str | None
    created_at: datetime
    second_factor: bool
    active: bool
    disabled_reason: str | None


def list_users(session: Session) -> list[UserInfo]:
    return [
        UserInfo(
            u.name,
            u.role,
            u.organisation,
            u.created_at,
            u.totp_secret is not None,
            u.active,
            u.disabled_reason,
        )
        for u in session.execute(select(User).order_by(User.name)).scalars()
    ]


class FailureWindow:
    """Wrong credentials per client address in the current minute, in this process.

    :meth:`check` refuses an address that has used up its allowance, before any token is
    hashed; :meth:`failed` counts one more. Written here rather than taken from a
    rate-limiting library: those count every request, and only failures matter (a reading
    room full of researchers behind one address must not be slowed down)."""

    def __init__(self, per_minute: int, size: int = 65_536) -> None:
        self.per_minute, self.size = per_minute, size
        self._counts: dict[str, tuple[int, int]] = {}  # address -> (minute, failures)
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        minute = int(clock.epoch() // 60)
        with self._lock:
            seen = self._counts.get(address)
        if seen is not None and seen[0] == minute and seen[1] >= self.per_minute:
            raise TooManyAttempts(
                "too many wrong credentials from this address",
                retry_after=60 - int(clock.epoch() % 60),
                hint="wait until the time in Retry-After, then send a valid token",
            )

    def failed(self, address: str) -> None:
        minute = int(clock.epoch() // 60)
        with self._lock:
            if len(self._counts) >= self.size:
                self._counts = {a: c for a, c in self._counts.items() if c[0] == minute}
            seen = self._counts.get(address)
            n = seen[1] + 1 if seen is not None and seen[0] == minute else 1
            self._counts[address] = (minute, n)
        if n == self.per_minute:
            log.warning("wrong credentials from %s: %d this minute, refusing the rest", address, n)


class _VerifiedCache:
    """Tokens verified in the last minute, by SHA-256 (argon2 is slow on purpose: a
    client that sends the same token on every request pays it once a minute)."""

    def __init__(self, ttl: float = 60.0, size: int = 1024) -> None:
        self.ttl, self.size = ttl, size
        self._seen: dict[bytes, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def get(self, key: bytes, user_id: int) -> bool:
        with self._lock:
            hit = self._seen.get(key)
            return hit is not None and hit[1] == user_id and hit[0] > time.monotonic()

    def put(self, key: bytes, user_id: int) -> None:
        with self._lock:
            if len(self._seen) >= self.size:
                self._seen.clear()
            self._seen[key] = (time.monotonic() + self.ttl, user_id)


_cache = _VerifiedCache()


def _verify(user: User | None, token: str) -> User:
    if user is None or not user.active:
        # Spend the same work on an unknown user as on a known one.
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(_DUMMY_HASH, token)
        raise AuthenticationFailed(BAD_CREDENTIALS, hint=BAD_CREDENTIALS_HINT)
    key = hashlib.sha256(token.encode()).digest()
    if _cache.get(key, user.id):
        return user
    try:
        _hasher.verify(user.token_hash, token)
    except (VerificationError, InvalidHashError):
        raise AuthenticationFailed(BAD_CREDENTIALS, hint=BAD_CREDENTIALS_HINT) from None
    _cache.put(key, user.id)
    return user


_DUMMY_HASH = _hasher.hash("custos_0000000000000000_" + "x" * 43)


def by_token(session: Session, token: str) -> User:
    """The user holding ``token``; raises :class:`AuthenticationFailed`."""
    m = _TOKEN.match(token.strip())
    user = (
        session.execute(select(User).where(User.token_id == m.group(1))).scalar_one_or_none()
        if m
        else None
    )
    return _verify(user, token.strip())


def by_name_and_key(session: Session, name: str, key: str) -> User:
    """The user ``name`` if ``key`` is their token (Archivematica's username + api_key)."""
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    m = _TOKEN.match(key.strip())
    if user is not None and (m is None or m.group(1) != user.token_id):
        user = None
    return _verify(user, key.strip())


def principal(
    user: User,
    *,
    totp: str | None,
    session: Session,
    auth: AuthSettings | None = None,
) -> Principal:
    """The reader for a request of ``user``, with ``totp`` (the ``X-Custos-TOTP`` header),
    ``user`` read in ``session``.

    A code given is always checked (:func:`access.accounts.totp.require_code`: accepted once only,
    wrong codes counted and locking the second factor; committed there): a wrong one is
    refused, never ignored. Raises :class:`SecondFactorRequired`, :class:`TooManyAttempts`."""
    second = False
    if totp is not None:
        require_code(session, user, totp, auth=auth or AuthSettings())
        second = True
    return Principal(user.name, user.role, user.organisation, second)


def require_second_factor(reader: Principal) -> None:
    if not reader.second_factor:
        raise SecondFactorRequired(
            f"the {reader.role} role needs a second factor for this service",
            hint="send the current 6-digit TOTP code in the X-Custos-TOTP header",
        )


def identify(
    session: Session,
    policy: AccessPolicy,
    name: str,
    *,
    token: str,
    totp: str | None,
    auth: AuthSettings | None = None,
) -> Principal:
    """The user ``name`` on the command line, proven as the API proves them: their own API
    token and, for roles the policy asks a second factor of, the current TOTP code. So a
    step that must be taken by a named person (a review's approval) cannot be taken in
    their name by whoever runs the command. Raises :class:`AuthenticationFailed` (unknown
    name, or a token that is not theirs), :class:`SecondFactorRequired`, and
    :class:`TooManyAttempts` (wrong codes count towards the same lock as through the API)."""
    user = by_name_and_key(session, name.strip(), token)
    code = totp.strip() if totp and totp.strip() else None
    reader = principal(user, totp=code, session=session, auth=auth)
    if needs_second_factor(policy, reader.role):
        require_second_factor(reader)
    return reader
