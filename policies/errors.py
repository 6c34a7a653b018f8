"""Errors raised by the access functions of ``policies``.

``policies`` may not import ``archive`` (imports point down, and the two are independent
siblings), so these errors do not derive from ``archive.errors.CustosError``. They have the
same shape: a ``message``, a ``hint`` saying what to do, a stable ``code`` and
:meth:`AccessRuleError.diagnostics`. A caller in a higher layer translates them where they
enter, e.g. ``raise PolicyError(exc.message, hint=exc.hint) from exc``.

They derive from :class:`ValueError`: each one means a value or a step was refused by a
rule, never that something could not be checked.
"""

from __future__ import annotations


class AccessRuleError(ValueError):
    """Root: an access value is invalid, or an access rule refuses a step."""

    code = "ACCESS-RULE"
    hint = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def diagnostics(self) -> str:
        """What happened and what to do, for an operator."""
        text = f"{self.code}: {self.message}"
        if self.hint:
            text += f"\n  what to do: {self.hint}"
        return text


class InvalidPath(AccessRuleError):
    """A path of an assignment or consent record is not a plain relative path."""

    code = "ACCESS-PATH-INVALID"
    hint = "use a relative path with '/' between names, no '.', '..' or empty names"


class InvalidAssignment(AccessRuleError):
    """A tier assignment breaks a rule (unknown tier, no legal basis, bad sunset or successor)."""

    code = "ACCESS-ASSIGNMENT-INVALID"


class InvalidConsent(AccessRuleError):
    """A consent record names a scope that does not exist."""

    code = "ACCESS-CONSENT-INVALID"


class AmbiguousRecords(AccessRuleError):
    """Two assignments (or two consent records) name the same path: neither can win."""

    code = "ACCESS-AMBIGUOUS"
    hint = "keep one record per path: replace the old one instead of adding a second"


class ReviewRefused(AccessRuleError):
    """A step of a protected-identity review is not allowed."""

    code = "REVIEW-REFUSED"


class NotARegistrar(ReviewRefused):
    """Someone who is not a registrar tried to approve or extend a review."""

    code = "REVIEW-NOT-REGISTRAR"
    hint = "only a registrar may approve or extend a protected-identity review"


class DuplicateApproval(ReviewRefused):
    """A registrar who already approved a review approved it again."""

    code = "REVIEW-DUPLICATE-APPROVAL"
    hint = "a second, different registrar must approve"


class ReviewClosed(ReviewRefused):
    """The review was already decided (opened or extended)."""

    code = "REVIEW-CLOSED"
    hint = "a decided review does not change; a new sunset opens a new review"


class ReviewPending(ReviewRefused):
    """The review has no outcome yet, so nothing follows from it."""

    code = "REVIEW-PENDING"
    hint = "wait for two different registrars to approve, or for one to extend"


class BadExtension(ReviewRefused):
    """An extension without a later date or without a reason."""

    code = "REVIEW-BAD-EXTENSION"
    hint = "give a new sunset after the day of the extension and the reason for it"


class BadReviewDate(ReviewRefused):
    """A review step dated before the review opened or before an earlier step."""

    code = "REVIEW-BAD-DATE"
    hint = "date each step on the day it is taken; steps cannot be back-dated"
