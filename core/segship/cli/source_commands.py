"""Commands about sources: ``segship sources test NAME|--all`` (the "Connect" button for a source)."""

from __future__ import annotations

from typing import Annotated

import typer

from segship.cli.app import app, check_each, load_config_or_exit, names_to_check
from segship.config import Config
from segship.plugins import get_plugins
from segship.source import SourceError

sources_app = typer.Typer(help="Check sources.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("test")
def sources_test_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The source to test.", show_default=False)] = None,
    test_all: Annotated[bool, typer.Option("--all", help="Test every source, each in turn.")] = False,
) -> None:
    """Connect to the source and run a trivial query; print the server or driver that answered. Exit 1 if it fails.

    With --all, every source: a line for each, and exit 1 (2 for an unset secret) if any fails.
    """
    loaded = load_config_or_exit(ctx)
    names = names_to_check("source", name, test_all, loaded.sources)
    # an unset secret (exit 2) or a source that fails (1) raises a SegshipError naming the source
    raise check_each(names, lambda each: [_test_source(loaded, each)], name_errors=False)


def _test_source(loaded: Config, name: str) -> str:
    source_config = loaded.sources[name]
    cls = get_plugins().source(source_config.type)
    if cls is None:
        raise SourceError(f"source {name!r} has type {source_config.type!r}, which no installed plugin provides")
    source = cls(source_config.context())
    try:
        description = source.check_connection()
    finally:
        source.close()
    return f"{name}: ok: {description}"
