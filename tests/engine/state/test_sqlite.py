"""What only the SQLite backend does: its member journal, folded into ``members`` when next read, and
waiting for another connection's write lock."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from segship.engine.state import StateError, open_state_at
from segship.engine.state.sqlite import SETTLE_JOURNAL, SETTLE_SORTED_JOURNAL, SqliteState

from .conftest import keys


def test_sqlite_members_are_journaled_as_committed_and_folded_in_when_next_read(tmp_path):
    path = tmp_path / "state.db"
    store = open_state_at(path)
    store.commit_upserts("sync", [("k2", 2, b"\x02" * 8, "k2"), ("k1", 1, None, "one@example.com")], [], [])
    store.commit_upserts("sync", [("k2", 3, b"\x03" * 8, "k2")], [], [])  # the later commit of a key wins
    store.close()  # as a run that removed nobody, or a killed one, leaves it: committed, not folded

    def table(name: str, store: SqliteState | None = None) -> list[tuple]:
        query = f"SELECT key, row_hash, identity FROM {name} ORDER BY key"  # noqa: S608
        if store is not None:
            # read on the store's own connection: closing a connection of the sqlite3 module, a second
            # SQLite library in the process, releases the store's locks on the file (see sqlite.py)
            # and may checkpoint and delete the write-ahead log the store goes on writing to
            return store.rows(query)
        with sqlite3.connect(path) as db:
            return db.execute(query).fetchall()

    journaled = [("k1", 1, "one@example.com"), ("k2", 2, None), ("k2", 3, None)]
    assert table("member_journal") == journaled
    assert table("members") == []
    reopened = open_state_at(path)
    reopened.start_run("sync", dry_run=False)
    assert reopened.has_members("sync") and not reopened.has_members("other")
    assert reopened.members_by_target("sync", []) == {}
    assert table("member_journal", reopened) == journaled  # nothing read the members yet
    assert keys(reopened) == ["k1", "k2"]  # a read folds them in
    assert table("member_journal", reopened) == []
    assert table("members", reopened) == [("k1", 1, "one@example.com"), ("k2", 3, None)]
    reopened.commit_upserts("sync", [("k3", 4, None, "k3")], [], [])
    assert keys(reopened) == ["k1", "k2", "k3"]
    assert reopened.details("sync", ["k2"]) == {"k2": (b"\x03" * 8, "k2")}
    reopened.close()


def test_sqlite_folds_what_another_store_journaled_once_the_next_run_starts(tmp_path):
    """A store looks for a journal others left once an export's run: the next run looks again."""
    path = tmp_path / "state.db"
    store = open_state_at(path)
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    assert keys(store) == ["k1"]  # folded: the journal was looked for
    other = open_state_at(path)  # another process's run of the export
    other.start_run("sync", dry_run=False)
    other.commit_upserts("sync", [("k2", 2, None, "k2")], [], [])
    other.close()
    store.start_run("sync", dry_run=False)
    assert keys(store) == ["k1", "k2"]
    store.close()


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements SQLite stores fold their journal with, in order."""
    made: list[str] = []
    execute = SqliteState.execute

    def spy(self: SqliteState, sql: str, params=()):
        if sql in (SETTLE_JOURNAL, SETTLE_SORTED_JOURNAL):
            made.append("as written" if sql == SETTLE_SORTED_JOURNAL else "sorted")
        return execute(self, sql, params)

    monkeypatch.setattr(SqliteState, "execute", spy)
    return made


@pytest.mark.parametrize(("commits", "fold"), [
    ([["k1", "k2"], ["k2", "k3"]], "as written"),  # in key order, a key again in a later commit
    ([["k1", "k1", "k2"]], "as written"),          # a key twice in one commit
    ([["k2", "k3"], ["k1"]], "sorted"),
    ([["k1", "k3", "k2"]], "sorted")])
def test_sqlite_folds_a_journal_in_key_order_as_written_and_any_other_sorted_to_the_same_members(
        tmp_path, folds, commits, fold):
    store = open_state_at(tmp_path / "state.db")
    for row_hash, commit in enumerate(commits, 1):
        store.commit_upserts("sync", [(key, row_hash, None, key) for key in commit], [], [])
    last_commit = {key: row_hash for row_hash, commit in enumerate(commits, 1) for key in commit}  # wins
    assert sorted(store.acknowledged("sync").read_all().to_pylist(), key=lambda row: row["key"]) == [
        {"key": key, "row_hash": row_hash, "target": 1} for key, row_hash in sorted(last_commit.items())]
    assert folds == [fold]
    store.close()


def test_sqlite_sorts_the_journal_another_store_left_whatever_its_order(tmp_path, folds):
    store = open_state_at(tmp_path / "state.db")
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    store.close()
    reopened = open_state_at(tmp_path / "state.db")
    reopened.commit_upserts("sync", [("k2", 2, None, "k2")], [], [])
    assert keys(reopened) == ["k1", "k2"]
    assert folds == ["sorted"]
    reopened.commit_upserts("sync", [("k3", 3, None, "k3")], [], [])  # a journal it began, from empty
    assert keys(reopened) == ["k1", "k2", "k3"]
    assert folds == ["sorted", "as written"]
    reopened.close()


def test_a_journal_folded_by_a_commit_that_rolled_back_is_sorted_when_it_goes_on_out_of_order(
        tmp_path, folds, monkeypatch):
    monkeypatch.setattr("segship.engine.state.sqlite.FOLD_MIN_MEMBERS", 2)
    store = open_state_at(tmp_path / "state.db")
    store.commit_upserts("sync", [("m", 1, None, "m")], [], [])
    with pytest.raises(StateError):  # folds m, n, then fails (a stale identity can't be NULL): all rolled back
        store.commit_upserts("sync", [("n", 2, None, "n")], [("old", None)], [])
    store.commit_upserts("sync", [("a", 3, None, "a")], [], [])  # the journal is m, a: out of order
    assert keys(store) == ["a", "m"]
    assert folds == ["as written", "sorted"]
    store.close()


def test_sqlite_folding_one_exports_journal_keeps_the_others(tmp_path):
    store = open_state_at(tmp_path / "state.db")
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    store.commit_upserts("other", [("o1", 5, None, "o1")], [], [])
    assert keys(store) == ["k1"]  # folds "sync" only
    assert store.rows("SELECT key FROM member_journal") == [("o1",)]  # on its own connection, not sqlite3's
    assert store.acknowledged("other").read_all().to_pylist() == [{"key": "o1", "row_hash": 5, "target": 1}]
    assert store.rows("SELECT count(*) FROM member_journal") == [(0,)]  # the last one, emptied whole
    store.close()


def test_a_sqlite_state_opens_while_another_connection_holds_the_write_lock(tmp_path):
    path = tmp_path / "state.db"
    writer = open_state_at(path)
    writer.execute("BEGIN IMMEDIATE")  # as a run of another export does while it commits
    release = threading.Timer(0.5, writer.execute, ("COMMIT",))
    release.start()
    try:
        reader = open_state_at(path)  # waits for the lock (busy_timeout), does not fail
        assert keys(reader) == []
        reader.close()
    finally:
        release.join()
        writer.close()
