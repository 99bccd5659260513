"""Commands about configuration and plugins: validate, schema, plugins."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from segship.cli.app import GlobalOptions, app, config_path
from segship.cli.exit_codes import EXIT_INVALID
from segship.config import ConfigError, load_config
from segship.config.schema import composed_schema
from segship.config.validate import ci_state_warnings, role_issues
from segship.plugins import get_plugins


class OutputFormat(str, Enum):
    text = "text"
    github = "github"
    json = "json"


@app.command("validate")
def validate_command(
    ctx: typer.Context,
    output: Annotated[OutputFormat, typer.Option("--format", help="text, github (workflow annotations) or json.")
                      ] = OutputFormat.text,
) -> None:
    """Check the config: schema, references, plugin rules, consent, secrets, roles. Exit 2 on any error.

    Warns (exit 0) when it runs in CI (CI=true) with state in a local file, which starts empty on every runner.
    """
    try:
        path = config_path(ctx)
        loaded = load_config(path, get_plugins())
        issues = role_issues(loaded, GlobalOptions.of(ctx).role, loaded.exports)
        if issues:
            raise ConfigError(issues)
    except ConfigError as error:
        typer.echo(error.render(output.value), err=output is OutputFormat.text)  # annotations and JSON on stdout, for CI
        raise typer.Exit(EXIT_INVALID) from None
    warnings = ci_state_warnings(loaded)
    if output is OutputFormat.json:
        document = {"valid": True, "errors": [], **({"warnings": [w.as_dict() for w in warnings]} if warnings else {})}
        typer.echo(orjson.dumps(document).decode())
        return
    for warning in warnings:  # annotations on stdout, for CI; text on stderr
        if output is OutputFormat.github:
            typer.echo(warning.as_github("warning"))
        else:
            typer.echo(f"warning: {warning.as_text()}", err=True)
    typer.echo(f"{path}: valid ({len(loaded.sources)} sources, {len(loaded.segments)} segments, "
               f"{len(loaded.connections)} connections, {len(loaded.exports)} exports)")


def schema_text() -> str:
    """The composed JSON Schema as `segship schema` prints it (and `segship init` writes it)."""
    return orjson.dumps(composed_schema(get_plugins()), option=orjson.OPT_INDENT_2).decode()


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of the config, with every installed plugin's schemas composed in."""
    typer.echo(schema_text())


@app.command("plugins")
def plugins_command() -> None:
    """List installed destination, source and notifier plugins, their versions and where they come from."""
    plugins = get_plugins()
    table = Table("plugin", "distribution", "version", "provides", "location")
    for info in plugins.infos:
        provides = [f"destination:{name}" for name in info.destinations]
        provides += [f"source:{name}" for name in info.sources]
        provides += [f"notifier:{name}" for name in info.notifiers]
        table.add_row(info.name, info.distribution, info.version, ", ".join(provides) or "-", info.location)
    Console(width=200).print(table)
