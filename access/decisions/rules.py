"""Who is reading, and what the access policy lets them see: the one place reads are decided.

Every read by the API goes through :func:`decide_path`, which finds the assignment and
consent governing a path (:func:`policies.access.effective`,
:func:`policies.access.effective_consent`) and asks :func:`policies.decide.decide`. Nothing
here re-implements the decision.

Paths are the policy's: ``""`` for the package, ``data/…`` for a payload file or folder (a
catalog logical path without its ``bag/`` prefix). A file is shown only when both the file
and its package may be read: a package whose own metadata is closed is not shown at all,
whatever its files say (stricter than the file's decision alone, never looser).

Reads that the decision says must be logged are recorded by :func:`access_event` as
``access`` custody events naming who, the package, the file by its sha512 digest (never
its path: paths may name people), the purpose and the policy that decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from archive import clock
from archive.catalog.queries import access_rows
from archive.config import Settings
from archive.custody import new_event, record_batches
from archive.errors import CatalogError, InputRejected, NotFound, PolicyError
from archive.findings import Finding
from archive.model import AccessRow, EventRecord, Link
from policies.access import Assignment, Consent, effective, effective_consent
from policies.decide import Decision, decide
from policies.errors import AccessRuleError
from policies.load import PolicyFileError, load_access_policy
from policies.schema import AccessPolicy
from policies.vocabulary import is_scope, is_tier

AGENT = "Custos API"
#: The one answer to a reader who may not know whether something exists: the same words for
#: what does not exist and for what they may not see.
NOT_AVAILABLE = "no such package or file is available to you"
NOT_AVAILABLE_HINT = "check the identifier; search shows what you may read"


#: The one answer to wrong credentials: an unknown, wrong or disabled user's token, and an
#: unknown, expired or ended session's token, get the same words (nothing to tell apart).
BAD_CREDENTIALS = "the credentials are not valid"
BAD_CREDENTIALS_HINT = (
    "send `Authorization: Bearer <token>` with the token `custos users add` printed, "
    "or ask an administrator for a new one"
)


def not_available() -> NotFound:
    return NotFound(NOT_AVAILABLE, hint=NOT_AVAILABLE_HINT)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated reader (or ``anonymous``). ``second_factor``: a TOTP code was
    verified for this request, or for the session it came in (``session``: that session's
    id; None for a request made with an API token). ``organisation``: a depositor's
    organisation."""

    name: str
    role: str
    organisation: str | None = None
    second_factor: bool = False
    session: str | None = None

    @property
    def agent(self) -> str:
        return f"{self.role} {self.name}"


ANONYMOUS = Principal("anonymous", "anonymous")


def require_purpose(policy: AccessPolicy, purpose: str) -> str:
    """The stated purpose, stripped, if the access policy declares it: the one check of a
    purpose given with a justice request or an export.

    Raises :class:`InputRejected` (finding ``REQUEST-PURPOSE``; message and hint list the
    purposes the policy declares) for an empty purpose or one the policy does not declare."""
    stated = purpose.strip()
    if stated in policy.purposes:
        return stated
    said = f"the purpose {stated!r} is not" if stated else "no purpose is stated: it must be"
    accepted = ", ".join(policy.purposes)  # in the policy's order
    message = f"{said} one the access policy declares ({accepted})"
    raise InputRejected(
        f"purpose refused: {message}",
        [Finding("REQUEST-PURPOSE", "error", message, "purpose")],
        hint=f"state one of the purposes the access policy declares: {accepted}",
    )


def needs_second_factor(policy: AccessPolicy, role: str) -> bool:
    """Whether any row of the policy asks ``role`` for a verified second factor."""
    return any(r.role == role and r.second_factor for r in policy.rules)


@dataclass(frozen=True, slots=True)
class Rules:
    """The assignments and consent records of one package, as policy values."""

    package_id: str
    depositor: str
    assignments: tuple[Assignment, ...]
    consents: tuple[Consent, ...]


def today() -> date:
    return clock.today()


