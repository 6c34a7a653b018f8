"""Format migration: what the CLI (and, later, jobs and the API) call.

- :func:`plan_formats`: per format held, the files, bytes, PRONOM name, action and risk, and
  whether the tools are installed; nothing runs.
- :func:`pending_tasks` and :func:`run_tasks` (or :func:`migrate`, both at once): make the
  copies the policy asks for. Per package, every copy is made in a work folder under staging
  (the tool reads a copy of the original, so it can neither alter the original nor leave
  files beside it), checked (``migration.validate``), then the copies that passed are
  appended to the object as ONE new OCFL version, under the store's commit lock, with
  ``custos/formats.json`` and ``custos/premis.xml`` updated, as identification does. Every
  attempt is a PREMIS ``migration`` event (source and outcome links, tool and version,
  arguments, both digests, the checks); a failed one leaves nothing in storage or staging.
  A PDF/A copy is sealed before it is stored (``archive.proofs.pades``: the archive seal,
  PAdES B-LTA, from the configured TSA), verified, and checked again: the stored bytes, and
  the digests recorded, are those of the sealed copy. When no TSA answers, the copy is not
  stored at all: the attempt is *deferred* (a ``warning`` event) and the next run makes it.
- :func:`report`: the risk report (formats, counts, bytes, actions, what was migrated).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from archive import journal as journal_mod
from archive.catalog.index import FORMATS_JSON, PREMIS_XML
from archive.catalog.queries import resolve_package_id
from archive.catalog.tables import File, Package
from archive.clock import now
from archive.custody import new_event, parse_premis, premis_xml, record_events
from archive.digest import CopyResult, copy_with_digests, digest_file
from archive.errors import PolicyError, ProofError, StorageError
from archive.model import EventRecord, Link
from archive.proofs.seal import NoAuthorityAnswered
from archive.services import Services
from archive.storage.ocfl import head_state
from archive.storage.primary import StoredObject
from archive.versions import append_version, catalog_version, finish
from migration import tools
from migration.holdings import derivative_tally, migration_outcomes, read_holdings
from migration.plan import PlanRow, Task, attempt_key, plan, tasks
from migration.probe import Identified, Unreadable, fido_version, validator
from migration.validate import check_output, read_source
from policies.formats import FormatPolicy
from policies.load import POLICY_DIR, PolicyFileError, load_format_policy

if TYPE_CHECKING:  # pyhanko is imported only by runs that seal (it slows every command's start)
    from archive.proofs.pades import PdfSealer

AGENT = "Custos migration"
Progress = Callable[[int], None]


def load_policy(services: Services) -> tuple[FormatPolicy, Path]:
    """The format policy in force and the folder it was read from.

    Raises :class:`PolicyError` naming the file and every problem in it."""
    folder = services.settings.policy_dir
    try:
        policy = load_format_policy(folder)
    except PolicyFileError as exc:
        raise PolicyError(
            str(exc), hint="fix formats.toml (in a new version) or the policy_dir setting"
        ) from exc
    return policy, (folder or POLICY_DIR).resolve()


# --- plan ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolStatus:
    name: str
    available: bool
    detail: str  # the version, or why it is not available

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "available": self.available, "detail": self.detail}


@dataclass(frozen=True)
class Plan:
    policy: str
    rows: tuple[PlanRow, ...]
    tools: tuple[ToolStatus, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "formats": [r.as_dict() for r in self.rows],
            "tools": [t.as_dict() for t in self.tools],
        }


def plan_formats(services: Services) -> Plan:
    """Per format held: files, bytes, PRONOM name, action, risk and progress; and the
    tools the policy names, found or not. Runs nothing but the tools' version queries."""
    policy, _ = load_policy(services)
    with services.sessions() as session:
        holdings = read_holdings(session)
    statuses: list[ToolStatus] = []
    for name, tool in sorted(policy.tools.items()):
        statuses.append(_tool_status(name, partial(tools.resolve, name, tool)))
    validators = ("pdfinfo", "identify", "ffprobe")
    # A source reader that is also a pathway's tool (dcraw) is listed once, as the tool.
    readers = {p.reads_source_with for p in policy.pathways.values()}
    readers -= {*validators, *policy.tools}
    for name in (*validators, *sorted(readers)):
        statuses.append(_tool_status(name, partial(validator, name)))
    if any(p.declares_pdfa for p in policy.pathways.values()):
        from archive.proofs.pades import describe

        sealable, detail = describe(services.settings)
        statuses.append(ToolStatus("pades", sealable, detail))
    return Plan(policy.label, tuple(plan(holdings, policy)), tuple(statuses))


