"""Brevo's column-wise ``map_batch`` beyond the conformance suite (which holds it to ``map`` for random
batches): the default country code, and a contact holding only the attributes the mapping names."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segship.destination import ConnectionContext, ExportContext
from segship.testing.conformance import assert_batch_maps_as_rows
from segship.testing.strategies import ODD_EMAILS, ODD_PHONES, ODD_TEXTS, batches, changes

from segship_sendinblue.destination import SendinblueDestination

EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def brevo(mapping: dict[str, Any], **export_settings: Any) -> SendinblueDestination:
    connection = ConnectionContext("brevo", {"api_key": "k" * 32})
    return SendinblueDestination(connection, ExportContext("to-brevo", {"list_id": 3, **export_settings}, mapping))


@pytest.mark.parametrize("odd", ODD_TEXTS + ODD_EMAILS + ODD_PHONES)
def test_brevo_maps_one_odd_value_among_fine_ones_as_its_row(odd: str) -> None:
    fine = {"email": "ada@example.com", "first_name": "Ada", "phone": "+33612345678"}
    for export_settings in ({}, {"default_country_code": "+33"}):
        destination = brevo({"email": "email", "first_name": "first_name", "phone": "phone"}, **export_settings)
        for column in fine:
            rows = pa.RecordBatch.from_pylist([fine, {**fine, column: odd}, fine])
            assert_batch_maps_as_rows(destination, rows, None, bytes)


@EXAMPLES
@given(st.data())
def test_brevo_maps_a_batch_as_it_maps_each_row(data: st.DataObject) -> None:
    rows, names = data.draw(batches({"email": ["good_email"] * 4 + ["email", "large_text", "int64", "nothing"],
                                     "phone": ["good_phone"] * 3 + ["e164_phone", "phone", "int64", "float64",
                                                                    "nothing"]},
                                    attributes=4))
    mapping: dict[str, Any] = {"email": "email", "phone": "phone"}
    others = names[2:]
    if others:
        mapping["first_name"] = others[0]
    mapping["attributes"] = {f"ATTR_{name.upper()}": name for name in others[1:]}
    export_settings = {"default_country_code": "+33"} if data.draw(st.booleans()) else {}
    destination = brevo(mapping, **export_settings)
    changed = data.draw(changes(rows.num_rows, destination.source_columns(mapping)))
    mapped = assert_batch_maps_as_rows(destination, rows, changed, bytes)
    # a contact is its email and the attributes the mapping names: never emailBlacklisted or the like
    named = {"SMS", *(["FIRSTNAME"] if "first_name" in mapping else []), *mapping["attributes"]}
    contacts = [orjson.loads(answer[2]) for answer in mapped if answer[0] == "mapped"]
    assert all(set(contact) <= {"email", "attributes"} and set(contact.get("attributes", {})) <= named
               for contact in contacts)
