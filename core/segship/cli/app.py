"""The ``segship`` Typer app: its global options, its error handling, and what every command shares.

A leaf: it imports no command module. Each command module adds its commands to ``app`` when
imported, and ``segship.cli.main`` imports them all (and registers the plugins' commands), so
the app is complete once ``segship.cli.main`` is imported.

The global options (``-c``, ``--role``, ``--log-format``, ``--log-level``, ``--log-pii``,
``--debug``) are declared once, on the app's callback, and accepted before the command or after
it, as dbt >= 1.5 accepts its flags: :class:`SegshipGroup` gives every command typer builds a
copy of each, and a value given after the command replaces the one given before. Either way
they reach a command through typer's context (``GlobalOptions.of(ctx)``). A
:class:`~segship.errors.SegshipError` escaping a command is printed on stderr as one line
(redacted) and exits with its outcome's code; any other exception likewise, as ``Type: message``,
with the traceback only under ``--debug`` (or ``SEGSHIP_DEBUG``). Exit codes: ``cli/exit_codes.py``.
"""

from __future__ import annotations

import copy
import os
import platform
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from segship import __version__
from segship.cli.exit_codes import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INVALID,
    OUTCOME_EXIT_CODES,
    combined_exit_code,
)
from segship.config.issues import ConfigError
from segship.errors import SegshipError
from segship.log import configure_logging, redact_text
from segship.plugins import get_plugins

if TYPE_CHECKING:
    from segship.config import Config

#: The parameters of ``global_options`` that every command accepts too (``--version`` is the app's alone).
GLOBAL_OPTIONS = ("config", "role", "log_format", "log_level", "log_pii", "debug")


@dataclass
class GlobalOptions:
    """The global options of one invocation, as the commands read them: those given after the
    command replace those given before it (one object, shared by the invocation's contexts)."""

    config: Path | None = None
    role: str = "admin"
    log_format: str = "console"
    log_level: str = "info"
    log_pii: bool = False
    debug: bool = False

    @classmethod
    def of(cls, ctx: typer.Context) -> GlobalOptions:
        """The options of the command running in ``ctx`` (the app's callback set them before it ran)."""
        return ctx.ensure_object(cls)

    def configure_logging(self) -> None:
        configure_logging(json_format=self.log_format == "json", level=self.log_level, log_pii=self.log_pii)


class CommandFailed(typer.Exit):
    """How a command ends on an error it has printed: its exit code, and the message, for what
    records it (``export --report``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message


def fail(message: str, code: int = EXIT_FAILED) -> CommandFailed:
    """Print an error line on stderr (redacted) and return the Exit to raise."""
    message = redact_text(message)
    typer.echo(f"error: {message}", err=True)
    return CommandFailed(code, message)


def fail_with_config(error: ConfigError) -> CommandFailed:
    """Print the config's errors on stderr, one line each with its place, and return the Exit to raise (2)."""
    typer.echo(error.render(), err=True)
    return CommandFailed(EXIT_INVALID, str(error))


def fail_with(error: SegshipError, subject: str | None = None) -> typer.Exit:
    """``fail`` for one of segship's errors, with its outcome's exit code; the message follows
    ``subject: `` (what failed) unless it starts with its place in the config (``invalid``)."""
    prefix = f"{subject}: " if subject is not None and error.outcome != "invalid" else ""
    return fail(f"{prefix}{error}", OUTCOME_EXIT_CODES[error.outcome])


def names_to_check(kind: str, name: str | None, check_all: bool, known: Iterable[str]) -> list[str]:
    """What ``connections test`` / ``sources test`` check: the ``kind`` named, or all of them with ``--all``."""
    known = list(known)
    if check_all == (name is not None):
        raise fail(f"name one {kind}, or use --all", EXIT_INVALID)
    if check_all:
        return known
    if name not in known:
        raise fail(f"unknown {kind} {name!r} ({kind}s: {', '.join(sorted(known)) or 'none'})", EXIT_INVALID)
    return [name]


def check_each(names: Iterable[str], check: Callable[[str], Iterable[str]], *, name_errors: bool) -> typer.Exit:
    """Check each of ``names``: ``check``'s lines on stdout, or its error on stderr (after the name when
    ``name_errors``) and on to the next; the Exit to raise: 0 when every check passed, else the worst
    failure's code."""
    outcomes = []
    for name in names:
        try:
            lines = check(name)
        except SegshipError as error:
            fail_with(error, name if name_errors else None)  # printed; the others are still checked
            outcomes.append(error.outcome)
            continue
        for line in lines:
            typer.echo(redact_text(line))
        outcomes.append("succeeded")
    return typer.Exit(combined_exit_code(outcomes))


