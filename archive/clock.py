"""The one clock: every time the archive records, compares or stamps comes from here (custody
events, seals' back-off, sessions, TOTP time steps, sunsets, retention dates, inventories).

It reads the system clock; a test that needs another time replaces the source for its own
duration (``monkeypatch.setattr("archive.clock.source", ...)``), and everything moves
together. Durations (how long a step took) use ``time.monotonic`` or ``perf_counter``
instead, which no clock change can turn backwards.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime


def _system() -> datetime:
    return datetime.now(UTC)


#: Where the time comes from: an aware datetime in UTC.
source: Callable[[], datetime] = _system


def now() -> datetime:
    """Now, in UTC."""
    return source()


def today() -> date:
    """Today's date in UTC (sunsets, reviews and their deadlines are dates in UTC)."""
    return source().date()


def local_now() -> datetime:
    """Now, with the machine's UTC offset, to the second: what an OCFL inventory's
    ``created`` records (and what a person reading it expects)."""
    return source().astimezone().replace(microsecond=0)


def epoch() -> float:
    """Now, in seconds since the epoch (TOTP time steps, per-minute windows, file ages)."""
    return source().timestamp()
