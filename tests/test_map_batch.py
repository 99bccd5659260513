"""The default ``map_batch`` calls ``map`` for each row. Whether a destination's own ``map_batch`` gives
exactly what its ``map`` gives is the conformance suite's (``segship.testing``) test, which both
built-in plugins run; their own property tests (``plugins/*/tests/test_map_batch.py``) check more."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
from segship.destination import ConnectionContext, DroppedField, ExportContext, Record, RowRejected

from tests.engine.memory_destination import MemoryDestination


class RowByRow(MemoryDestination):
    """The memory destination with a reject rule and a drop rule of its own; it has no ``map_batch``."""

    def map(self, row, changed_columns=None):
        if row.get("id") == "refuse":
            raise RowRejected("refused by the rule")
        record = super().map(row, changed_columns)
        if row.get("n") == 2:
            return Record(record.key, record.identity, record.payload, (DroppedField("n", "two is too many"),))
        return record


def test_the_default_map_batch_calls_map_for_each_row() -> None:
    destination = RowByRow(ConnectionContext("memory", {}),
                           ExportContext("to-memory", {}, {"id": "id", "fields": {"n": "n"}}))
    rows = pa.RecordBatch.from_pydict({"id": ["a", "refuse", "b", "c"], "n": [1, 2, Decimal("3"), 2]})
    mapped = destination.map_batch(rows, [None, None, frozenset({"n"}), None])
    assert mapped.rejects == {1: "refused by the rule"}
    assert mapped.dropped == {3: (DroppedField("n", "two is too many"),)}
    assert (mapped.identities[0], mapped.identities[2]) == ("a", "b")
    assert (mapped.payloads[0], mapped.payloads[2]) == ((True, {"n": 1}), (False, {"n": Decimal("3")}))
