"""The Braze schemas refuse what Python's ``$`` would let through: a value ending in a newline."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from segship_braze.schemas import connection_schema


def test_a_rest_endpoint_ending_in_a_newline_is_refused() -> None:
    validator = Draft202012Validator(connection_schema)
    settings = {"api_key": "${env:BRAZE_API_KEY}"}
    assert validator.is_valid({**settings, "rest_endpoint": "https://rest.iad-01.braze.com"})
    assert validator.is_valid({**settings, "rest_endpoint": "http://127.0.0.1:8080"})
    assert not validator.is_valid({**settings, "rest_endpoint": "https://rest.iad-01.braze.com\n"})
    assert not validator.is_valid({**settings, "rest_endpoint": "http://127.0.0.1:8080\n"})
