"""The ``segship`` command: the app of ``cli/app.py`` with every command on it.

Importing this module completes the app: the command modules add theirs as they are imported,
and the installed plugins theirs (``segship_register_commands``), so ``app`` can be invoked as
it is (``typer.testing.CliRunner().invoke(app, [...])``). Loading the plugins here costs no
start-up time: every command but ``--help`` loads them anyway (the config is validated against
their schemas), and ``--help`` lists their commands.
"""

from __future__ import annotations

from segship.cli import (  # noqa: F401 - importing a command module registers its commands on app
    config_commands,
    init_command,
    log_command,
    plugin_command,
    retire_command,
    run_commands,
    source_commands,
    state_commands,
)
from segship.cli.app import app, sandbox_app
from segship.log import configure_logging
from segship.plugins import get_plugins

configure_logging()  # before the plugins load: a plugin skipped is a warning on stderr, not on stdout
get_plugins().register_commands(app, sandbox_app)


def main() -> None:
    app()
