"""Config discovery through the real CLI: -c, SEGSHIP_CONFIG, ./segship.yaml, ./configs/, then the
current directory when its YAML files are segship's; otherwise an error saying where it looked."""

from __future__ import annotations

import json

SOURCES = """
version: 1
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  vip: {source: crm, key: id, sql: SELECT * FROM crm}
"""
CONNECTIONS = """
connections:
  brevo:
    type: sendinblue
    display_name: Brevo
    data_privacy_consent: true
    settings: {api_key: "${env:BREVO_API_KEY}"}
exports:
  vip-to-brevo:
    display_name: VIP
    connection: brevo
    segments: [vip]
    settings: {list_id: 3}
    mapping: {email: email}
"""


def test_a_directory_of_segship_yaml_files_is_found_in_the_current_directory(segship, write_config) -> None:
    write_config({"sources.yaml": SOURCES, "exports.yml": CONNECTIONS})
    result = segship("validate")
    assert result.exit_code == 0, result
    assert result.stdout.startswith(".: valid (1 sources, 1 segments, 1 connections, 1 exports)"), result


def test_segship_config_names_the_default_config(segship, write_config, tmp_path) -> None:
    write_config({"repo/all.yaml": SOURCES + CONNECTIONS, "segship.yaml": "version: 1\n"})
    result = segship("validate", env={"SEGSHIP_CONFIG": str(tmp_path / "repo")})
    assert result.exit_code == 0, result
    assert "1 exports" in result.stdout, result
    # -c still wins over the variable
    result = segship("validate", "-c", "segship.yaml", env={"SEGSHIP_CONFIG": str(tmp_path / "repo")})
    assert result.exit_code == 0 and "0 exports" in result.stdout, result


def test_segship_config_naming_nothing_is_an_error(segship) -> None:
    result = segship("validate", env={"SEGSHIP_CONFIG": "nowhere/segship.yaml"})
    assert result.exit_code == 2, result
    assert "config not found: SEGSHIP_CONFIG names nowhere/segship.yaml, which does not exist" in result.stderr


def test_segship_yaml_comes_before_configs_and_configs_before_the_directory(segship, write_config) -> None:
    write_config({"configs/all.yaml": SOURCES + CONNECTIONS, "other.yaml": SOURCES})
    result = segship("validate")
    assert result.exit_code == 0 and result.stdout.startswith("configs: valid"), result
    write_config({"segship.yaml": "version: 1\n"})
    result = segship("validate")
    assert result.exit_code == 0 and result.stdout.startswith("segship.yaml: valid"), result


def test_foreign_yaml_files_are_not_taken_for_a_config_and_the_error_says_where_it_looked(
        segship, write_config, tmp_path) -> None:
    write_config({"sources.yaml": SOURCES, "docker-compose.yaml": "services: {db: {image: postgres}}\n"})
    result = segship("plan")
    assert result.exit_code == 2, result
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{tmp_path}:1:1: config not found: no -c/--config given, SEGSHIP_CONFIG not set, "
                           "no ./segship.yaml, no ./configs/, and this directory is no segship config "
                           "(docker-compose.yaml has top-level keys services; "), result
    assert "Traceback" not in result.output


def test_an_empty_directory_says_where_it_looked_in_every_format(segship) -> None:
    result = segship("validate", "--format", "json")
    assert result.exit_code == 2, result
    [error] = json.loads(result.stdout)["errors"]
    assert "config not found" in error["message"] and "it has no .yaml or .yml files" in error["message"]
    assert "SEGSHIP_CONFIG" in segship("validate", "--help").stdout
