"""State written with hash version 1 (DuckDB's hash()) is converted on the first plan, without a re-send."""

from __future__ import annotations

import sqlite3

import duckdb

from segship.engine import hashing

from .conftest import profiles
from .memory_destination import MemoryDestination

COLUMNS = ["id", "email", "name", "value"]  # the memory export's mapped columns, in mapping order


def make_state_of_hash_version_1(workspace) -> None:
    """Turn the workspace's state into what segship wrote before hash version 2: schema 2, and
    members' hashes from DuckDB's hash() of the current rows (decimal text column hashes)."""
    values = [f's."{column}"' for column in COLUMNS]
    rows = duckdb.sql(
        f"SELECT id::VARCHAR, {hashing.legacy_row_hash_sql(values)}, "
        f"array_to_string({hashing.legacy_column_hashes_sql(values)}, ',') "
        f"FROM read_csv('{workspace.root / 'profiles.csv'}') AS s").fetchall()
    db = sqlite3.connect(workspace.root / "state" / "state.db")
    with db:
        db.executemany("UPDATE members SET row_hash = ?, column_hashes = ? WHERE export = 'sync' AND key = ?",
                       [(row_hash, column_hashes, key) for key, row_hash, column_hashes in rows])
        # the schema of segship before hash versions and targets (migrations 3 and 4 undone)
        db.execute("ALTER TABLE exports DROP COLUMN hash_version")
        db.execute("DROP TABLE targets")
        db.execute("ALTER TABLE members DROP COLUMN target")
        db.execute("CREATE TABLE stale_identities_2 (export TEXT NOT NULL, key TEXT NOT NULL, identity TEXT NOT NULL, "
                   "PRIMARY KEY (export, identity)) WITHOUT ROWID")
        db.execute("INSERT INTO stale_identities_2 SELECT export, key, identity FROM stale_identities")
        db.execute("DROP TABLE stale_identities")
        db.execute("ALTER TABLE stale_identities_2 RENAME TO stale_identities")
    db.execute("PRAGMA user_version = 2")
    db.close()


def stored(workspace) -> tuple[int, list]:
    """The export's hash version and its members' column hashes, as state holds them."""
    db = sqlite3.connect(workspace.root / "state" / "state.db")
    try:
        version = db.execute("SELECT hash_version FROM exports WHERE export = 'sync'").fetchone()
        hashes = [row[0] for row in db.execute("SELECT column_hashes FROM members WHERE export = 'sync'")]
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
    db = sqlite3.connect(workspace.root / "state" / "state.db")
    with db:  # as a run killed during a re-send for changed settings leaves it
        db.execute("UPDATE members SET row_hash = 0, column_hashes = NULL WHERE key = '4'")
    db.close()
    before = len(sent())
    report = workspace.run()
    assert (report.plan["update"], report.plan["unchanged"], report.upserted) == (1, 5, 1)
    assert sent()[before:] == [("4", (True, {"name": "Name4", "value": 4, "email": "user4@example.com"}))]
    assert workspace.run().plan["unchanged"] == 6
