"""The composed JSON Schema: the core schema knows no destination; plugins compose in under their type."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from segship.config.schema import composed_schema, core_schema, secret_fields
from segship.plugins import build_plugins

REPO = Path(__file__).resolve().parents[2]


def test_the_core_schema_names_no_destination() -> None:
    text = (REPO / "schemas" / "segship.schema.json").read_text()
    for name in ("braze", "sendinblue", "brevo"):
        assert name not in text.lower()
    jsonschema.Draft202012Validator.check_schema(core_schema())


def test_each_installed_destination_is_composed_under_its_type() -> None:
    plugins = build_plugins()
    schema = composed_schema(plugins)
    jsonschema.Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    assert defs["connection"]["properties"]["type"]["enum"] == ["braze", "brevo", "sendinblue", "webhook"]
    for cls in (plugins.destination("braze"), plugins.destination("sendinblue"), plugins.destination("webhook")):
        assert composed_schema(plugins, for_editors=False)["$defs"][f"{cls.name}.connection"] == cls.connection_schema
        assert set(defs[f"{cls.name}.connection"]["properties"]) == set(cls.connection_schema["properties"])
        assert defs[f"{cls.name}.export_settings"] == cls.export_settings_schema
        assert defs[f"{cls.name}.mapping"] == cls.mapping_schema
    assert defs["source"]["properties"]["type"]["enum"] == ["adbc", "duckdb", "postgres"]
    assert core_schema()["$defs"]["connection"]["properties"]["type"] == {"type": "string",
                                                                         "description": "Destination plugin name."}


def test_validation_leaves_the_editor_only_anyof_out() -> None:
    schema = composed_schema(build_plugins(), for_editors=False)
    assert "anyOf" not in schema["$defs"]["export"]["properties"]["settings"]


def test_secret_fields_are_the_ones_marked_x_secret() -> None:
    plugins = build_plugins()
    assert secret_fields(plugins.destination("braze").connection_schema) == ["api_key"]
    assert secret_fields(plugins.destination("sendinblue").connection_schema) == ["api_key"]
    assert secret_fields(plugins.destination("webhook").connection_schema) == ["secret"]


def test_segship_schema_prints_the_composed_schema(segship) -> None:
    result = segship("schema")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout) == composed_schema(build_plugins())


@pytest.mark.parametrize("file", sorted(path.name for path in (REPO / "configs").glob("*.yaml")))
def test_an_editor_accepts_each_example_file(file: str) -> None:
    """What yaml-language-server does with `# yaml-language-server: $schema=…`: each file on its own."""
    schema = composed_schema(build_plugins())
    document = yaml.safe_load((REPO / "configs" / file).read_text())
    errors = [error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(document)]
    assert errors == []


def test_an_editor_flags_a_wrong_connection_setting() -> None:
    validator = jsonschema.Draft202012Validator(composed_schema(build_plugins()))

    def document(batch_size: int) -> dict:
        settings = {"api_key": "${env:K}", "rest_endpoint": "https://rest.iad-01.braze.com", "batch_size": batch_size}
        return {"version": 1, "connections": {"b": {"type": "braze", "display_name": "B", "settings": settings}}}

    assert validator.is_valid(document(50))
    assert not validator.is_valid(document(500))


def test_an_editor_accepts_references_where_settings_check_values_but_not_a_wrong_literal() -> None:
    schema = composed_schema(build_plugins())
    validator = jsonschema.Draft202012Validator(schema)

    def connection(**settings):
        return {"version": 1, "connections": {"b": {"type": "braze", "display_name": "B", "settings": settings}}}

    assert not list(validator.iter_errors(connection(api_key="${env:K}", rest_endpoint="${env:BRAZE_URL}")))
    assert not list(validator.iter_errors(connection(api_key="${env:K}", rest_endpoint="http://${env:HOST}:8080")))
    assert list(validator.iter_errors(connection(api_key="${env:K}", rest_endpoint="rest.iad-01.braze.com")))
    described = schema["$defs"]["braze.connection"]["properties"]["rest_endpoint"]
    assert described["description"].startswith("REST endpoint")