class SegshipGroup(TyperGroup):
    """The ``segship`` command: every command accepts the global options too, and what escapes a
    command becomes one redacted line and an exit code."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        shared = [param for param in self.params if param.name in GLOBAL_OPTIONS]
        for command in _leaf_commands(self):
            # a command's own option of the same name (a plugin's command may have one) keeps it
            taken = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
            command.params += [_after_command(param) for param in shared if taken.isdisjoint(param.opts)]

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # exits, usage errors: typer prints them
            raise
        except SegshipError as error:
            raise fail_with(error) from None
        except Exception as exc:  # noqa: BLE001 - last resort: one redacted line, traceback only with --debug
            if GlobalOptions.of(ctx).debug or os.environ.get("SEGSHIP_DEBUG"):
                typer.echo(redact_text("".join(traceback.format_exception(exc))), err=True)
            raise fail(f"{type(exc).__name__}: {exc}") from None


def _leaf_commands(group: Any) -> Iterator[Any]:
    """Every command below a group (``state show``, ``sandbox braze``...), not the groups themselves."""
    for command in group.commands.values():
        if hasattr(command, "commands"):
            yield from _leaf_commands(command)
        else:
            yield command


def _after_command(param: Any) -> Any:
    """A copy of a global option for a command to accept after its name: not given, it leaves the
    value given before the command (or its default) alone; given, it replaces it. Checked as the
    original is (``--role``...); no environment variable (that is read once, before the command)."""
    check: Callable[..., Any] | None = param.callback
    after = copy.copy(param)
    after.default, after.envvar, after.expose_value = None, None, False

    def take(ctx: typer.Context, given: Any, value: Any) -> None:
        if value is None:
            return
        options = GlobalOptions.of(ctx)
        setattr(options, param.name, check(ctx, given, value) if check is not None else value)
        options.configure_logging()

    after.callback = take
    return after


def _check_role(value: str) -> str:
    if value not in ("admin", "contributor"):
        raise typer.BadParameter("must be 'admin' or 'contributor'", param_hint="--role")
    return value


def _check_log_format(value: str) -> str:
    if value not in ("console", "json"):
        raise typer.BadParameter("must be 'console' or 'json'", param_hint="--log-format")
    return value


def _print_version(value: bool) -> None:
    """``--version``: segship's version and each installed plugin's, as ``pytest --version`` lists its plugins."""
    if not value:
        return
    typer.echo(f"segship {__version__} (Python {platform.python_version()})")
    plugins = [info for info in get_plugins().infos if info.distribution != "segship (built in)"]
    typer.echo("plugins:" if plugins else "plugins: none installed")
    for info in plugins:
        provides = [f"destination {name}" for name in info.destinations] + [f"source {name}" for name in info.sources]
        typer.echo(f"  {info.distribution} {info.version} (plugin {info.name}: {', '.join(provides) or 'nothing'})")
    raise typer.Exit()


app = typer.Typer(
    name="segship",
    cls=SegshipGroup,
    help="Export customer segments from your own data to marketing destinations.\n\nThe options below are "
         "accepted after the command too: segship plan -c configs is segship -c configs plan.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(help="Run a local emulator of a destination's API (for tests and demos).",
                          no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@app.callback()
def global_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Config file or directory. Default: $SEGSHIP_CONFIG, else ./segship.yaml, else "
                               "./configs/, else the current directory when its YAML files are segship's.",
        show_default=False)] = None,
    role: Annotated[str, typer.Option("--role", envvar="SEGSHIP_ROLE", callback=_check_role,
                                      help="Who runs: admin (default) or contributor; "
                                           "a contributor can't use an admins-only connection.")] = "admin",
    log_format: Annotated[str, typer.Option("--log-format", callback=_check_log_format,
                                            help="Log lines as 'console' or 'json'.")] = "console",
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    log_pii: Annotated[bool, typer.Option("--log-pii", help="Show emails and phone numbers in logs "
                                                            "and in `segship log` (masked by default).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Show the versions of segship and of every installed plugin, "
                                               "and exit.")] = False,
) -> None:
    """Export customer segments from your own data to marketing destinations."""
    ctx.obj = GlobalOptions(config, role, log_format, log_level, log_pii, debug)
    ctx.obj.configure_logging()


def config_path(ctx: typer.Context) -> Path:
    """The config to use (see ``segship.config.discovery``); ConfigError saying where it looked if none."""
    from segship.config.discovery import find_config

    return find_config(GlobalOptions.of(ctx).config)


def load_config_or_exit(ctx: typer.Context) -> Config:
    """The validated config, or the config errors on stderr and exit 2."""
    from segship.config import load_config

    try:
        return load_config(config_path(ctx), get_plugins())
    except ConfigError as error:
        raise fail_with_config(error) from None
