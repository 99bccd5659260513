"""Arrow column facts for ``Destination.map_batch`` implementations, computed in C, not per value."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def batch_column(rows: pa.RecordBatch, name: str) -> pa.Array:
    """The column ``name``, or nulls when the batch lacks it (as ``row.get`` gives None)."""
    index = rows.schema.get_field_index(name)
    return rows.column(index) if index >= 0 else pa.nulls(rows.num_rows)


def is_text(array: pa.Array) -> bool:
    return pa.types.is_string(array.type) or pa.types.is_large_string(array.type)


def rows_where(mask: pa.Array) -> list[int]:
    """Indexes where ``mask`` is true (null counts as false)."""
    if not pc.any(mask).as_py():
        return []
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()


def null_rows(array: pa.Array) -> list[int]:
    return rows_where(array.is_null()) if array.null_count else []