def access_policy(settings: Settings | None) -> AccessPolicy:
    """The access policy in force (read again when its file changes); raises PolicyError."""
    try:
        return load_access_policy(settings.policy_dir if settings else None)
    except PolicyFileError as exc:
        raise PolicyError(
            f"the access policy cannot be loaded: {exc}",
            hint="fix policies/access.toml or the policy_dir setting; every read is refused "
            "until then",
        ) from exc


def rules_from_rows(package_id: str, depositor: str, rows: Iterable[AccessRow]) -> Rules:
    """The catalog's access rows as policy values; raises :class:`CatalogError` if invalid."""
    assignments, consents = [], []
    try:
        for r in rows:
            if r.tier:
                if not is_tier(r.tier):
                    raise CatalogError(f"package {package_id}: unknown tier in the catalog")
                successor = r.successor if r.successor and is_tier(r.successor) else None
                assignments.append(
                    Assignment(r.path, r.tier, r.sunset, successor, r.legal_basis, r.sunset_basis)
                )
            if r.consent is not None:
                consents.append(Consent(r.path, frozenset(s for s in r.consent if is_scope(s))))
    except AccessRuleError as exc:
        raise CatalogError(
            f"the access records of package {package_id} are invalid: {exc.message}",
            hint="fix custos/access.json with a tier change, then rebuild the catalog",
        ) from exc
    return Rules(package_id, depositor, tuple(assignments), tuple(consents))


def load_rules(session: Session, package_id: str, depositor: str) -> Rules:
    return rules_from_rows(package_id, depositor, access_rows(session, package_id))


def decide_path(
    policy: AccessPolicy,
    rules: Rules,
    path: str,
    *,
    reader: Principal,
    action: str,
    purpose: str | None,
    on: date | None = None,
) -> Decision:
    """The access decision for ``reader`` doing ``action`` on ``path`` of the package.

    Ambiguous or malformed records are denied (fail closed), never raised to the reader."""
    try:
        assignment = effective(path, rules.assignments)
        consent = effective_consent(path, rules.consents)
    except AccessRuleError:
        assignment, consent = None, None
    return decide(
        policy,
        action=action,
        assignment=assignment,
        role=reader.role,
        consent=consent,
        purpose=purpose,
        on=on or today(),
        second_factor=reader.second_factor,
        own_deposit=reader.organisation is not None and reader.organisation == rules.depositor,
    )


def may_see(
    policy: AccessPolicy,
    rules: Rules,
    path: str,
    *,
    reader: Principal,
    action: str,
    purpose: str | None,
    on: date | None = None,
) -> tuple[bool, list[Decision]]:
    """Whether ``reader`` may do ``action`` on ``path``: the package's metadata must be
    readable too. Returns the verdict and the decisions taken (for logging)."""
    package = decide_path(
        policy, rules, "", reader=reader, action="read-metadata", purpose=purpose, on=on
    )
    if not package.allowed:
        return False, [package]
    if path == "" and action == "read-metadata":
        return True, [package]
    item = decide_path(policy, rules, path, reader=reader, action=action, purpose=purpose, on=on)
    return item.allowed, [package, item]


def access_event(
    reader: Principal,
    package_id: str,
    what: str,
    *,
    purpose: str | None,
    decisions: Sequence[Decision],
    files: Sequence[str] = (),
) -> EventRecord:
    """The custody event of a logged read. ``files``: sha512 digests of the files read;
    ``what`` must not name paths or people (the event is kept forever)."""
    policy = decisions[0].policy if decisions else ""
    return new_event(
        "access",
        "success",
        f"{what}; by {reader.agent}; purpose: {purpose or 'none stated'}; decided under {policy}",
        links=[
            Link("package", package_id),
            *(Link("file", f"sha512:{digest}", "read") for digest in files),
        ],
        agent=reader.agent,
    )


def record_reads(session: Session, events: Sequence[EventRecord]) -> None:
    """Append the access events of reads to the custody log, each under its package, in the
    caller's transaction: a read and its record commit together or not at all."""
    record_batches(session, [(e.links[0].object_id, [e]) for e in events])


def must_log(decisions: Iterable[Decision]) -> bool:
    return any(d.allowed and d.must_log for d in decisions)
