"""Commands about sources: ``segship sources test NAME`` (the "Connect" button for a source)."""

from __future__ import annotations

from typing import Annotated

import typer

from segship.cli.app import app, fail, load_config_or_exit
from segship.cli.exit_codes import EXIT_INVALID
from segship.log import redact_text
from segship.plugins import get_plugins

sources_app = typer.Typer(help="Check sources.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("test")
def sources_test_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The source to test.")],
) -> None:
    """Connect to the source and run a trivial query; print the server or driver that answered. Exit 1 if it fails."""
    loaded = load_config_or_exit(ctx)
    if name not in loaded.sources:
        raise fail(f"unknown source {name!r} (sources: {', '.join(sorted(loaded.sources)) or 'none'})", EXIT_INVALID)
    source_config = loaded.sources[name]
    cls = get_plugins().source(source_config.type)
    if cls is None:
        raise fail(f"source {name!r} has type {source_config.type!r}, which no installed plugin provides")
    # an unset secret (exit 2) or a source that fails (1) raises a SegshipError, which cli/app.py prints
    source = cls(source_config.context())
    try:
        description = source.check_connection()
    finally:
        source.close()
    typer.echo(redact_text(f"{name}: ok: {description}"))
