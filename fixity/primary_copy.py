"""The primary copy as fixity and replication reach it: a run starts only once this host can
read it, and a primary it cannot read is never taken for damage.

The primary may be a bucket several hosts share (``primary_location``): a host whose
credentials are wrong, or that cannot reach the server, could read none of it. Such a run
stops before it claims or records anything (:func:`require`), with
:class:`PrimaryUnavailable` (exit status 74) naming the location and where it is; its copies
are left for a host that can read them. A primary that stops answering during a run is
treated as any location that does (see :mod:`fixity.service`): its copies are released
unchecked, no damage is recorded for them, and nothing is repaired from or to it.
"""

from __future__ import annotations

from archive.config import Settings
from archive.errors import StorageError
from archive.storage import ocfl
from archive.storage.primary import Primary
from archive.storage.replica import LocationUnavailable


class PrimaryUnavailable(LocationUnavailable):
    """This host cannot read the primary copy (unreachable, or its credentials refused)."""


def unavailable(
    primary: Primary, exc: StorageError, settings: Settings | None = None
) -> PrimaryUnavailable:
    """The error to raise when reading the primary failed with ``exc`` (``settings``: this
    host's, to name the entry to check)."""
    if settings is None:
        entry = "primary_location (or storage_root)"
    elif settings.primary_location:
        entry = f"[locations.{settings.primary_location}] (the location primary_location names)"
    else:
        entry = "storage_root"
    return PrimaryUnavailable(
        f"the primary copy (location {primary.name}, {primary.uri}) cannot be read from this "
        f"host: {exc.message}",
        hint=(
            f"{exc.hint + '; ' if exc.hint else ''}check {entry} in this host's settings and "
            "that this host can reach it; nothing was checked or recorded, and its copies are "
            "left for a host that can read them"
        ),
    )


def require(primary: Primary, settings: Settings) -> None:
    """Ask the primary for its storage root's declaration (one request, nothing read).
    Raises :class:`PrimaryUnavailable` if it does not answer, or refuses this host."""
    try:
        primary.location.stat(ocfl.ROOT_NAMASTE)
    except StorageError as exc:
        raise unavailable(primary, exc, settings) from exc
