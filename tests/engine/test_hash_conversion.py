"""The conversion of state's version-1 hashes, on a snapshot of two segments sharing members.

End to end (state written by an older segship, converted by a run) in test_hash_migration.py.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from segship.engine import hashing
from segship.engine.hash_conversion import converted_hashes, with_row_hashes
from segship.engine.snapshot import Snapshot
from segship.plugins import Plugins
from segship.sources.duckdb import SOURCE_CATALOG, DuckDBSource

from ..conftest import StateTarget
from .conftest import Workspace, profiles, write_profiles

COLUMNS = ["id", "email", "name", "value"]  # the memory export's mapped columns, in mapping order
SIZE = hashing.COLUMN_HASH_BYTES


def hashes_of(path: Path) -> dict[str, tuple[int, bytes, int, str]]:
    """key -> (row hash, column hashes, version-1 row hash, version-1 column hashes) of a CSV's rows."""
    values = [f's."{column}"' for column in COLUMNS]
    with duckdb.connect() as db:
        relation = db.sql(f"SELECT * FROM read_csv('{path}')")
        encodings = hashing.encodings("s", COLUMNS, dict(zip(relation.columns, relation.types, strict=True)))
        row_hash = hashing.row_hash_sql([f"h[{index + 1}]" for index in range(len(COLUMNS))])
        rows = db.sql(f"""
            SELECT key, {row_hash} AS row_hash, h AS column_hashes, legacy_row_hash, legacy_column_hashes
            FROM (SELECT id::VARCHAR AS key, {hashing.column_hashes_sql(encodings)} AS h,
                         {hashing.legacy_row_hash_sql(values)} AS legacy_row_hash,
                         array_to_string({hashing.legacy_column_hashes_sql(values)}, ',') AS legacy_column_hashes
                  FROM read_csv('{path}') AS s)""").to_arrow_table()
    rows = rows.set_column(2, "column_hashes", hashing.column_hash_bytes(
        rows.column("column_hashes").combine_chunks(), len(COLUMNS)))
    return {row["key"]: (row["row_hash"], row["column_hashes"], row["legacy_row_hash"], row["legacy_column_hashes"])
            for row in rows.to_pylist()}


@pytest.fixture
def workspace(tmp_path: Path, memory_plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("MEMORY_KEY", "memory-secret-key-123")
    workspace = Workspace(tmp_path, memory_plugins, StateTarget("sqlite", "{path: .segship/state.db}", {}))
    workspace.configure(segments="everyone, rich")  # rich: value > 50, members of everyone too
    return workspace


@pytest.mark.parametrize("read", ["attached", "streamed"])
def test_members_get_their_current_hashes_a_changed_one_only_those_of_its_unchanged_columns(
        workspace, memory_plugins, monkeypatch, read):
    if read == "streamed":  # as a warehouse's rows are: read() into the engine's DuckDB, not queried in it
        attach = DuckDBSource.attach  # (read() attaches the file to the source's own connection)
        monkeypatch.setattr(DuckDBSource, "attach", lambda self, connection, catalog:
                            catalog == SOURCE_CATALOG and attach(self, connection, catalog))
    old = workspace.root / "old.csv"
    write_profiles(old, profiles(60, changed={7: "Before", 55: "Before"}))
    workspace.write(profiles(60))
    before, now = hashes_of(old), hashes_of(workspace.root / "profiles.csv")
    before["99"] = (0, b"", 1, "1,2,3,4")  # a member who has left
    before["3"] = (*before["3"][:3], None)  # its column hashes were unknown
    stored_keys = ["3", "7", "8", "55", "56", "99"]
    stored = pa.table({"key": stored_keys, "row_hash": [before[key][2] for key in stored_keys],
                       "column_hashes": [before[key][3] for key in stored_keys]},
                      schema=pa.schema([("key", pa.string()), ("row_hash", pa.int64()), ("column_hashes", pa.string())]))
    config = workspace.config()
    snapshot = Snapshot(config, config.exports["sync"], memory_plugins, COLUMNS)
    try:
        snapshot.build()
        assert snapshot.reads_in_place() is (read == "attached")
        converted = converted_hashes(snapshot, stored)
        members = snapshot.db.execute("SELECT count(*), count(DISTINCT key) FROM members").fetchone()
        tables = {row[0] for row in snapshot.db.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        snapshot.close()
    staged = {"staged_0", "staged_1"} if read == "streamed" else set()  # each streamed segment's rows, read once
    assert members == (60, 60) and tables == {"members", *staged}  # the snapshot is as it was
    rows = {row["key"]: (row["row_hash"], row["column_hashes"]) for row in converted.to_pylist()}
    assert converted.column_names == ["key", "row_hash", "column_hashes"]
    # each member once (55, 56 are in both segments), 99 (gone) not at all
    assert sorted(converted.column("key").to_pylist()) == ["3", "55", "56", "7", "8"]
    for key in ("8", "56"):  # unchanged: their current hashes
        assert rows[key] == now[key][:2]
    name = COLUMNS.index("name")
    for key in ("7", "55"):  # changed: sent (row hash 0), with the name only (its column hash zeros)
        expected = bytearray(now[key][1])
        expected[name * SIZE:(name + 1) * SIZE] = bytes(SIZE)
        assert rows[key] == (0, bytes(expected))
    assert rows["3"] == (now["3"][0], None)  # the row is what was sent; which columns, unknown: sent whole


def test_acknowledged_rows_take_the_converted_row_hashes_and_keep_the_others():
    acknowledged = pa.table({"key": ["a", "b", "c"], "row_hash": [1, 2, 3], "target": [1, 1, 2]},
                            schema=pa.schema([("key", pa.string()), ("row_hash", pa.int64()),
                                              ("target", pa.int32())]))
    converted = pa.table({"key": ["c", "a"], "row_hash": [30, 0], "column_hashes": [b"x", None]})
    result = with_row_hashes(acknowledged.to_reader(), converted).read_all()
    assert result.schema == acknowledged.schema
    assert sorted(zip(*(result.column(name).to_pylist() for name in result.column_names))) == \
        [("a", 0, 1), ("b", 2, 1), ("c", 30, 2)]