def _tool_status(name: str, find: Callable[[], tools.ResolvedTool]) -> ToolStatus:
    try:
        found = find()
    except tools.ToolUnavailable as exc:
        return ToolStatus(name, False, exc.message)
    return ToolStatus(name, True, f"{found.executable}: {found.version}")


# --- run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One copy attempted: its outcome and everything the event records about it."""

    task: Task
    outcome: Literal["success", "failure", "deferred"]
    reason: str  # why it failed or was deferred, or the checks passed
    source_sha512: str
    tool: tools.ResolvedTool | None = None
    output: Path | None = None
    digested: CopyResult | None = None
    identified: Identified | None = None
    seconds: float = 0.0
    tool_errors: str = field(default="", repr=False)  # for the operator; never logged

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.task.file.logical_path,
            "pathway": self.task.pathway_name,
            "role": self.task.role,
            "output": self.task.output_path if self.outcome == "success" else None,
            "outcome": self.outcome,
            "reason": self.reason,
            "tool": self.tool.label if self.tool else None,
            "source_sha512": self.source_sha512,
            "output_sha512": self.digested.digests["sha512"] if self.digested else None,
            "output_puid": self.identified.puid if self.identified else None,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class PackageRun:
    package_id: str
    version: int | None  # the new OCFL version, None when no copy was stored
    attempts: tuple[Attempt, ...]
    already_done: int = 0  # copies another process stored meanwhile (this run's discarded)

    @property
    def succeeded(self) -> int:
        return sum(a.outcome == "success" for a in self.attempts) - self.already_done

    @property
    def failed(self) -> int:
        return sum(a.outcome == "failure" for a in self.attempts)

    @property
    def deferred(self) -> int:
        return sum(a.outcome == "deferred" for a in self.attempts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "version": self.version,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "deferred": self.deferred,
            "already_done": self.already_done,
            "attempts": [a.as_dict() for a in self.attempts],
        }


@dataclass(frozen=True)
class RunReport:
    policy: str
    packages: tuple[PackageRun, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "succeeded": sum(p.succeeded for p in self.packages),
            "failed": sum(p.failed for p in self.packages),
            "deferred": sum(p.deferred for p in self.packages),
            "packages": [p.as_dict() for p in self.packages],
        }


def pending_tasks(
    services: Services, package_ref: str | None = None, *, retry_failed: bool = False
) -> list[Task]:
    """The copies still to make, in one package or in all. Raises :class:`NotFound` for an
    unknown package and :class:`PolicyError` for an invalid policy."""
    policy, _ = load_policy(services)
    with services.sessions() as session:
        ids = [resolve_package_id(session, package_ref)] if package_ref else None
        holdings = read_holdings(session, ids)
    return tasks(holdings, policy, retry_failed=retry_failed)


def migrate(
    services: Services,
    package_ref: str | None = None,
    *,
    retry_failed: bool = False,
    progress: Progress | None = None,
) -> RunReport:
    """Make every copy the policy asks for (see :func:`run_tasks`)."""
    return run_tasks(
        services, pending_tasks(services, package_ref, retry_failed=retry_failed), progress
    )


