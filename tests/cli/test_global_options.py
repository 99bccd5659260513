"""Global options work before or after the command (as dbt >= 1.5 allows), and ``segship --version``.

Through the real ``segship`` script, except the walk over every command, which invokes the
app in-process (a subprocess per command and option would take a minute).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Annotated

import pytest
import typer.main
from typer.testing import CliRunner

from segship.cli.app import GlobalOptions, SegshipGroup, global_options
from segship.cli.main import app

CONFIG = """
version: 1
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  everyone: {source: crm, key: customer_id, sql: SELECT * FROM crm}
connections:
  braze:
    type: braze
    display_name: Braze
    data_privacy_consent: true
    settings: {api_key: '${env:BRAZE_API_KEY}', rest_endpoint: 'https://rest.iad-01.braze.com'}
exports:
  everyone-to-braze:
    display_name: Everyone
    connection: braze
    segments: [everyone]
    settings: {segment_api_identifier: seg-1}
    mapping: {customer_id: customer_id, email: email}
"""
GLOBAL_OPTIONS = ("--config", "--role", "--log-format", "--log-level", "--log-pii", "--debug")


@pytest.fixture
def project(write_config):
    """A config in ``project/`` (not where the CLI runs: found only through -c)."""
    return write_config({"project/segship.yaml": CONFIG,
                         "project/profiles.csv": "customer_id,email\nC1,a@example.com\nC2,b@example.com\n"})


def test_the_config_option_goes_before_or_after_the_command(segship, project) -> None:
    for args in (["-c", "project", "plan"], ["plan", "-c", "project"], ["plan", "--config", "project"]):
        result = segship(*args)
        assert result.exit_code == 0, result
        assert "everyone-to-braze" in result.stdout, result
    assert segship("plan", "-c", "nowhere").exit_code == 2  # the option is what found it


def test_an_option_after_the_command_replaces_the_one_before(segship, project) -> None:
    result = segship("-c", "nowhere", "plan", "-c", "project")
    assert result.exit_code == 0, result
    refused = segship("plan", "-c", "project", "--role", "contributor")
    assert refused.exit_code == 2, refused
    assert "which only admins may use; you run as contributor" in refused.stderr, refused
    allowed = segship("--role", "contributor", "plan", "-c", "project", "--role", "admin")
    assert allowed.exit_code == 0, allowed
    # the environment's role is the one before the command: an option after it still wins
    assert segship("plan", "-c", "project", "--role", "admin", env={"SEGSHIP_ROLE": "contributor"}).exit_code == 0


def test_logging_options_after_the_command(segship, project) -> None:
    result = segship("export", "everyone-to-braze", "--dry-run", "-c", "project", "--log-format", "json")
    assert result.exit_code == 0, result
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert "export.started" in [event["event"] for event in events], result
    quiet = segship("--log-format", "json", "export", "everyone-to-braze", "--dry-run", "-c", "project",
                    "--log-level", "warning")
    assert quiet.exit_code == 0, quiet
    assert quiet.stderr == "", quiet


def test_a_bad_value_after_the_command_is_a_usage_error(segship, project) -> None:
    for option, message in (("--role", "must be 'admin' or 'contributor'"),
                            ("--log-format", "must be 'console' or 'json'")):
        result = segship("plan", "-c", "project", option, "boss")
        assert result.exit_code == 2, result
        assert message in result.stderr, result


def _commands(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_the_walk_finds_every_command() -> None:
    assert {("plan",), ("export",), ("state", "show"), ("sandbox", "braze"), ("connections", "test")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_accepts_the_global_options(command, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGSHIP_ROLE", raising=False)
    runner = CliRunner()
    helped = runner.invoke(app, [*command, "--help"])
    assert helped.exit_code == 0, helped.output
    for option in GLOBAL_OPTIONS:
        assert option in helped.output, (command, option)
    # parsed and checked after the command: a bad value stops it before it runs (a sandbox would serve)
    refused = runner.invoke(app, [*command, "--log-level", "debug", "--debug", "--log-pii", "-c", "x",
                                  "--role", "boss"])
    assert refused.exit_code == 2, refused.output
    assert "must be 'admin' or 'contributor'" in refused.output


def test_version_lists_segship_and_every_plugin(segship) -> None:
    result = segship("--version")
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"segship {version('segship')} (Python "), result
    assert f"  segship-braze {version('segship-braze')} (plugin braze: destination braze)" in lines, result
    assert (f"  segship-sendinblue {version('segship-sendinblue')} (plugin sendinblue: destination sendinblue)"
            in lines), result


def test_a_commands_own_option_of_a_global_name_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's command may have its own ``--debug``: that one is the command's, the others still global."""
    monkeypatch.delenv("SEGSHIP_ROLE", raising=False)
    cli = typer.Typer(cls=SegshipGroup)
    cli.callback()(global_options)

    @cli.command()
    def probe(ctx: typer.Context, debug: Annotated[int, typer.Option("--debug")] = 0) -> None:
        options = GlobalOptions.of(ctx)
        typer.echo(f"own {debug}, global {options.debug}, role {options.role}")

    result = CliRunner().invoke(cli, ["probe", "--debug", "3", "--role", "contributor"])
    assert (result.exit_code, result.output) == (0, "own 3, global False, role contributor\n"), result.output
