"""`segship plugin new NAME [DIR]`: scaffold a destination plugin whose tests pass at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segship.cli.app import app, fail
from segship.cli.exit_codes import EXIT_INVALID

plugin_app = typer.Typer(help="Write plugins for segship.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")


@plugin_app.command("new")
def plugin_new_command(
    name: Annotated[str, typer.Argument(help="The destination's name: its connection type (lower case, digits, _).")],
    directory: Annotated[Path | None, typer.Argument(help="Where to write it (default: ./segship-NAME).")] = None,
) -> None:
    """Scaffold a destination plugin distribution: pyproject with the entry point, destination, schemas,
    sandbox, tests on segship.testing, README. Its tests pass at once; exit 2, writing nothing, if a
    file exists."""
    from segship.scaffold import ScaffoldError, write_plugin

    target = directory if directory is not None else Path(f"segship-{name.replace('_', '-')}")
    try:
        written = write_plugin(name, target)
    except ScaffoldError as exc:
        raise fail(str(exc), EXIT_INVALID) from None
    for path in written:
        typer.echo(f"created {path}")
    typer.echo(f"next: cd {target} && pip install -e '.[test]' && pytest")
