"""The app is complete once ``segship.cli.main`` is imported: it runs in-process, commands and plugins' alike.

These tests invoke the app with typer's CliRunner instead of the ``segship`` script, so that
nothing (an entry point, ``main()``) has to run first for a command to exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from segship.cli.main import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("SEGSHIP_ROLE", raising=False)
    return CliRunner()


def test_a_core_command_is_there_once_main_is_imported(runner: CliRunner) -> None:
    result = runner.invoke(app, ["plan", "--help"])
    assert result.exit_code == 0, result.output
    assert "Show what a run would add, update, remove and leave alone" in result.output


def test_a_plugin_command_is_there_once_main_is_imported(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sandbox", "braze", "--help"])
    assert result.exit_code == 0, result.output
    assert "Local emulator of Braze's /users/track" in result.output


def test_global_options_belong_to_one_invocation(runner: CliRunner) -> None:
    """--role reaches the command through its context, and the next invocation starts afresh."""
    as_contributor = runner.invoke(app, ["--role", "contributor", "validate", "-c", str(CONFIGS)])
    assert as_contributor.exit_code == 2, as_contributor.output
    assert "which only admins may use; you run as contributor" in as_contributor.stderr
    as_admin = runner.invoke(app, ["validate", "-c", str(CONFIGS)])
    assert as_admin.exit_code == 0, as_admin.output
