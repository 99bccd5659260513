"""Mapping rules, export checks and schemas: offline, no sandbox."""

from __future__ import annotations

import datetime
from decimal import Decimal

import jsonschema
import orjson
import pyarrow as pa
import pytest
from segship.destination import ConnectionContext, ExportContext, RowRejected
from segship.settings import with_defaults

from segship_braze import schemas
from segship_braze.destination import BrazeDestination

from .conftest import MAPPING, SEGMENT, person


def export_settings(settings: dict) -> dict:
    """Export settings as a destination gets them: the schema's defaults filled in."""
    return with_defaults(schemas.export_settings_schema, settings)


def destination(settings: dict | None = None, mapping: dict | None = None) -> BrazeDestination:
    export = ExportContext("vip-to-braze", {"segment_api_identifier": SEGMENT, **(settings or {})},
                           mapping or MAPPING)
    return BrazeDestination(ConnectionContext("braze", {"api_key": "k" * 32,
                                                        "rest_endpoint": "https://rest.iad-01.braze.com"}), export)


def test_a_join_sends_identifiers_attributes_and_the_membership_add():
    record = destination().map(person(7))
    assert record.key == record.identity == "7"
    assert record.payload == {"external_id": "7", "email": "person7@example.com", "first_name": "First7",
                              "tier": "gold", "lifetime_value": 1007, "segship_segments": {"add": [SEGMENT]}}


def test_a_change_sends_only_the_changed_attributes_and_empty_values_as_null():
    record = destination().map(person(7, tier=None, first_name="Ann"), frozenset({"tier", "first_name"}))
    assert record.payload == {"external_id": "7", "first_name": "Ann", "tier": None}


def test_a_changed_email_is_sent_and_a_changed_customer_id_is_a_new_join():
    bound = destination()
    assert bound.map(person(7, email="new@example.com"), frozenset({"email"})).payload == \
        {"external_id": "7", "email": "new@example.com"}
    assert "segship_segments" in bound.map(person(8), frozenset({"customer_id"})).payload


def test_a_join_leaves_out_empty_values():
    assert "tier" not in destination().map(person(1, tier=None)).payload


def test_settings_name_the_membership_attribute_and_update_only_mode():
    bound = destination({"membership_attribute": "audiences", "update_existing_only": True})
    payload = bound.map(person(1)).payload
    assert payload["audiences"] == {"add": [SEGMENT]} and payload["_update_existing_only"] is True


@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("12.50"), 12.5),
    (Decimal("12"), 12),
    (True, True),
    (3.25, 3.25),
    (datetime.datetime(2024, 5, 1, 13, 30, tzinfo=datetime.UTC), "2024-05-01T13:30:00+00:00"),
    (datetime.datetime(2024, 5, 1, 13, 30), "2024-05-01T13:30:00Z"),
    (datetime.date(2024, 5, 1), "2024-05-01T00:00:00Z"),
    (["a", 2, True, None], ["a", "2", "true"]),
    ({"plan": "pro", "since": datetime.date(2020, 1, 2)}, {"plan": "pro", "since": "2020-01-02T00:00:00Z"}),
])
def test_values_are_converted_as_braze_expects(value, expected):
    payload = destination().map(person(1, tier=value)).payload
    assert payload["tier"] == expected
    assert type(payload["tier"]) is type(expected)


def test_date_of_birth_is_a_calendar_date():
    bound = destination(mapping={**MAPPING, "attributes": {"dob": "born"}})
    assert bound.map(person(1, born=datetime.date(1990, 2, 3))).payload["dob"] == "1990-02-03"


@pytest.mark.parametrize(("columns", "reason"), [
    ({"customer_id": None}, "customer_id is empty"),
    ({"customer_id": "  "}, "customer_id is empty"),
    ({"customer_id": 1.5}, "customer_id must be text or an integer"),
])
def test_rows_without_a_usable_external_id_are_rejected_with_a_reason(columns, reason):
    with pytest.raises(RowRejected) as rejected:
        destination().map(person(1, **columns))
    assert reason in rejected.value.reason


@pytest.mark.parametrize(("columns", "field", "column", "reason"), [
    ({"tier": "x" * 256}, "tier", "tier", "tier is 256 characters long; Braze allows at most 255"),
    ({"tier": ["ok", "y" * 300]}, "tier", "tier", "an item of tier"),
    ({"lifetime_value": float("nan")}, "lifetime_value", "lifetime_value", "no number Braze can store"),
    ({"tier": b"bytes"}, "tier", "tier", "tier holds a bytes"),
    ({"email": None}, "email", "email", "email is empty"),
    ({"email": "not an email"}, "email", "email", "invalid email address"),
])
def test_a_value_braze_would_refuse_or_truncate_is_dropped_with_a_reason_and_the_user_sent(columns, field, column,
                                                                                            reason):
    for changed in (None, frozenset(columns)):
        record = destination().map(person(1, **columns), changed)
        assert field not in record.payload and record.payload["external_id"] == "1"
        [dropped] = record.dropped
        assert dropped.column == column and reason in dropped.reason
        valid = destination().map(person(1), changed)
        assert record.payload == {name: value for name, value in valid.payload.items() if name != field}
        assert valid.dropped == ()


