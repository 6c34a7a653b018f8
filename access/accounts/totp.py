"""The TOTP second factor (RFC 6238): enrolment, and the one check every code goes through.

A code is accepted for the current 30-second time step or the one either side (clocks
drift), and at most once: the catalog keeps, per user, the time step of the last code
accepted (``users.totp_last_step``), and a code is accepted only for a later step. The step
is taken by a conditional UPDATE (``... WHERE totp_last_step IS NULL OR totp_last_step <
:step RETURNING id``) whose returned row says whether this request took it, so two
serving processes (or machines) given one code at the same moment accept it once: on
PostgreSQL the second UPDATE waits for the first's row lock and then finds the step taken;
on SQLite writers take the database's write lock in turn.

A wrong code and a code used before are the same failure to the caller (the same words), and
both count towards the lock: after ``auth.totp_attempts`` in a row the user's second factor
is locked for ``auth.totp_lockout_minutes``, in the catalog, and no code is checked at all
until then. The API's dependency (``api.deps``) and the command line's proof of a registrar
(``access.accounts.users.identify``, for ``custos policies approve|extend``) both come here through
:func:`access.accounts.users.principal`.

Raises :class:`SecondFactorRequired` for a wrong or reused code, :class:`TooManyAttempts`
while locked.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

import pyotp
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from archive import clock as archive_clock
from archive.catalog.tables import User
from archive.config import AuthSettings
from archive.errors import SecondFactorRequired, TooManyAttempts

ISSUER = "Custos"
#: Time steps either side of the current one whose codes are still accepted (clock drift).
WINDOW = 1
WRONG_CODE = "the TOTP code in X-Custos-TOTP is not valid"
WRONG_CODE_HINT = (
    "send the current 6-digit code of the authenticator enrolled with `custos users add`; "
    "each code is accepted once: after a code was used, wait for the next one (codes change "
    "every 30 seconds; check the clock)"
)
_CODE = re.compile(r"[0-9]{6}")

log = logging.getLogger("custos.access")


def clock() -> float:
    """The time codes are checked at (seconds since the epoch): the archive's clock. Tests
    that need more codes than real time gives replace this function alone."""
    return archive_clock.epoch()


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(name: str, secret: str | None) -> str | None:
    """The ``otpauth://`` URI an authenticator app enrols from, or None without a secret."""
    if secret is None:
        return None
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def require_code(session: Session, user: User, code: str, *, auth: AuthSettings) -> None:
    """Accept ``code`` as ``user``'s second factor for this request, or raise.

    Takes the code's time step for the user and commits it at once (also on refusal, to
    count the failure), so the caller's ``session`` must hold no other change. Raises
    :class:`TooManyAttempts` while the user's second factor is locked (nothing is checked),
    :class:`SecondFactorRequired` for a wrong code or one accepted before (counted)."""
    now = archive_clock.now()
    _refuse_if_locked(user, now)
    step = _step_of(user.totp_secret, code.strip())
    if step is not None:
        taken = session.execute(
            update(User)
            .where(
                User.id == user.id,
                or_(User.totp_last_step.is_(None), User.totp_last_step < step),
                or_(User.totp_locked_until.is_(None), User.totp_locked_until <= now),
            )
            .values(totp_last_step=step, totp_failures=0, totp_locked_until=None)
            .returning(User.id)
        ).first()
        if taken is not None:  # this request took the step (none other can now)
            session.commit()
            session.refresh(user)
            return
        session.rollback()
        session.refresh(user)
        _refuse_if_locked(user, now)  # locked by another request meanwhile
        log.warning("TOTP code of user %s refused: its time step was used before", user.name)
    _count_wrong_code(session, user, auth, now)
    raise SecondFactorRequired(WRONG_CODE, hint=WRONG_CODE_HINT)


def _step_of(secret: str | None, code: str) -> int | None:
    """The time step ``code`` belongs to within the window around now, or None."""
    if secret is None or _CODE.fullmatch(code) is None:
        return None
    try:
        return pyotp.TOTP(secret).verify_and_get_timecode(
            code, for_time=clock(), valid_window=WINDOW
        )
    except OTPVerificationError:
        return None


def _refuse_if_locked(user: User, now: datetime) -> None:
    if user.totp_locked_until is not None and user.totp_locked_until > now:
        raise TooManyAttempts(
            "the second factor of this user is locked after too many wrong codes",
            retry_after=int((user.totp_locked_until - now).total_seconds()) + 1,
            hint="wait until the time in Retry-After; if the codes were not yours, ask "
            "an administrator to replace the token (custos users token NAME; with "
            "--new-totp the lock is lifted too)",
        )


def _count_wrong_code(session: Session, user: User, limits: AuthSettings, now: datetime) -> None:
    # Counted in the database, so that processes answering at once never lose a count.
    session.execute(
        update(User).where(User.id == user.id).values(totp_failures=User.totp_failures + 1)
    )
    session.refresh(user)
    if user.totp_failures >= limits.totp_attempts:
        user.totp_failures = 0
        user.totp_locked_until = now + timedelta(minutes=limits.totp_lockout_minutes)
        log.warning(
            "second factor of user %s locked for %d minutes after %d wrong codes",
            user.name,
            limits.totp_lockout_minutes,
            limits.totp_attempts,
        )
    session.commit()


def reset(user: User) -> str:
    """Enrol a new secret for ``user`` (the caller commits): the failure count, the lock and
    the last step used go with the old one. Returns the secret, to show once."""
    user.totp_secret = secret = new_secret()
    user.totp_failures, user.totp_locked_until, user.totp_last_step = 0, None, None
    return secret
