"""The format policy (``formats.toml``): what to do with each format held, as data.

A *rule* names PRONOM PUIDs, a risk and an action: ``keep`` (the format is judged safe: no
derivative), ``migrate`` (make a preservation copy), ``access`` (make an access copy) or
``migrate+access``. A *pathway* says how a copy is made and checked: the tool and its argument
template, the target format (extension, the PUIDs and MIME type the output must have), the
validator that opens the output, what reads the original's properties when the validator cannot
(``source_reader``: dcraw for raw camera files), the significant properties compared with the
source, whether the tool writes the copy to its standard output, and the time limit after which
the tool is killed. A *tool* names the program a pathway runs, and how
to ask its version.

Loading is strict (unknown keys, names or placeholders are errors) and checks the links: every
pathway a rule names exists and has the role of the slot it fills, every tool a pathway names
is declared, a PUID belongs to one rule at most, a property is one the validator (and the
source reader, when the pathway names one) can read.
The originals are never touched by any of this: a pathway only ever adds a copy.

Pure data and pure functions: no subprocess runs here (see ``migration.tools``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from policies.schema import PolicyHeader

Risk = Literal["low", "medium", "high"]
Action = Literal["keep", "migrate", "access", "migrate+access"]
Role = Literal["preservation", "access"]
Validator = Literal["pdfinfo", "identify", "ffprobe"]
#: What reads the original's significant properties: a validator, or dcraw for raw camera
#: files (which no validator opens).
SourceReader = Literal["pdfinfo", "identify", "ffprobe", "dcraw"]
Property = Literal["page_count", "pixel_dimensions", "frame_count", "duration", "audio_channels"]

#: What each validator (or source reader) can read, from the source and from the output.
READABLE: dict[str, frozenset[str]] = {
    "pdfinfo": frozenset({"page_count"}),
    "identify": frozenset({"pixel_dimensions", "frame_count"}),
    "ffprobe": frozenset({"duration", "pixel_dimensions", "audio_channels"}),
    "dcraw": frozenset({"pixel_dimensions"}),
}
#: Placeholders an argument template may use; each is replaced by a path the service chooses.
PLACEHOLDERS = frozenset({"input", "output", "outdir", "workdir", "workdir_url", "policy_dir"})

PUID = Annotated[str, StringConstraints(pattern=r"^(x-)?fmt/[0-9]+$|^fido-fmt/[0-9a-z./-]+$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
#: A placeholder is a name in braces; other braces (JSON filter options) are left as they are.
PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tool(_Strict):
    """A program pathways run: the first of ``commands`` found on PATH whose version text
    holds ``identifies_as`` (when given; ``convert`` may be another program than ImageMagick's)."""

    commands: tuple[NonBlank, ...] = Field(min_length=1)
    version_args: tuple[str, ...] = ("--version",)
    identifies_as: str = ""
    debian_package: str = ""


class Pathway(_Strict):
    """How one copy is made and checked."""

    role: Role
    description: NonBlank
    tool: Name
    args: tuple[str, ...] = Field(min_length=1)
    extension: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,8}$")]
    target_puids: tuple[PUID, ...] = Field(min_length=1)
    target_mime: NonBlank
    validator: Validator
    #: Reads the original's properties; the validator when not given.
    source_reader: SourceReader | None = None
    properties: tuple[Property, ...] = ()
    #: The tool writes the copy to its standard output, which the runner streams to {output}.
    output_is_stdout: bool = False
    #: The output's XMP must declare this PDF/A part and conformance (e.g. "2B"); pdfinfo only.
    declares_pdfa: Annotated[str, StringConstraints(pattern=r"^[1-4][ABU]?$")] | None = None
    duration_tolerance_seconds: float = Field(default=0.5, ge=0, le=60)
    time_limit_seconds: float = Field(gt=0, le=86400)

    @model_validator(mode="after")
    def _consistent(self) -> Pathway:
        problems: list[str] = []
        used: set[str] = set()
        for arg in self.args:
            for name in PLACEHOLDER.findall(arg):
                if name not in PLACEHOLDERS:
                    problems.append(
                        f"argument {arg!r}: unknown placeholder {{{name}}} "
                        f"(use {', '.join(sorted(PLACEHOLDERS))})"
                    )
                used.add(name)
        if "input" not in used:
            problems.append("the arguments never name {input}")
        if self.output_is_stdout and used & {"output", "outdir"}:
            problems.append(
                "output_is_stdout: the copy is the tool's standard output, so the arguments "
                "must name neither {output} nor {outdir}"
            )
        if not self.output_is_stdout and not used & {"output", "outdir"}:
            problems.append(
                "the arguments name neither {output} nor {outdir} (or set output_is_stdout = true)"
            )
        unreadable = [p for p in self.properties if p not in READABLE[self.validator]]
        if unreadable:
            problems.append(
                f"validator {self.validator} cannot read {', '.join(unreadable)} "
                f"(it reads {', '.join(sorted(READABLE[self.validator]))})"
            )
        if self.source_reader is not None:
            unread = [p for p in self.properties if p not in READABLE[self.source_reader]]
            if unread:
                problems.append(
                    f"source_reader {self.source_reader} cannot read {', '.join(unread)} "
                    f"(it reads {', '.join(sorted(READABLE[self.source_reader]))})"
                )
        if self.declares_pdfa and self.validator != "pdfinfo":
            problems.append("declares_pdfa needs validator = 'pdfinfo'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def reads_source_with(self) -> SourceReader:
        """What reads the original's significant properties."""
        return self.source_reader or self.validator


class Rule(_Strict):
    """What to do with the formats named by ``puids``."""

    label: NonBlank
    puids: tuple[PUID, ...] = Field(min_length=1)
    risk: Risk
    action: Action
    migrate: Name | None = None
    access: Name | None = None
    note: str = ""

    @model_validator(mode="after")
    def _slots_match_action(self) -> Rule:
        wants_migrate = self.action in ("migrate", "migrate+access")
        wants_access = self.action in ("access", "migrate+access")
        if wants_migrate != (self.migrate is not None):
            raise ValueError(
                f"action {self.action!r} "
                + ("needs a 'migrate' pathway" if wants_migrate else "takes no 'migrate' pathway")
            )
        if wants_access != (self.access is not None):
            raise ValueError(
                f"action {self.action!r} "
                + ("needs an 'access' pathway" if wants_access else "takes no 'access' pathway")
            )
        return self

    @property
    def pathways(self) -> tuple[str, ...]:
        return tuple(p for p in (self.migrate, self.access) if p is not None)


class FormatPolicy(PolicyHeader):
    """``policies/formats.toml``: tools, pathways and the rule for each format."""

    tools: dict[Name, Tool] = Field(min_length=1)
    pathways: dict[Name, Pathway] = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _links(self) -> FormatPolicy:
        problems: list[str] = []
        for name, declared in self.pathways.items():
            if declared.tool not in self.tools:
                problems.append(f"pathways.{name}: tool {declared.tool!r} is not in [tools]")
        owner: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            where = f"rules[{i}] ({rule.label})"
            for puid in rule.puids:
                if puid in owner:
                    problems.append(f"{where}: {puid} is already in rules[{owner[puid]}]")
                owner.setdefault(puid, i)
            for slot, role in (("migrate", "preservation"), ("access", "access")):
                name = getattr(rule, slot)
                if name is None:
                    continue
                pathway = self.pathways.get(name)
                if pathway is None:
                    problems.append(f"{where}: {slot} pathway {name!r} is not in [pathways]")
                elif pathway.role != role:
                    problems.append(
                        f"{where}: {slot} pathway {name!r} makes a {pathway.role} copy, "
                        f"not a {role} copy"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rule_for(self, puid: str | None) -> Rule | None:
        """The rule naming ``puid``, or None: a format the policy does not cover."""
        if puid is None:
            return None
        for rule in self.rules:
            if puid in rule.puids:
                return rule
        return None


def derivative_path(role: Role, source_logical_path: str, extension: str) -> str:
    """Where a copy of a stored file goes in the package (logical path in the object)."""
    return f"custos/derivatives/{role}/{source_logical_path}.{extension}"


def source_of(derivative_logical_path: str) -> tuple[Role, str] | None:
    """The role and source path of a derivative path, or None if it is not one."""
    prefix = "custos/derivatives/"
    if not derivative_logical_path.startswith(prefix):
        return None
    role, _, rest = derivative_logical_path[len(prefix) :].partition("/")
    source, dot, _ext = rest.rpartition(".")
    if role not in ("preservation", "access") or not dot or not source:
        return None
    return role, source  # type: ignore[return-value]