def run_tasks(
    services: Services, todo: Sequence[Task], progress: Progress | None = None
) -> RunReport:
    """Make the copies ``todo`` names, package by package, up to ``settings.workers`` at once.

    Each package that gets at least one valid copy gets one new version; failures and
    deferrals are recorded as events. Raises :class:`PolicyError` for an invalid policy,
    :class:`tools.ToolUnavailable` (before anything runs) when a tool, validator or source
    reader the tasks need is not installed, and :class:`ConfigError` when PDF/A copies are to
    be made and the archive seal (``pades.*``) cannot be read."""
    policy, policy_dir = load_policy(services)
    needed = {policy.pathways[t.pathway_name].tool for t in todo}
    resolved = {name: tools.resolve(name, policy.tools[name]) for name in sorted(needed)}
    pathways = [policy.pathways[t.pathway_name] for t in todo]
    for kind in sorted({p.validator for p in pathways} | {p.reads_source_with for p in pathways}):
        validator(kind)
    by_package: dict[str, list[Task]] = {}
    for t in todo:
        by_package.setdefault(t.file.package_id, []).append(t)
    with ExitStack() as stack:
        sealer = None
        if any(policy.pathways[t.pathway_name].declares_pdfa for t in todo):
            from archive.proofs.pades import pdf_sealer

            sealer = stack.enter_context(pdf_sealer(services.settings))
        tools_ = Toolkit(policy, policy_dir, resolved, sealer)
        runs = [
            _run_package(services, tools_, package_id, items, progress)
            for package_id, items in by_package.items()
        ]
    return RunReport(policy.label, tuple(runs))


@dataclass(frozen=True)
class Toolkit:
    """What one run makes copies with: the policy, its tools, and the PDF sealer (when PDF/A
    copies are to be made)."""

    policy: FormatPolicy
    policy_dir: Path
    resolved: dict[str, tools.ResolvedTool]
    sealer: PdfSealer | None


def _run_package(
    services: Services,
    kit: Toolkit,
    package_id: str,
    items: list[Task],
    progress: Progress | None,
) -> PackageRun:
    with services.sessions() as session:
        pkg = session.get(Package, package_id)
        assert pkg is not None
        rel = pkg.object_path
    obj = services.primary.object(rel)
    jr = journal_mod.Journal.begin(
        services.store, f"migration-{uuid.uuid4().hex}", kind="migration", package_id=package_id
    )
    try:
        (jr.folder / "done").mkdir()
        attempts: list[Attempt | None] = [None] * len(items)
        workers = max(1, min(services.settings.workers, len(items)))
        with ThreadPoolExecutor(workers) as pool:
            futures = {
                pool.submit(_attempt, kit, t, obj, jr.folder, i): i for i, t in enumerate(items)
            }
            for future in as_completed(futures):
                attempts[futures[future]] = future.result()
                if progress:
                    progress(1)
        done = [a for a in attempts if a is not None]
        with services.commit_lock():
            return _record(services, kit.policy, package_id, rel, done)
    finally:
        services.store.discard(jr.folder)
        jr.close()


def _suffix(logical_path: str) -> str:
    """The original's extension for the tool's input copy, when it is a plain one (some tools
    go by it); the copy is always named ``input``, so no name from a deposit reaches a tool."""
    name = logical_path.rpartition("/")[2]
    stem, dot, ext = name.rpartition(".")
    if dot and stem and ext.isascii() and ext.isalnum() and len(ext) <= 8:
        return "." + ext.lower()
    return ""


