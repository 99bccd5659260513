"""The ``segship`` command: global options, error handling, and the command groups.

Errors are printed on stderr as one line (redacted) without a traceback unless
``--debug``. Exit codes: 0 success, 1 a run failed or was aborted, 2 invalid config or
usage, 3 the run finished but some rows were rejected.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from segship.log import configure_logging, redact_text
from segship.plugins import get_plugins

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_REJECTS = 0, 1, 2, 3

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file or directory. Default: $SEGSHIP_CONFIG, else ./segship.yaml, "
                                        "else ./configs/, else the current directory when its YAML files are "
                                        "segship's.", show_default=False),
]


def config_path(given: Path | None) -> Path:
    """The config to use (see ``segship.config.discovery``); ConfigError saying where it looked if none."""
    from segship.config.discovery import find_config

    return find_config(given)


@dataclass
class GlobalOptions:
    role: str = "admin"
    debug: bool = False
    log_pii: bool = False
    json_logs: bool = False


options = GlobalOptions()

app = typer.Typer(
    name="segship",
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
    options.role, options.debug, options.log_pii = role, debug, log_pii
    options.json_logs = log_format == "json"
    configure_logging(json_format=options.json_logs, level=log_level, log_pii=log_pii)


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print an error line on stderr (redacted) and return the Exit to raise."""
    typer.echo(f"error: {redact_text(message)}", err=True)
    return typer.Exit(code)


def load_config_or_exit(given: Path | None):
    """The validated config, or the config errors on stderr and exit 2."""
    from segship.config import ConfigError, load_config

    try:
        return load_config(config_path(given), get_plugins())
    except ConfigError as error:
        typer.echo(error.render(), err=True)
        raise typer.Exit(EXIT_INVALID) from None


def _register_commands() -> None:
    from segship.cli import (  # noqa: F401 - they register commands on app
        config_commands,
        init_command,
        run_commands,
        source_commands,
        state_commands,
    )

    get_plugins().register_commands(app, sandbox_app)


def main() -> None:
    configure_logging()
    _register_commands()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - last resort: one redacted line, traceback only with --debug
        if options.debug or os.environ.get("SEGSHIP_DEBUG"):
            import traceback

            typer.echo(redact_text("".join(traceback.format_exception(exc))), err=True)
        typer.echo(f"error: {redact_text(f'{type(exc).__name__}: {exc}')}", err=True)
        sys.exit(EXIT_FAILED)
