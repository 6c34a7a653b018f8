"""Tier keys held open in one process, for a bounded time.

Reading protected material that is stored encrypted needs the tier's age identity in memory.
Registrars open it together (:mod:`access.keys.service`); the ring then holds it until its
time is up (``keys.unlock_minutes``) or a registrar locks it, and drops it. Shares presented
towards an opening wait here, in memory only, for as long.

Nothing here is written anywhere: not to the catalog, a log or a file. Python cannot promise
that the bytes of a dropped identity are overwritten at once; the age identity itself is a
Rust object that clears its secret when it is freed (``zeroize``), and no other reference to
it is kept. Each serving process has its own ring: an opening in one process does not open
the key in another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archive import clock


@dataclass(slots=True)
class Opened:
    """A tier's key, open: who opened it, for what purpose, until when."""

    tier: str
    recipient: str
    identity: Any  # pyrage.x25519.Identity (the core does not import the access layer's crypto)
    purpose: str
    by: tuple[str, ...]
    until: datetime


@dataclass(slots=True)
class Waiting:
    """Shares presented towards opening a tier's key, by registrar, until enough arrive."""

    share_set: int
    purpose: str
    until: datetime
    shares: dict[str, tuple[int, str]] = field(default_factory=dict)  # registrar: (index, words)


class KeyRing:
    """The tier keys open in this process, and the shares waiting for others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Opened] = {}
        self._waiting: dict[str, Waiting] = {}
        self._lapsed: list[Opened] = []

    def _expire(self) -> None:
        at = clock.now()
        for tier in [t for t, o in self._open.items() if o.until <= at]:
            self._lapsed.append(self._open.pop(tier))
        for tier in [t for t, w in self._waiting.items() if w.until <= at]:
            del self._waiting[tier]

    def opened(self, tier: str) -> Opened | None:
        """The tier's key if it is open now (a key whose time is up is dropped first)."""
        with self._lock:
            self._expire()
            return self._open.get(tier)

    def hold(self, opened: Opened) -> None:
        with self._lock:
            self._open[opened.tier] = opened
            self._waiting.pop(opened.tier, None)

    def close(self, tier: str) -> Opened | None:
        """Drop the tier's key and any shares waiting for it; the key that was open, if any."""
        with self._lock:
            self._waiting.pop(tier, None)
            return self._open.pop(tier, None)

    def lapsed(self) -> list[Opened]:
        """The keys dropped because their time was up, since the last call (each once)."""
        with self._lock:
            self._expire()
            lapsed, self._lapsed = self._lapsed, []
            return lapsed

    def waiting(self, tier: str) -> Waiting | None:
        with self._lock:
            self._expire()
            return self._waiting.get(tier)

    def wait(self, tier: str, waiting: Waiting) -> None:
        with self._lock:
            self._waiting[tier] = waiting

    def forget_waiting(self, tier: str) -> None:
        with self._lock:
            self._waiting.pop(tier, None)
