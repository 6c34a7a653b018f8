"""The access decision: may this role do this action on this material, for this purpose?

A pure function of the policy's decision table (``rules`` in ``policies/access.toml``),
the assignment governing the material (its tier as stored), the consent governing it, the
reader's role, the stated purpose, the date and whether a second factor was verified.
No database, no clock, no I/O: the caller resolves the path (:func:`policies.access.effective`,
:func:`policies.access.effective_consent`), enforces the decision and writes the access
event when ``must_log`` says so.

Fail closed: an unknown role, action or purpose, material without an assignment
(undeclared), missing consent, a date before the policy is in force, or no row in the
table for the role, action and tier, is denied. The checks run in this order, and the
first that fails gives the ``reason_code``:

1. ``POLICY-NOT-IN-FORCE``: ``on`` is before the policy's ``effective_from``.
2. ``UNKNOWN-ROLE``, ``UNKNOWN-ACTION``, ``UNKNOWN-PURPOSE`` (a purpose was stated that the
   policy does not declare).
3. ``UNDECLARED``: no assignment governs the material.
4. ``ROLE-NOT-PERMITTED``: the table has no row for the role, action and tier.
5. ``NOT-OWN-DEPOSIT``: the row is for the reader's own deposits and this is not one.
6. ``CONSENT-WITHDRAWN``: consent is withdrawn and the row does not read despite withdrawal.
7. For a row that asks a purpose: ``PURPOSE-REQUIRED`` (none stated),
   ``PURPOSE-NOT-PERMITTED`` (not one the row accepts), ``CONSENT-MISSING`` (no consent
   recorded), ``CONSENT-NOT-GIVEN`` (no scope the purpose rests on).
8. ``SECOND-FACTOR-REQUIRED``: the row asks a second factor that was not verified.
9. ``ALLOWED``.

Sunset state: the decision uses the tier as stored. A ``restricted`` assignment whose
sunset has passed stays restricted until ``custos policies apply`` records its move, and
a ``protected-identity`` one until its review is decided: material opens only through a
recorded transition, never by the passing of a date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from policies.access import Assignment, Consent
from policies.schema import AccessPolicy
from policies.vocabulary import is_action, is_role

ReasonCode = Literal[
    "ALLOWED",
    "POLICY-NOT-IN-FORCE",
    "UNKNOWN-ROLE",
    "UNKNOWN-ACTION",
    "UNKNOWN-PURPOSE",
    "UNDECLARED",
    "ROLE-NOT-PERMITTED",
    "NOT-OWN-DEPOSIT",
    "CONSENT-WITHDRAWN",
    "PURPOSE-REQUIRED",
    "PURPOSE-NOT-PERMITTED",
    "CONSENT-MISSING",
    "CONSENT-NOT-GIVEN",
    "SECOND-FACTOR-REQUIRED",
]

#: What each reason code means, in words for the reader or the operator.
REASONS: dict[ReasonCode, str] = {
    "ALLOWED": "allowed by the access policy",
    "POLICY-NOT-IN-FORCE": "the access policy is not in force on that date",
    "UNKNOWN-ROLE": "the role is not one the access policy knows",
    "UNKNOWN-ACTION": "the action is not one the access policy knows",
    "UNKNOWN-PURPOSE": "the stated purpose is not declared in the access policy",
    "UNDECLARED": "the material has no access tier assigned",
    "ROLE-NOT-PERMITTED": "the role may not do this on material of this tier",
    "NOT-OWN-DEPOSIT": "the role may do this only on its own deposits",
    "CONSENT-WITHDRAWN": "consent for this material was withdrawn",
    "PURPOSE-REQUIRED": "a purpose must be stated",
    "PURPOSE-NOT-PERMITTED": "the stated purpose does not allow this on material of this tier",
    "CONSENT-MISSING": "no consent is recorded for this material",
    "CONSENT-NOT-GIVEN": "the recorded consent does not cover the stated purpose",
    "SECOND-FACTOR-REQUIRED": "a verified second factor (TOTP) is required",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict of :func:`decide`.

    ``must_log``: the read must be recorded (who, when, what, purpose) if allowed; for a
    denial, whether the attempt concerns non-public or undeclared material and is to be
    recorded as such. ``needs_second_factor``: the row that applied asks a verified second
    factor. ``policy``: the label of the policy version that decided (``access v1``).
    """

    allowed: bool
    reason_code: ReasonCode
    must_log: bool
    needs_second_factor: bool
    policy: str

    def __post_init__(self) -> None:
        if self.reason_code not in REASONS:
            raise ValueError(f"unknown reason code {self.reason_code!r}")
        if self.allowed != (self.reason_code == "ALLOWED"):
            raise ValueError(f"allowed={self.allowed} contradicts {self.reason_code}")

    @property
    def explanation(self) -> str:
        return REASONS[self.reason_code]


def decide(
    policy: AccessPolicy,
    *,
    action: str,
    assignment: Assignment | None,
    role: str,
    consent: Consent | None,
    purpose: str | None,
    on: date,
    second_factor: bool = False,
    own_deposit: bool = False,
) -> Decision:
    """Decide whether ``role`` may do ``action`` on material governed by ``assignment``.

    ``consent``: the consent governing the material, or None if none is recorded.
    ``purpose``: the purpose the reader states, or None. ``on``: the day of the read.
    ``second_factor``: the reader's second factor was verified for this session.
    ``own_deposit``: the material belongs to a deposit of the reader's organisation.
    Never raises for unknown names: they are denied. Raises :class:`TypeError` if ``on``
    is not a date.
    """
    if not isinstance(on, date) or isinstance(on, datetime):
        raise TypeError(f"on must be a date, not {on!r}")
    closed = assignment is None or assignment.tier != "public"

    def deny(code: ReasonCode, second: bool = False) -> Decision:
        return Decision(False, code, closed, second, policy.label)

    if on < policy.effective_from:
        return deny("POLICY-NOT-IN-FORCE")
    if not is_role(role):
        return deny("UNKNOWN-ROLE")
    if not is_action(action):
        return deny("UNKNOWN-ACTION")
    if purpose is not None and purpose not in policy.purposes:
        return deny("UNKNOWN-PURPOSE")
    if assignment is None:
        return deny("UNDECLARED")
    rule = policy.rule_for(role, action, assignment.tier)
    if rule is None:
        return deny("ROLE-NOT-PERMITTED")
    needs = rule.second_factor
    if rule.own_deposits_only and not own_deposit:
        return deny("NOT-OWN-DEPOSIT", needs)
    if consent is not None and consent.withdrawn and not rule.despite_withdrawal:
        return deny("CONSENT-WITHDRAWN", needs)
    if rule.purposes:
        if purpose is None:
            return deny("PURPOSE-REQUIRED", needs)
        if purpose not in rule.purposes:
            return deny("PURPOSE-NOT-PERMITTED", needs)
        if consent is None:
            return deny("CONSENT-MISSING", needs)
        if not consent.grants(policy.purposes[purpose].consent):
            return deny("CONSENT-NOT-GIVEN", needs)
    if needs and not second_factor:
        return deny("SECOND-FACTOR-REQUIRED", needs)
    return Decision(True, "ALLOWED", rule.log, needs, policy.label)
