"""One exception tree for Custos.

Every error raised across a module boundary is a :class:`CustosError`. Its
:meth:`~CustosError.diagnostics` text says what happened and what to do, in words an
operator can act on. Third-party errors are translated where they enter (``raise ... from``).
The CLI maps each family to an exit status (see :data:`EXIT_CODES`).
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
    """A deposit was refused. Carries every finding that led to the refusal."""

    exit_code = 2

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
    """A policy file is missing, malformed, or forbids the requested action."""

    exit_code = 78


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
