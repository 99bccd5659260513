"""State written with hash version 1 (DuckDB's hash()) is converted on the first plan, without a re-send."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest

from segship.engine import hashing
from segship.engine.state import open_state_at
from segship.engine.state.sqlite import MIGRATIONS

from ..conftest import StateTarget
from .conftest import profiles
from .memory_destination import MemoryDestination

COLUMNS = ["id", "email", "name", "value"]  # the memory export's mapped columns, in mapping order
#: schema 2, the last of segship before hash versions, targets and the compact members
SCHEMA_2 = MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version=2;"


@pytest.fixture
def state_target() -> StateTarget:
    """State of hash version 1 is a SQLite file of schema 2: segship had no other state then."""
    return StateTarget("sqlite", "{path: .segship/state.db}", {})


def state_file(workspace) -> Path:
    """The state file, its members folded in (a run leaves the last ones journaled until a read)."""
    path = workspace.root / ".segship" / "state.db"
    store = open_state_at(path)
    try:
        store.counts()  # reads every table: folds
    finally:
        store.close()
    return path


def make_state_of_hash_version_1(workspace) -> None:
    """Turn the workspace's state into what segship wrote before hash version 2: schema 2 (as
    ``engine/state.py`` made it up to commit 4607515), and members' hashes from DuckDB's hash()
    of the current rows (decimal text column hashes)."""
    values = [f's."{column}"' for column in COLUMNS]
    legacy = duckdb.sql(
        f"SELECT id::VARCHAR, {hashing.legacy_row_hash_sql(values)}, "
        f"array_to_string({hashing.legacy_column_hashes_sql(values)}, ',') "
        f"FROM read_csv('{workspace.root / 'profiles.csv'}') AS s").fetchall()
    path = state_file(workspace)
    db = sqlite3.connect(path)
    try:
        exports = db.execute("SELECT name, fingerprint, columns FROM exports").fetchall()
        members = db.execute("SELECT e.name, m.key, coalesce(m.identity, m.key) FROM members m "
                             "JOIN exports e ON e.id = m.export_id").fetchall()
        runs = db.execute("SELECT * FROM runs").fetchall()
    finally:
        db.close()
    for leftover in path.parent.glob("state.db*"):
        leftover.unlink()
    hashes = {key: (row_hash, column_hashes) for key, row_hash, column_hashes in legacy}
    db = sqlite3.connect(path)
    with db:
        db.executescript(SCHEMA_2)
        db.executemany("INSERT INTO exports VALUES (?, ?, ?)", exports)
        db.executemany("INSERT INTO members VALUES (?, ?, ?, ?, ?)",
                       [(export, key, *hashes[key], identity) for export, key, identity in members])
        db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", runs)
    db.close()


def stored(workspace) -> tuple[int, list]:
    """The export's hash version and its members' column hashes, as state holds them."""
    db = sqlite3.connect(state_file(workspace))
    try:
        version = db.execute("SELECT hash_version FROM exports WHERE name = 'sync'").fetchone()
        hashes = [row[0] for row in db.execute(
            "SELECT m.column_hashes FROM members m JOIN exports e ON e.id = m.export_id WHERE e.name = 'sync'")]
        return (version[0] if version else None), hashes
    finally:
        db.close()


def test_state_of_the_old_hash_is_converted_and_only_the_changed_row_is_sent_with_its_changed_column(
        workspace, sent):
    workspace.write(profiles(12))
    workspace.run()
    make_state_of_hash_version_1(workspace)
    workspace.write(profiles(12, changed={7: "Renamed"}))
    before = len(sent())

    dry = workspace.run(dry_run=True)
    assert (dry.plan["update"], dry.plan["unchanged"], dry.plan["hashes_converted"]) == (1, 11, 12)
    assert stored(workspace)[0] == hashing.LEGACY_HASH_VERSION  # a dry run writes nothing

    report = workspace.run()
    assert (report.plan["update"], report.plan["unchanged"], report.plan["hashes_converted"]) == (1, 11, 12)
    assert report.upserted == 1
    # not a join, and of the mapped fields only the changed one (the memory destination always sends email)
    assert sent()[before:] == [("7", (False, {"name": "Renamed", "email": "user7@example.com"}))]
    version, column_hashes = stored(workspace)
    assert version == hashing.HASH_VERSION
    assert all(isinstance(h, bytes) and len(h) == 8 * len(COLUMNS) for h in column_hashes)

    again = workspace.run()
    assert (again.plan["unchanged"], again.plan["hashes_converted"], again.upserted) == (12, 0, 0)


def test_an_unchanged_export_under_the_old_hash_sends_nothing_and_its_leavers_are_still_removed(workspace):
    workspace.write(profiles(10))
    workspace.run()
    make_state_of_hash_version_1(workspace)
    workspace.write(profiles(9))
    calls = len(MemoryDestination.calls)
    report = workspace.run()
    assert (report.plan["unchanged"], report.plan["remove"], report.upserted, report.removed) == (9, 1, 0, 1)
    assert [kind for kind, _ in MemoryDestination.calls[calls:]] == ["remove"]
    assert workspace.run().plan["unchanged"] == 9


def test_a_member_whose_hashes_were_unknown_under_the_old_hash_is_sent_whole(workspace, sent):
    workspace.write(profiles(6))
    workspace.run()
    make_state_of_hash_version_1(workspace)
    db = sqlite3.connect(state_file(workspace))
    with db:  # as a run killed during a re-send for changed settings leaves it
        db.execute("UPDATE members SET row_hash = 0, column_hashes = NULL WHERE key = '4'")
    db.close()
    before = len(sent())
    report = workspace.run()
    assert (report.plan["update"], report.plan["unchanged"], report.upserted) == (1, 5, 1)
    assert sent()[before:] == [("4", (True, {"name": "Name4", "value": 4, "email": "user4@example.com"}))]
    assert workspace.run().plan["unchanged"] == 6
