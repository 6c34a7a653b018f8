"""The command line's shell: the root app, shared options, output and the error handler, and
the registration of the function packages' sub-apps (``custos.commands`` entry points)."""

from __future__ import annotations

import json
import os
import pwd
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.core
import typer.main
from rich.console import Console
from rich.markup import escape

from archive.errors import EXIT_CODES, CustosError, InputRejected

if TYPE_CHECKING:
    from typer._click import Command, Context

    from archive.config import Settings
    from archive.services import Services

T = TypeVar("T")


class _RootGroup(typer.core.TyperGroup):
    """The root command group. The sub-apps of the function packages are loaded only when a
    command outside the core is named, or when every command is listed (``--help``): the core
    commands (``custos status``, ...) start without importing them."""

    def list_commands(self, ctx: Context) -> list[str]:
        self._load_sub_apps()
        return super().list_commands(ctx)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] not in self.commands:
            self._load_sub_apps()
        return super().resolve_command(ctx, args)

    def _load_sub_apps(self) -> None:
        if _register_sub_apps():
            self.commands = typer.main.get_group(app).commands


app = typer.Typer(
    name="custos",
    help="Custos: a long-term preservation archive for evidence. BagIt in, OCFL out, "
    "every step recorded.",
    cls=_RootGroup,
    no_args_is_help=True,
    epilog="Exit status: "
    + "; ".join(f"{code} {meaning.split(':')[0]}" for code, meaning in EXIT_CODES.items())
    + " (archive/errors.py).",
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@dataclass
class State:
    data_dir: Path | None = None
    config: Path | None = None
    _services: Services | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        from archive.config import load_settings

        return load_settings(data_dir=self.data_dir, config_file=self.config)

    def services(self) -> Services:
        from archive.services import open_services

        if self._services is None:
            self._services = open_services(self.settings())
            for line in self._services.recovered:
                err.print(f"[yellow]recovery:[/] {escape(line)}")
        return self._services


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data folder holding the catalog and the storage root "
            "(env CUSTOS_DATA_DIR; default ./custos-data).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML settings file (env CUSTOS_CONFIG; default DATA_DIR/custos.toml if present).",
        ),
    ] = None,
) -> None:
    ctx.obj = State(data_dir, config)
    ctx.call_on_close(lambda: ctx.obj._services.close() if ctx.obj._services else None)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def fail(exc: CustosError, as_json: bool) -> typer.Exit:
    """Report an error on stderr (and as JSON on stdout when asked); return the exit."""
    err.print(f"[red]error:[/] {escape(exc.diagnostics())}")
    if as_json:
        body: dict[str, Any] = {
            "status": "error",
            "error": exc.__class__.__name__,
            "message": exc.message,
            "hint": exc.hint,
        }
        if isinstance(exc, InputRejected):
            body["status"] = "refused"
            body["findings"] = [f.as_dict() for f in exc.findings]
        emit_json(body)
    return typer.Exit(exc.exit_code)


def run(as_json: bool, fn: Callable[[], T]) -> T:
    """Call a service; turn a :class:`CustosError` into its message and exit status."""
    try:
        return fn()
    except CustosError as exc:
        raise fail(exc, as_json) from None


@contextmanager
def progress_bar(
    label: str, total: int | None, enabled: bool, *, unit: str = "bytes"
) -> Iterator[Callable[[int], None] | None]:
    """A Rich progress bar on stderr when it is a terminal (in ``unit``: bytes or items);
    otherwise nothing. Yields the function that advances it."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        if unit == "bytes"
        else (MofNCompleteColumn(), TimeRemainingColumn())
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), *columns, console=err, transient=True
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def operator() -> str:
    """The acting operator, as far as a command knows: the system account running it (named
    in the custody events of what it changes)."""
    try:
        account = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        account = f"uid {os.geteuid()}"
    return f"operator {account} (system account)"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


_registered = False


def get_app() -> typer.Typer:
    """The full command line: the core commands plus every registered sub-app (once)."""
    _register_sub_apps()
    return app


def _register_sub_apps() -> bool:
    """Register the sub-apps of the ``custos.commands`` entry points, unless done already;
    say whether this call did."""
    global _registered
    if _registered:
        return False
    for ep in sorted(entry_points(group="custos.commands"), key=lambda e: e.name):
        ep.load()(app)
    _markdown_help(app)
    _registered = True
    return True


def _markdown_help(group: typer.Typer) -> None:
    """Help read as Markdown in every group: a group's list of commands then joins the lines
    of each command's first paragraph (Rich's markup mode kept the docstrings' line breaks
    there, cutting sentences mid-line), and `code` is shown as code rather than with its
    backticks. No help text uses Rich markup (square brackets would be taken for it)."""
    group.rich_markup_mode = "markdown"
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _markdown_help(sub.typer_instance)


def main() -> None:
    """``custos``: the core commands run without loading the sub-apps (see :class:`_RootGroup`)."""
    _markdown_help(app)
    app()
