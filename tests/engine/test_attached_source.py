"""A DuckDB source attached to the engine's own DuckDB: its segments' SQL runs there, beside the engine's tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pytest

from segship.engine.snapshot import Snapshot

from .memory_destination import MemoryDestination

SOURCES = """
sources:
  mart: {{type: duckdb, path: mart.duckdb}}
segments:
  customers: {{source: mart, key: id, sql: "{sql}"}}"""
# the engine's own table names: a source's tables of those names must not be confused with them
ENGINE_TABLE_NAMES = ("snapshot", "members", "acknowledged", "actions", "wanted", "current_hashes")


def write_mart(workspace, names: dict[int, str]) -> None:
    path = workspace.root / "mart.duckdb"
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE customers (id INTEGER, email VARCHAR, name VARCHAR, value INTEGER)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                       [(i, f"user{i}@example.com", name, i) for i, name in names.items()])
        for table in ENGINE_TABLE_NAMES:
            db.execute(f"CREATE TABLE {table} AS SELECT 'not the engine''s' AS key, 0 AS seg, 0 AS row_hash")


def configure(workspace, sql: str = "SELECT * FROM customers -- the customers") -> None:
    workspace.configure(segments="customers", sources=SOURCES.format(sql=sql))


def test_a_duckdb_database_segment_is_planned_and_sent_in_the_engines_duckdb(workspace, sent):
    write_mart(workspace, {i: f"Name{i}" for i in range(1, 13)})
    configure(workspace)
    first = workspace.run()
    assert first.outcome == "succeeded", first.message
    assert (first.outcome, first.plan["add"], first.upserted) == ("succeeded", 12, 12)
    assert MemoryDestination.members == {str(i) for i in range(1, 13)}

    write_mart(workspace, {**{i: f"Name{i}" for i in range(1, 12)}, 5: "Renamed"})
    before = len(sent())
    again = workspace.run()
    assert (again.plan["update"], again.plan["remove"], again.plan["unchanged"]) == (1, 1, 10)
    assert (again.upserted, again.removed) == (1, 1)
    assert sent()[before:] == [("5", (False, {"name": "Renamed", "email": "user5@example.com"}))]


@contextmanager
def built_snapshot(workspace, plugins) -> Iterator[Snapshot]:
    """The snapshot of the export of one customer of the mart, built."""
    write_mart(workspace, {1: "One"})
    configure(workspace)
    config = workspace.config()
    snapshot = Snapshot(config, config.exports["sync"], plugins, ["id", "email", "name", "value"])
    try:
        snapshot.build()
        yield snapshot
    finally:
        snapshot.close()


def test_the_segment_is_read_in_the_engines_duckdb_not_through_the_sources_own_connection(workspace,
                                                                                        memory_plugins):
    with built_snapshot(workspace, memory_plugins) as snapshot:
        assert snapshot.db.execute("SELECT key FROM members").fetchall() == [("1",)]
        source = snapshot._sources["mart"]
        assert source._connection is None  # read() was never called


@pytest.mark.parametrize("sql", ["CREATE TABLE extra AS SELECT 1 AS id", "SET threads TO 1",
                                 "SELECT * FROM customers; SELECT * FROM customers", "SELECT * FROM no_such_table"])
def test_a_segment_that_is_no_query_of_the_source_fails_placed_before_sending(workspace, sql):
    write_mart(workspace, {1: "One"})
    configure(workspace, sql)
    report = workspace.run()
    assert report.outcome == "failed" and report.upserted == 0
    assert "segment 'customers' failed: source 'mart'" in report.message
    assert MemoryDestination.calls == []


def test_the_engines_duckdb_is_locked_before_a_segments_sql_runs(workspace, memory_plugins):
    with built_snapshot(workspace, memory_plugins) as snapshot:
        settings = dict(snapshot.db.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration', "
            "'autoinstall_known_extensions', 'autoload_known_extensions', 'allow_persistent_secrets')").fetchall())
        assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                            "autoinstall_known_extensions": "false", "autoload_known_extensions": "false",
                            "allow_persistent_secrets": "false"}
        with pytest.raises(duckdb.InvalidInputException, match="the configuration has been locked"):
            snapshot.db.execute("SET enable_external_access = true")
        snapshot.db.execute("SET threads TO 2")  # the engine's own: every core while it plans
