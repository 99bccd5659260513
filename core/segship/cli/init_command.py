"""`segship init [DIR]`: scaffold a config repository that validates at once.

The files come from ``segship/templates`` (package data); the JSON Schema is the one
`segship schema` prints, for the plugins installed now. Nothing existing is overwritten:
if any file would be, init writes nothing and says which.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from segship.cli.config_commands import schema_text
from segship.cli.app import app, fail
from segship.cli.exit_codes import EXIT_INVALID

#: file written (relative to DIR) -> its template in segship/templates
SCAFFOLD = {
    "segship.yaml": "segship.yaml",
    "data/profiles.csv": "data/profiles.csv",
    ".gitignore": "gitignore",
    ".github/workflows/segship.yml": "github-workflow.yml",
}
SCHEMA_FILE = "segship.schema.json"  # named by segship.yaml's yaml-language-server modeline


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="Where to create the config repository (default: here).")
                         ] = Path("."),
) -> None:
    """Scaffold a config repo: segship.yaml with examples, its JSON Schema, sample data, .gitignore, CI workflow.

    The config validates at once, with no secret set. Exit 2, writing nothing, if a file exists.
    """
    if directory.exists() and not directory.is_dir():
        raise fail(f"{directory} is not a directory", EXIT_INVALID)
    written = [*SCAFFOLD, SCHEMA_FILE]
    existing = [name for name in written if (directory / name).exists()]
    if existing:
        raise fail(f"{', '.join(str(directory / name) for name in existing)}: already exist(s); init overwrites "
                   "nothing (move them away or init another directory)", EXIT_INVALID)
    templates = files("segship") / "templates"
    for name, template in SCAFFOLD.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(templates.joinpath(*template.split("/")).read_bytes())
    (directory / SCHEMA_FILE).write_text(schema_text() + "\n")
    for name in written:
        typer.echo(f"created {directory / name}")
    typer.echo(f"next: cd {directory} && segship validate && segship plan; "
               "CI: add the secrets listed in .github/workflows/segship.yml (docs/gitops.md)")
