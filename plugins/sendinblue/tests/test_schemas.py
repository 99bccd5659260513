"""The Brevo schemas refuse what Python's ``$`` would let through: a value ending in a newline."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from segship_sendinblue.schemas import connection_schema, export_settings_schema


def test_a_base_url_ending_in_a_newline_is_refused() -> None:
    validator = Draft202012Validator(connection_schema)
    settings = {"api_key": "${env:BREVO_API_KEY}"}
    assert validator.is_valid({**settings, "base_url": "http://127.0.0.1:8080/v3"})
    assert not validator.is_valid({**settings, "base_url": "http://127.0.0.1:8080/v3\n"})


def test_attribute_names_and_country_codes_ending_in_a_newline_are_refused() -> None:
    validator = Draft202012Validator(export_settings_schema)
    assert validator.is_valid({"list_id": 3, "default_country_code": "+33"})
    assert not validator.is_valid({"list_id": 3, "default_country_code": "+33\n"})
    assert validator.is_valid({"list_id": 3, "attribute_names": {"phone": "SMS"}})
    assert not validator.is_valid({"list_id": 3, "attribute_names": {"phone": "SMS\n"}})
