"""State's hashes of an older hash version, converted to this version's without a re-send.

State written with hash version 1 (DuckDB's ``hash()``: :mod:`segship.engine.hashing`) can't
be diffed against this version's hashes. Rather than sending every member again, the
members' current rows are read again and hashed both ways: a member whose stored hash is
the old hash of its current row is what the destination has, so it gets its current hashes.
The plan (:mod:`segship.engine.planning`) runs this step when state says it is needed.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from segship.engine import hashing
from segship.engine.snapshot import Snapshot
from segship.engine.state import StateStore

#: The engine's table of the members' current hashes of both versions, while they are compared.
CURRENT_HASHES = "current_hashes"


def convert_hashes(snapshot: Snapshot, state: StateStore, export: str, *, write: bool) -> int:
    """Convert the export's hashes in state and load what the destination acknowledged, so converted,
    into the snapshot (:meth:`Snapshot.read_acknowledged`); returns how many members' hashes it converted.

    With ``write``, state takes the converted hashes and the current hash version in one
    transaction (before anything is sent); without, state is left as it is and only the plan
    sees them.
    """
    converted = converted_hashes(snapshot, state.stored_hashes(export))
    if write:
        state.convert_hashes(export, converted, hashing.HASH_VERSION)
        acknowledged = state.acknowledged(export)
    else:
        acknowledged = with_row_hashes(state.acknowledged(export), converted)
    snapshot.read_acknowledged(acknowledged)
    return converted.num_rows


def converted_hashes(snapshot: Snapshot, stored: pa.Table) -> pa.Table:
    """State's version-1 hashes of the members, converted to this version's (after :meth:`Snapshot.build`).

    ``stored`` is state's (key, row_hash, column_hashes) in version 1. A member whose
    stored row hash is the version-1 hash of its current row is unchanged: it gets its
    current hashes. A changed one gets row hash 0 (so it is sent) and, per column, the
    current hash where the stored column hash still matches, else zeros (so only what
    changed is sent). Members that left keep their old hashes (they are removed).
    Returns (key, row_hash, column_hashes) for state.
    """
    count = len(snapshot.columns)
    snapshot.load_member_rows(CURRENT_HASHES, lambda values, encodings: (
        f"{hashing.column_hashes_sql(encodings)} AS column_hashes, "
        f"{hashing.legacy_row_hash_sql(values)} AS legacy_row_hash, "
        f"{hashing.legacy_column_hashes_sql(values)} AS legacy_column_hashes"))
    row_hash = hashing.row_hash_sql([f"c.column_hashes[{index + 1}]" for index in range(count)])
    db = snapshot.db
    db.register("stored", stored)
    try:
        table = db.sql(f"""
            SELECT c.key,
                   CASE WHEN s.row_hash = c.legacy_row_hash THEN {row_hash} ELSE 0 END AS row_hash,
                   len(string_split(s.column_hashes, ',')) IS NOT DISTINCT FROM {count} AS known,
                   list_transform(range(1, {count + 1}), lambda i: CASE WHEN string_split(s.column_hashes, ',')[i]
                       = c.legacy_column_hashes[i] THEN c.column_hashes[i] ELSE 0::UBIGINT END) AS column_hashes
            FROM {CURRENT_HASHES} c JOIN stored s USING (key)""").to_arrow_table()
    finally:
        db.unregister("stored")
        db.execute(f"DROP TABLE {CURRENT_HASHES}")
    # unknown column hashes (NULL: send the whole row) stay unknown
    as_bytes = hashing.column_hash_bytes(table.column("column_hashes").combine_chunks(), count)
    unknown = pa.scalar(None, as_bytes.type)
    return table.drop_columns(["known"]).set_column(
        2, "column_hashes", pc.if_else(table.column("known").combine_chunks(), as_bytes, unknown))


def with_row_hashes(acknowledged: pa.RecordBatchReader, converted: pa.Table) -> pa.RecordBatchReader:
    """What the destination acknowledged, with the converted members' row hashes in place of state's."""
    rows = acknowledged.read_all()
    new = converted.select(["key", "row_hash"]).rename_columns(["key", "converted_row_hash"])
    joined = rows.join(new, "key")  # a left outer join: members not converted keep state's
    row_hash = pc.coalesce(joined.column("converted_row_hash"), joined.column("row_hash"))
    return pa.table([joined.column(name) if name != "row_hash" else row_hash for name in rows.column_names],
                    schema=rows.schema).to_reader()
