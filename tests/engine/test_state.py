"""The SQLite state store: migrations, the run lock, commits."""

from __future__ import annotations

import sqlite3

import pytest

from segship.destination import Member
from segship.engine.state import MIGRATIONS, SCHEMA_VERSION, StateError, StateStore


def test_a_state_file_of_an_older_schema_is_migrated_in_place(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:  # what segship 0.1 with schema 1 wrote
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO members VALUES ('sync', 'k1', 7, NULL, 'a@example.com')")
    store = StateStore(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # acknowledged before targets were recorded: in target 1, the first one recorded
    assert store.acknowledged("sync").to_pylist() == [{"key": "k1", "row_hash": 7, "target": 1}]
    assert store.identities_held("sync", ["a@example.com", "b@example.com"], 1) == {"a@example.com"}


def test_a_state_file_from_a_newer_segship_is_refused(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StateError, match="written by a newer segship"):
        StateStore(path)


def test_the_run_lock_refuses_a_second_holder_and_is_released(tmp_path):
    first, second = StateStore(tmp_path / "state.db"), StateStore(tmp_path / "state.db")
    with first.export_lock("sync"):
        with pytest.raises(StateError, match="already running"), second.export_lock("sync"):
            pass
        with second.export_lock("other"):  # other exports are not blocked
            pass
    with second.export_lock("sync"):
        pass


def test_identities_held_ignores_the_keys_that_are_leaving(tmp_path):
    store = StateStore(tmp_path / "state.db")
    store.commit_upserts("sync", [("k1", 1, None, "same@example.com"), ("k2", 2, None, "same@example.com"),
                                  ("k3", 3, None, "own@example.com")], [], [])
    assert store.identities_held("sync", ["same@example.com", "own@example.com"], 1, excluding=["k2", "k3"]) == {
        "same@example.com"}
    store.commit_removals("sync", [Member("k2", "same@example.com")], [], stale=False)
    assert store.acknowledged("sync").column("key").to_pylist() == ["k1", "k3"]