def _attempt(
    kit: Toolkit,
    task: Task,
    obj: StoredObject,
    work: Path,
    index: int,
) -> Attempt:
    """Make and check one copy in ``work/item-<index>``; the folder is gone afterwards and
    the copy, if valid, is in ``work/done``."""
    pathway = kit.policy.pathways[task.pathway_name]
    tool = kit.resolved[pathway.tool]
    f = task.file
    started = time.monotonic()

    def failure(
        reason: str, errors: str = "", *, outcome: Literal["failure", "deferred"] = "failure"
    ) -> Attempt:
        return Attempt(
            task,
            outcome,
            reason,
            f.sha512,
            tool,
            seconds=time.monotonic() - started,
            tool_errors=errors,
        )

    if f.size == 0:
        return failure("the original is empty (0 bytes): there is nothing to migrate")
    if pathway.declares_pdfa and kit.sealer is not None and (down := kit.sealer.outage()):
        return failure(
            f"deferred: the PDF/A copy was not made, since it is stored only with its PAdES "
            f"seal and {down}; the next run makes it",
            outcome="deferred",
        )
    folder = work / f"item-{index}"
    try:
        (folder / "in").mkdir(parents=True)
        (folder / "out").mkdir()
        source = folder / "in" / f"input{_suffix(f.logical_path)}"
        try:
            with obj.open(f.content_path) as original:
                copied = copy_with_digests(original, source, ("sha512",), size_hint=f.size)
        except StorageError as exc:
            return failure(f"the stored original could not be read, so nothing was made: {exc}")
        if copied.digests["sha512"] != f.sha512:
            return failure(
                "the stored original does not match its recorded sha512 digest, so nothing "
                "was made from it: run a fixity check of the package"
            )
        try:
            before = read_source(pathway, source, folder)
        except Unreadable as exc:
            return failure(str(exc))
        output = folder / "out" / f"input.{pathway.extension}"
        values = {
            "input": str(source),
            "output": str(output),
            "outdir": str(output.parent),
            "workdir": str(folder),
            "workdir_url": folder.as_uri(),
            "policy_dir": str(kit.policy_dir),
        }
        argv = [tool.executable, *tools.expand(pathway.args, values)]
        ran = tools.run(
            argv,
            cwd=folder,
            time_limit=pathway.time_limit_seconds,
            stdout=output if pathway.output_is_stdout else None,
        )
        if ran.status == "timed-out":
            return failure(
                f"{tool.name} was killed after the pathway's time limit of "
                f"{pathway.time_limit_seconds:g} s",
                ran.stderr_tail,
            )
        if not ran.ok:
            return failure(f"{tool.name} {ran.describe()}", ran.stderr_tail)
        if not output.is_file() or output.stat().st_size == 0:
            return failure(
                f"{tool.name} exited with status 0 but wrote no output (input.{pathway.extension})",
                ran.stderr_tail,
            )
        check = check_output(pathway, output, before, folder)
        if not check.ok:
            return failure(f"the output failed validation: {check.summary()}", ran.stderr_tail)
        summary = check.summary()
        if pathway.declares_pdfa:
            assert kit.sealer is not None  # run_tasks makes one when a pathway declares PDF/A
            sealed = folder / "out" / f"sealed.{pathway.extension}"
            try:
                seal = kit.sealer.seal(output, sealed)
            except NoAuthorityAnswered as exc:
                return failure(
                    f"deferred: the PDF/A copy was made but not stored, since it is stored "
                    f"only with its PAdES seal and {exc.message}; the next run makes it again",
                    outcome="deferred",
                )
            except ProofError as exc:
                return failure(f"the PDF/A copy could not be sealed: {exc.message}")
            from archive.proofs.pades import verify_pdf

            try:
                verdict = verify_pdf(sealed, kit.sealer.roots)
            except ProofError as exc:
                return failure(f"the sealed PDF/A copy does not verify: {exc.message}")
            check = check_output(pathway, sealed, before, folder)
            if not check.ok:
                return failure(f"the sealed copy failed validation: {check.summary()}")
            output, summary = sealed, f"{check.summary()}; {seal.summary(verdict.signed_at)}"
        digested = digest_file(output)
        kept = work / "done" / f"{index}.{pathway.extension}"
        output.rename(kept)
        return Attempt(
            task,
            "success",
            summary,
            f.sha512,
            tool,
            kept,
            digested,
            check.identified,
            time.monotonic() - started,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _event(a: Attempt, policy: FormatPolicy, package_id: str) -> EventRecord:
    pathway = policy.pathways[a.task.pathway_name]
    key = attempt_key(a.task.pathway_name, policy.label)
    tool = a.tool.label if a.tool else pathway.tool
    args = json.dumps(list(pathway.args), ensure_ascii=False)
    links = [Link("package", package_id), Link("file", a.task.file.logical_path, "source")]
    if a.outcome == "success" and a.digested is not None:
        links.append(Link("file", a.task.output_path, "outcome"))
        detail = (
            f"{key}: {a.task.role} copy {a.task.output_path} made by {tool} with arguments "
            f"{args}; source sha512:{a.source_sha512}; output sha512:"
            f"{a.digested.digests['sha512']}; checks: {a.reason}"
        )
        outcome: Literal["success", "failure", "warning"] = "success"
    elif a.outcome == "deferred":
        detail = (
            f"{key}: no {a.task.role} copy yet, {a.reason}; tool {tool}, arguments {args}; "
            f"source sha512:{a.source_sha512}"
        )
        outcome = "warning"
    else:
        detail = (
            f"{key}: no {a.task.role} copy: {a.reason}; tool {tool}, arguments {args}; "
            f"source sha512:{a.source_sha512}"
        )
        outcome = "failure"
    return new_event("migration", outcome, detail, links=links, agent=tool)


def _record(
    services: Services,
    policy: FormatPolicy,
    package_id: str,
    rel: str,
    attempts: list[Attempt],
) -> PackageRun:
    """Under the commit lock: the valid copies as the object's next version, then the
    catalog rows and events in one transaction (failures alone: their events only)."""
    with services.sessions() as session:
        held = set(
            session.execute(
                select(File.logical_path).where(
                    File.package_id == package_id, File.role == "derivative"
                )
            ).scalars()
        )
    fresh = [a for a in attempts if a.outcome == "success" and a.task.output_path not in held]
    already = sum(a.outcome == "success" and a.task.output_path in held for a in attempts)
    kept = {id(a) for a in fresh}
    events = [
        _event(a, policy, package_id) for a in attempts if a.outcome != "success" or id(a) in kept
    ]
    if not fresh:
        with services.session_scope() as session:
            record_events(session, events, package_id=package_id)
        return PackageRun(package_id, None, tuple(attempts), already)

    obj = services.primary.object(rel)
    state = head_state(obj.inventory())
    formats: dict[str, Any] = {}
    if FORMATS_JSON in state:
        formats = json.loads(obj.read_bytes(state[FORMATS_JSON]))
    old_events = parse_premis(obj.read_bytes(state[PREMIS_XML]))
    fido = fido_version()
    found: dict[str, Identified] = {}
    for a in fresh:
        ident = a.identified or Identified(None, None, None, "none")
        found[a.task.output_path] = ident
        formats[a.task.output_path] = {
            "puid": ident.puid,
            "mime_type": ident.mime_type,
            "format_name": ident.format_name,
            "basis": ident.basis,
            "tool": fido,
        }
    created = now().astimezone().replace(microsecond=0)
    message = f"Format migration: {len(fresh)} derivative(s) under {policy.label}"
    moved: dict[str, tuple[Path, CopyResult]] = {}
    for a in fresh:
        assert a.output is not None and a.digested is not None
        moved[a.task.output_path] = (a.output, a.digested)
    new = append_version(
        services.primary,
        rel,
        {FORMATS_JSON: _json(formats), PREMIS_XML: premis_xml([*old_events, *events])},
        message=message,
        agent=AGENT,
        created=created,
        moved=moved,
    )
    with services.session_scope() as session:
        catalog_version(
            session,
            package_id,
            new,
            message=message,
            agent=AGENT,
            formats={
                path: {"puid": i.puid, "mime_type": i.mime_type, "format_name": i.format_name}
                for path, i in found.items()
            },
        )
        record_events(session, events, package_id=package_id)
    finish(services.store, new)
    return PackageRun(package_id, new.number, tuple(attempts), already)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


# --- report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    policy: str
    generated_at: datetime
    rows: tuple[PlanRow, ...]
    derivatives: tuple[dict[str, Any], ...]
    outcomes: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "generated_at": self.generated_at.isoformat(),
            "totals": {
                "files": sum(r.files for r in self.rows),
                "bytes": sum(r.bytes for r in self.rows),
                "preserved": sum(r.preserved for r in self.rows),
                "access_copies": sum(r.access_copies for r in self.rows),
                "failed": sum(r.failed for r in self.rows),
                "to_do": sum(r.to_do for r in self.rows),
            },
            "formats": [r.as_dict() for r in self.rows],
            "derivatives": list(self.derivatives),
            "migration_events": self.outcomes,
        }


def report(services: Services) -> Report:
    """The risk report: formats held, counts, bytes, PRONOM names, action and risk, and what
    has been migrated (derivatives stored, migration events by outcome)."""
    policy, _ = load_policy(services)
    with services.sessions() as session:
        holdings = read_holdings(session)
        tally = derivative_tally(session)
        outcomes = migration_outcomes(session)
    return Report(
        policy.label,
        now(),
        tuple(plan(holdings, policy)),
        tuple(
            {"role": t.role, "extension": t.extension, "files": t.files, "bytes": t.bytes}
            for t in tally
        ),
        outcomes,
    )
