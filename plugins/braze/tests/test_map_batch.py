"""Braze's column-wise ``map_batch`` beyond the conformance suite (which holds it to ``map`` for random
batches): the settings that change a payload, a column read twice, the request body the payloads
make, and only the attributes segship chose in it."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segship.destination import ConnectionContext, ExportContext
from segship.testing.conformance import assert_batch_maps_as_rows
from segship.testing.strategies import ODD_EMAILS, ODD_TEXTS, batches, changes

from segship_braze.destination import BrazeDestination

EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def braze(mapping: dict[str, Any], **export_settings: Any) -> BrazeDestination:
    connection = ConnectionContext("braze", {"api_key": "k" * 32, "rest_endpoint": "https://rest.iad-01.braze.com"})
    return BrazeDestination(connection, ExportContext("to-braze", {"segment_api_identifier": "s-1", **export_settings},
                                                      mapping))


@EXAMPLES
@given(st.data())
def test_braze_maps_a_batch_as_it_maps_each_row(data: st.DataObject) -> None:
    rows, names = data.draw(batches({"customer_id": ["good_text"] * 3 + ["text", "int64", "int8", "large_text", "decimal",
                                                     "float64", "bool", "nothing"],
                                     "email": ["good_email"] * 4 + ["email", "large_text", "int64", "nothing"]},
                                    attributes=4))
    attributes = {f"attr_{name}": name for name in names[2:]}
    if data.draw(st.booleans()):
        attributes["again_email"] = "email"  # one column read twice
    destination = braze({"customer_id": "customer_id", "email": "email", "attributes": attributes},
                        update_existing_only=data.draw(st.booleans()))
    changed = data.draw(changes(rows.num_rows, destination.source_columns(destination.export.mapping)))
    mapped = assert_batch_maps_as_rows(destination, rows, changed, orjson.dumps)
    payloads = [answer[2] for answer in mapped if answer[0] == "mapped"]
    batch = destination.map_batch(rows, changed)
    body = orjson.dumps({"attributes": [p for i, p in enumerate(batch.payloads) if i not in batch.rejects]})
    assert body == b'{"attributes":[' + b",".join(payloads) + b"]}"
    # only what segship chose is written: a consent field (email_subscribe, ...) only where the mapping names it
    chosen = {"external_id", "email", "segship_segments", "_update_existing_only", *attributes}
    assert all(set(orjson.loads(payload)) <= chosen for payload in payloads)


@pytest.mark.parametrize("odd", ODD_TEXTS + ODD_EMAILS)
def test_braze_maps_one_odd_value_among_fine_ones_as_its_row(odd: str) -> None:
    fine = {"customer_id": "C1", "email": "ada@example.com", "first_name": "Ada"}
    destination = braze({"customer_id": "customer_id", "email": "email", "attributes": {"first_name": "first_name"}})
    for column in fine:
        rows = pa.RecordBatch.from_pylist([fine, {**fine, column: odd}, fine])
        assert_batch_maps_as_rows(destination, rows, None, orjson.dumps)
        assert_batch_maps_as_rows(destination, rows, [None, frozenset({column}), frozenset()], orjson.dumps)


def test_braze_maps_a_first_run_batch_through_its_fast_path_as_each_row() -> None:
    rows = pa.RecordBatch.from_pydict({"customer_id": [" C1 ", "C2"], "email": ["a@example.com ", "B@example.com"],
                                       "first_name": ["Ada", "Ben"], "score": [1.5, 2.0]})
    destination = braze({"customer_id": "customer_id", "email": "email",
                         "attributes": {"first_name": "first_name", "score": "score"}})
    assert_batch_maps_as_rows(destination, rows, None, orjson.dumps)
    assert destination.map_batch(rows).identities == ["C1", "C2"]