def test_a_255_character_string_is_sent_whole():
    assert destination().map(person(1, tier="x" * 255)).payload["tier"] == "x" * 255


def test_a_leaver_loses_the_segment_and_is_never_created():
    assert destination()._membership.leaver("7") == {
        "external_id": "7", "_update_existing_only": True, "segship_segments": {"remove": [SEGMENT]}}


def test_check_export_refuses_reserved_and_invalid_attribute_names():
    attributes = {"external_id": "a", "email": "b", "segship_segments": "c", "$rank": "d", " padded": "e",
                  "n" * 256: "f", "first_name": "g", "favourite colour": "h"}
    problems = {problem.path[-1]: problem.message for problem in BrazeDestination.check_export(
        {}, export_settings({"segment_api_identifier": SEGMENT}), {**MAPPING, "attributes": attributes})}
    assert set(problems) == {"external_id", "email", "segship_segments", "$rank", " padded", "n" * 256}
    assert "mapping.email" in problems["email"]
    assert "membership attribute" in problems["segship_segments"]


def test_check_export_refuses_a_reserved_membership_attribute():
    problems = list(BrazeDestination.check_export({}, export_settings({"segment_api_identifier": SEGMENT,
                                                                       "membership_attribute": "external_id"}),
                                                  MAPPING))
    assert [problem.path for problem in problems] == [("settings", "membership_attribute")]


CONSENT = {"email_subscribe": "opted_in", "push_subscribe": "subscribed",
           "subscription_groups": '[{"subscription_group_id": "g", "subscription_state": "subscribed"}]'}


def test_consent_fields_are_never_sent_unless_a_mapping_entry_names_them():
    # the segment has columns named like Braze's subscription fields; the mapping doesn't name them
    bound = destination({"update_existing_only": True})
    row = person(7, **CONSENT)
    rows = pa.RecordBatch.from_pylist([row, person(8, **CONSENT)])
    changed = frozenset(row) - {"customer_id"}  # every column changed, consent-named ones included
    payloads = [bound.map(row).payload, bound.map(row, changed).payload, bound._membership.leaver("7"),
                *bound.map_batch(rows).payloads, *bound.map_batch(rows, [changed, None]).payloads]
    sent = [orjson.loads(orjson.dumps(payload)) for payload in payloads]  # JSON as it goes on the wire
    assert len(sent) == 7 and not any(CONSENT.keys() & user.keys() for user in sent)
    # a user who means to write one maps it, and gets exactly that one
    explicit = destination(mapping={**MAPPING, "attributes": {**MAPPING["attributes"],
                                                              "email_subscribe": "email_subscribe"}})
    assert CONSENT.keys() & explicit.map(row).payload.keys() == {"email_subscribe"}
    assert explicit.map(row).payload["email_subscribe"] == "opted_in"


@pytest.mark.parametrize("field", sorted(CONSENT))
def test_check_export_refuses_a_consent_field_as_the_membership_attribute(field):
    problems = list(BrazeDestination.check_export({}, export_settings({"segment_api_identifier": SEGMENT,
                                                                       "membership_attribute": field}), MAPPING))
    assert [problem.path for problem in problems] == [("settings", "membership_attribute")]
    assert "subscription field" in problems[0].message


@pytest.mark.parametrize(("endpoint", "valid"), [
    ("https://rest.iad-01.braze.com", True),
    ("https://rest.iad-08.braze.com/", True),
    ("https://rest.us-10.braze.com", True),
    ("https://rest.fra-02.braze.eu", True),
    ("https://rest.au-01.braze.com", True),
    ("http://127.0.0.1:8080", True),
    ("https://braze-proxy.internal.example.com/braze", True),
    ("https://rest.iad-09.braze.com", False),
    ("https://dashboard-01.braze.com", False),
    ("rest.iad-01.braze.com", False),
])
def test_rest_endpoint_is_a_documented_instance_or_a_non_braze_url(endpoint, valid):
    errors = list(jsonschema.Draft202012Validator(schemas.connection_schema).iter_errors(
        {"api_key": "${env:BRAZE_API_KEY}", "rest_endpoint": endpoint}))
    assert (not errors) is valid


def test_schemas_describe_every_property_and_allow_nothing_else():
    for schema in (schemas.connection_schema, schemas.export_settings_schema, schemas.mapping_schema):
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False
        assert all(prop.get("description") for prop in schema["properties"].values())
    assert schemas.connection_schema["properties"]["api_key"]["x-secret"] is True
    batch_size = schemas.connection_schema["properties"]["batch_size"]
    assert (batch_size["minimum"], batch_size["maximum"], batch_size["default"]) == (1, 75, 75)
