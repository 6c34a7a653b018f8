"""One exception tree for Custos.

Every error raised across a module boundary is a :class:`CustosError`. Its
:meth:`~CustosError.diagnostics` text says what happened and what to do, in words an
operator can act on. Third-party errors are translated where they enter (``raise ... from``).
The CLI maps each family to an exit status (see :data:`EXIT_CODES`): no status means two
things.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archive.findings import Finding


class CustosError(Exception):
    """Root of every error Custos raises on purpose."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def diagnostics(self) -> str:
        """What happened and what to do, for an operator."""
        text = self.message
        if self.hint:
            text += f"\n  what to do: {self.hint}"
        return text


class ConfigError(CustosError):
    """Settings are missing, malformed or contradictory."""

    exit_code = 78  # EX_CONFIG


class InputRejected(CustosError):
    """A deposit, an export or another request was refused. Carries every finding that led to
    the refusal."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, message: str, findings: Sequence[Finding] = (), *, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.findings = tuple(findings)

    def diagnostics(self) -> str:
        lines = [self.message]
        for f in self.findings:
            if f.severity == "error":
                lines.append(f"  - {f.render()}")
        if self.hint:
            lines.append(f"  what to do: {self.hint}")
        return "\n".join(lines)


class StorageError(CustosError):
    """The storage root could not be read or written as required."""

    exit_code = 74  # EX_IOERR


class StorageFull(StorageError):
    """The filesystem written to has no space left, or its quota is used up."""


#: What a filesystem answers when it cannot take a write: no space, no quota left (both
#: :class:`StorageFull`), mounted read-only, an I/O error. Never the fault of the bytes written.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
STORAGE_ERRNOS = FULL_ERRNOS | {errno.EROFS, errno.EIO}


def storage_failure(
    code: int, reason: str, *, doing: str, where: str, then: str = "try again"
) -> StorageError:
    """The error for a write that the filesystem refused with errno ``code`` (one of
    :data:`STORAGE_ERRNOS`) while ``doing`` something in ``where`` (a folder, named for the
    operator): :class:`StorageFull` for no space or quota, else :class:`StorageError`. The
    hint says what to fix, and ``then`` what to do once it is fixed."""
    name = errno.errorcode.get(code, str(code))
    message = f"{doing}: {reason} ({name}) in {where}"
    if code in FULL_ERRNOS:
        return StorageFull(
            message,
            hint=f"free space on that filesystem (or raise its quota), then {then}",
        )
    return StorageError(
        message,
        hint="check that filesystem (is it mounted read-only? I/O errors in the kernel log?), "
        f"then {then}",
    )


class CatalogError(CustosError):
    """The catalog could not be read or written, or disagrees with storage."""

    exit_code = 70


class NotFound(CustosError):
    """A package, version or file named by the caller does not exist."""

    exit_code = 4


class PolicyError(CustosError):
    """A policy file is missing or malformed."""

    exit_code = 79  # not 78: settings and policies are told apart


class ProofError(CustosError):
    """A timestamp or evidence record could not be obtained, or does not verify."""

    exit_code = 3


class AccessError(CustosError):
    """A reader could not be identified, or may not do what was asked.

    Readers who may not know that material exists never see this: to them, material they may
    not see is :class:`NotFound`, with the same words as material that does not exist."""

    exit_code = 77  # EX_NOPERM


class AuthenticationFailed(AccessError):
    """No usable credentials: a token, user name or API key that is unknown or wrong."""


class SecondFactorRequired(AccessError):
    """The reader's role needs a verified TOTP code, and none (or a wrong one) was given."""


class TooManyAttempts(AccessError):
    """Too many wrong credentials or codes: refused, unchecked, for ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, retry_after)


class Forbidden(AccessError):
    """The reader is known, and their role may not use this service at all."""


class KeyLocked(AccessError):
    """The reader may read it, but it is stored encrypted and its tier's key is not open in
    this process for the purpose stated (``access.keys``: registrars open it together)."""


#: Every exit status of the command line, and what it means (the README and the CLI reference
#: show this table; a code is never used for two things).
EXIT_CODES: dict[int, str] = {
    0: "done",
    1: "an error of no kind below (the message says what), or a server that could not run",
    2: "usage: a command, option or argument the command line does not know",
    3: "a check found a problem: a proof that does not verify, a custody log altered, a copy "
    "that could not be repaired, an evidence record that lapsed",
    4: "not found: the package, version or file named does not exist",
    5: "partly done: some items of the work could not be done (each is listed), e.g. a "
    "migration copy, an object not indexed, a sunset, a package not yet safely stored",
    65: "refused: a deposit, export or request refused, every finding listed",
    70: "the catalog could not be read or written",
    74: "storage failed: a location could not be read or written, or is full",
    75: "try again later: no timestamp authority answered, or the job queue is unavailable",
    77: "not permitted: no usable credentials, or access denied",
    78: "settings are missing, malformed or contradictory",
    79: "a policy file is missing or malformed",
}


def database_reason(exc: BaseException) -> str:
    """What a database error says, told without its statement or the statement's values (a
    value may be a protected file's path or a person's name): the error's kind and the first
    line of the driver's message (PostgreSQL's DETAIL, which quotes values, follows on later
    lines)."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    text = str(orig if orig is not None else exc).strip()
    first = text.splitlines()[0].split(" [SQL:")[0].strip() if text else ""
    kind = (orig if orig is not None else exc).__class__.__name__
    return f"{kind}: {first}" if first else kind
