"""Commands about configuration and plugins: validate, schema, plugins."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from segship.cli.main import app
from segship.plugins import get_plugins


@app.command("plugins")
def plugins_command() -> None:
    """List installed destination and source plugins, their versions and where they come from."""
    plugins = get_plugins()
    table = Table("plugin", "distribution", "version", "provides", "location")
    for info in plugins.infos:
        provides = [f"destination:{name}" for name in info.destinations]
        provides += [f"source:{name}" for name in info.sources]
        table.add_row(info.name, info.distribution, info.version, ", ".join(provides) or "-", info.location)
    Console(width=200).print(table)
