"""The members' digest by bucket (engine/buckets.py): what it records, and that a plan trusts it.

Against a real PostgreSQL table streamed to the local planner (the ``streamed`` variant) and a real
SQLite state; the property that a plan by bucket equals a full one is in ``test_run_properties.py``.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from segship.engine import buckets

from .conftest import profiles

STREAMED = pytest.mark.parametrize("state_target", ["streamed"], indirect=True)


@STREAMED
def test_a_completed_run_records_its_members_by_bucket_and_any_write_drops_them(workspace):
    workspace.write(profiles(50))
    assert workspace.run().outcome == "succeeded"
    state = workspace.state()
    try:
        recorded = state.members_digest("sync")
        assert recorded.kind.startswith(f"duckdb {duckdb.__version__} hash, {buckets.BUCKET_BITS}-bit buckets")
        record = buckets.decode(recorded.buckets)
        assert record.schema == buckets.SCHEMA and recorded.members == sum(record.column("members").to_pylist()) == 50
        state.commit_upserts("sync", [("51", 1, None, "51")], [], [])
        assert state.members_digest("sync") is None
    finally:
        state.close()


@STREAMED
def test_a_bucket_that_agrees_with_the_record_is_not_diffed(workspace):
    """The plan trusts the record: a member whose bucket agrees is unchanged without reading state's row.
    (State changed behind segship's back here, which no segship write does: each drops the record.)"""
    workspace.write(profiles(20))
    assert workspace.run().outcome == "succeeded"
    state = workspace.state()
    try:
        state.acknowledged("sync").read_all()  # (SQLite folds its journal of members first)
        digest = state.members_digest("sync")
        state.execute("UPDATE members SET row_hash = 1 WHERE key = '3'")
        assert state.members_digest("sync") == digest
    finally:
        state.close()
    assert digest is not None
    assert workspace.run().plan["unchanged"] == 20  # bucket of '3' agrees: not diffed
    rows = profiles(20, changed={3: "Changed"})
    workspace.write(rows)
    assert workspace.run().plan["update"] == 1


@STREAMED
def test_a_row_refused_as_it_is_makes_its_bucket_always_differ(workspace):
    rows = profiles(8)
    rows[2] = (3, "not-an-email", "Name3", 3)  # refused by the mapping: state keeps nothing of it
    workspace.write(rows)
    assert workspace.run().outcome == "rejects"
    assert workspace.run().plan["refused"] == 1  # a plan with nothing to do records the digest
    state = workspace.state()
    try:
        record = buckets.decode(state.members_digest("sync").buckets).to_pylist()
    finally:
        state.close()
    with duckdb.connect() as db:
        bucket = db.execute(f"SELECT {buckets.bucket_sql('$key')}", {"key": "3"}).fetchone()[0]
    assert [row["members"] for row in record if row["bucket"] == bucket] == [buckets.DIRTY]
    assert workspace.run().plan["refused"] == 1  # still refused as it is
    rows[2] = (3, "user3@example.com", "Name3", 3)
    workspace.write(rows)
    assert workspace.run().upserted == 1


@pytest.mark.parametrize("sql_type, values", [
    ("DECIMAL(38, 2)", ["0.00", "-0.01"]),  # a HUGEINT: its halves' hashes xor-ed
    ("UUID", ["'7fffffff-ffff-ffff-ffff-ffffffffffff'", "'80000000-0000-0000-0000-000000000000'"]),  # a HUGEINT too
    ("INTEGER[]", ["NULL", "[]", "[NULL]"]),
    ("MAP(VARCHAR, INTEGER)", ["NULL", "MAP {}"]),
    ("STRUCT(a INTEGER)", ["NULL", "{'a': NULL}"]),
    ("INTERVAL", ["INTERVAL '1 day'", "INTERVAL '1 month'", "INTERVAL '1 microsecond'"]),
])
def test_values_the_canonical_encoding_tells_apart_mix_apart(sql_type, values):
    """Even where DuckDB's hash of the type collides (checked: else the case would prove nothing)."""
    with duckdb.connect() as db:
        rows = db.sql(" UNION ALL ".join(f"SELECT CAST({value} AS {sql_type}) AS v" for value in values))
        mix = buckets.row_mix_sql("'k'", [("v", "v")], {"v": rows.types[0]})
        hashed, mixed = rows.query("rows", f"SELECT count(DISTINCT hash(v)), count(DISTINCT {mix}) FROM rows"
                                   ).fetchall()[0]
    assert hashed < len(values) and mixed == len(values)


def test_the_kind_names_the_types_and_the_mix_the_order_of_values():
    assert buckets.buckets_kind(["DATE"]) != buckets.buckets_kind(["INTEGER"])  # DuckDB hashes both as an integer
    key, a, b = "'k'", "'a'", "'b'"
    with duckdb.connect() as db:
        text = {"a": duckdb.sqltype("VARCHAR"), "b": duckdb.sqltype("VARCHAR")}
        one, swapped = db.execute(f"SELECT {buckets.row_mix_sql(key, [('a', a), ('b', b)], text)}, "
                                  f"{buckets.row_mix_sql(key, [('a', b), ('b', a)], text)}").fetchone()
    assert one != swapped
    table = pa.table({"bucket": pa.array([0, 7], pa.uint32()), "members": [3, buckets.DIRTY],
                      "mix": pa.array([2**64 - 1, 5], pa.uint64())})
    assert buckets.decode(buckets.encode(table)).equals(table)


@STREAMED
def test_a_record_of_another_kind_is_not_used_and_the_run_records_its_own(workspace, monkeypatch):
    """As after a DuckDB upgrade or a column's new type: every member is diffed, nobody is sent again."""
    workspace.write(profiles(30))
    assert workspace.run().outcome == "succeeded"
    monkeypatch.setattr(buckets, "BUCKET_BITS", 4)  # another kind of record than the one state holds
    workspace.write(profiles(30, changed={5: "Changed"}))
    report = workspace.run()
    assert (report.upserted, report.plan["update"], report.plan["unchanged"]) == (1, 1, 29)
    state = workspace.state()
    try:
        recorded = state.members_digest("sync")
    finally:
        state.close()
    assert recorded.kind.startswith(buckets.kind_prefix()) and "4-bit" in recorded.kind
    record = buckets.decode(recorded.buckets).to_pydict()
    assert sum(record["members"]) == 30 and max(record["bucket"]) < 16
