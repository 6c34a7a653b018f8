"""TOTP codes in the tests: a clock the server checks codes at, and fresh codes from it."""

from __future__ import annotations

import time

import pyotp


class TotpClock:
    """The time the server checks TOTP codes at, in the tests (``access.accounts.totp.clock``): real
    time plus an offset that only grows.

    A code is accepted once, and only for a later time step than the last one accepted for
    its user, so a registrar's requests each need a new code: real time gives one every 30
    seconds. :meth:`code` moves the clock on by one step and returns the code of the new
    step, which the server, at that time, accepts."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def code(self, secret: str) -> str:
        self.offset += 30
        return pyotp.TOTP(secret).at(self())


#: One clock for the whole test session: catalogs kept across tests keep their last steps.
CLOCK = TotpClock()


def fresh_code(secret: str | None) -> str:
    """A TOTP code of ``secret`` that the server has not seen (see :class:`TotpClock`)."""
    assert secret
    return CLOCK.code(secret)
