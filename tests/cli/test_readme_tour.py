"""Every command line README.md's tour shows is one segship accepts: the command exists and takes the
options written on it (each parsed with --help, which runs nothing)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segship.cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR = README.read_text(encoding="utf-8").split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
COMMANDS = [shlex.split(line.split("#", 1)[0])[1:] for block in re.findall(r"```sh\n(.*?)```", TOUR, re.DOTALL)
            for line in block.splitlines() if line.startswith("segship ")]


def test_the_tour_shows_the_commands() -> None:
    assert ["retire", "old-export", "--dry-run"] in COMMANDS and ["--version"] in COMMANDS


@pytest.mark.parametrize("args", [args for args in COMMANDS if args != ["--version"]], ids=" ".join)
def test_each_command_of_the_tour_parses(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGSHIP_ROLE", raising=False)
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
