"""Property: whatever a row holds, the Braze mapping gives an attributes object Braze takes, or a reject
with a reason. Never another exception, never a silently dropped row."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from segship.destination import ConnectionContext, ExportContext, Record, RowRejected
from segship.engine.snapshot import normalised_identity
from segship.testing.strategies import mostly, rows

from segship_braze.destination import BrazeDestination
from segship_braze.mapping import MAX_STRING_LENGTH, external_id

SEGMENT_ID = "3c4a9e52-0000-4000-8000-000000000001"
MAPPING = {"customer_id": "id", "email": "email",
           "attributes": {"first_name": "first", "dob": "born", "score": "score", "tags": "tags", "profile": "profile"}}
COLUMNS = ["id", "email", "first", "born", "score", "tags", "profile"]
# mostly well-formed identifiers, so most rows reach the attribute rules
IDS = mostly(st.one_of(st.integers(), st.text(min_size=1, max_size=20), st.uuids()))
EMAILS = mostly(st.emails())
CHANGES = st.one_of(st.none(), st.frozensets(st.sampled_from(COLUMNS)))
INT64 = (-(2**63), 2**63 - 1)


def destination() -> BrazeDestination:
    return BrazeDestination(
        ConnectionContext("braze", {"api_key": "${env:BRAZE_API_KEY}", "rest_endpoint": "https://rest.iad-01.braze.com"}),
        ExportContext("vip", {"segment_api_identifier": SEGMENT_ID}, MAPPING, ("vip",)))


def assert_braze_takes(name: str, value: Any, *, in_array: bool = False) -> None:
    """A value Braze stores: null, a boolean, a number of 64 bits at most, text of at most 255 characters,
    an array of text or objects, an object (nested attribute), or an add/remove on an array."""
    if isinstance(value, str):
        assert len(value) <= MAX_STRING_LENGTH, (name, len(value))
    elif isinstance(value, list):
        assert not in_array, f"{name}: an array inside an array"
        for item in value:
            assert isinstance(item, (str, dict)), (name, item)
            assert_braze_takes(name, item, in_array=True)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str) and len(key) <= MAX_STRING_LENGTH
            assert_braze_takes(f"{name}.{key}", item)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert INT64[0] <= value <= INT64[1], (name, value)
    elif isinstance(value, float):
        assert value == value and abs(value) != float("inf"), (name, value)
    else:
        assert value is None or isinstance(value, bool), (name, value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows(COLUMNS, id=IDS, email=EMAILS), changed=CHANGES)
def test_every_row_maps_to_an_object_braze_takes_or_to_a_reject_with_a_reason(row, changed):
    try:
        record = destination().map(row, changed)
    except RowRejected as rejected:
        assert rejected.reason.strip()
        event("rejected")
        return
    event("mapped")
    assert isinstance(record, Record) and record.key == record.identity == record.payload["external_id"]
    user = orjson.loads(orjson.dumps(record.payload))  # what is sent is JSON, as it was mapped
    assert user == record.payload
    assert isinstance(user["external_id"], str) and 0 < len(user["external_id"].strip()) <= MAX_STRING_LENGTH
    for name, value in user.items():
        if name != "external_id":
            assert_braze_takes(name, value)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=300),
                       st.text(max_size=20).map(lambda text: f" \u3000{text}\n")))
def test_the_identity_rule_gives_every_customer_id_as_the_mapping_makes_its_external_id(value):
    """The plan finds keys sharing an external_id by the rule, in DuckDB; the mapping makes the one sent."""
    try:
        expected = external_id(value)
    except RowRejected:
        expected = None
    assert normalised_identity(BrazeDestination.identity_rule(MAPPING), value) == expected
