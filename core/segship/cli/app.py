"""The ``segship`` Typer app: its global options, its error handling, and what every command shares.

A leaf: it imports no command module. Each command module adds its commands to ``app`` when
imported, and ``segship.cli.main`` imports them all (and registers the plugins' commands), so
the app is complete once ``segship.cli.main`` is imported.

The global options reach a command through typer's context (``GlobalOptions.of(ctx)``). A
:class:`~segship.errors.SegshipError` escaping a command is printed on stderr as one line
(redacted) and exits with its outcome's code; any other exception likewise, as ``Type: message``,
with the traceback only under ``--debug`` (or ``SEGSHIP_DEBUG``). Exit codes: ``cli/exit_codes.py``.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from segship.cli.exit_codes import EXIT_FAILED, EXIT_INVALID, OUTCOME_EXIT_CODES
from segship.errors import SegshipError
from segship.log import configure_logging, redact_text
from segship.plugins import get_plugins

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file or directory. Default: $SEGSHIP_CONFIG, else ./segship.yaml, "
                                        "else ./configs/, else the current directory when its YAML files are "
                                        "segship's.", show_default=False),
]


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command, as the commands read them."""

    role: str = "admin"
    debug: bool = False

    @classmethod
    def of(cls, ctx: typer.Context) -> GlobalOptions:
        """The options of the command running in ``ctx`` (the app's callback set them before it ran)."""
        return ctx.ensure_object(cls)


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print an error line on stderr (redacted) and return the Exit to raise."""
    typer.echo(f"error: {redact_text(message)}", err=True)
    return typer.Exit(code)


def fail_with(error: SegshipError, subject: str | None = None) -> typer.Exit:
    """``fail`` for one of segship's errors, with its outcome's exit code; the message follows
    ``subject: `` (what failed) unless it starts with its place in the config (``invalid``)."""
    prefix = f"{subject}: " if subject is not None and error.outcome != "invalid" else ""
    return fail(f"{prefix}{error}", OUTCOME_EXIT_CODES[error.outcome])


class SegshipGroup(TyperGroup):
    """The ``segship`` command: what escapes a command becomes one redacted line and an exit code."""

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


app = typer.Typer(
    name="segship",
    cls=SegshipGroup,
    help="Export customer segments from your own data to marketing destinations.",
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
    role: Annotated[str, typer.Option("--role", envvar="SEGSHIP_ROLE",
                                      help="Who runs: admin (default) or contributor; "
                                           "a contributor can't use an admins-only connection.")] = "admin",
    log_format: Annotated[str, typer.Option("--log-format", help="Log lines as 'console' or 'json'.")] = "console",
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    log_pii: Annotated[bool, typer.Option("--log-pii", help="Show emails and phone numbers in logs "
                                                            "(masked by default).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Export customer segments from your own data to marketing destinations."""
    if role not in ("admin", "contributor"):
        raise typer.BadParameter("must be 'admin' or 'contributor'", param_hint="--role")
    if log_format not in ("console", "json"):
        raise typer.BadParameter("must be 'console' or 'json'", param_hint="--log-format")
    ctx.obj = GlobalOptions(role=role, debug=debug)
    configure_logging(json_format=log_format == "json", level=log_level, log_pii=log_pii)


def config_path(given: Path | None) -> Path:
    """The config to use (see ``segship.config.discovery``); ConfigError saying where it looked if none."""
    from segship.config.discovery import find_config

    return find_config(given)


def load_config_or_exit(given: Path | None):
    """The validated config, or the config errors on stderr and exit 2."""
    from segship.config import ConfigError, load_config

    try:
        return load_config(config_path(given), get_plugins())
    except ConfigError as error:
        typer.echo(error.render(), err=True)
        raise typer.Exit(EXIT_INVALID) from None
