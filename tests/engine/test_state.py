"""The state contract on both backends (SQLite file, real PostgreSQL): migrations, the run lock,
commits, copy and forget."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from segship.destination import Member
from segship.engine.hashing import HASH_VERSION
from segship.engine.state import MembersDigest, StateError, StateStore, export_lock_key, open_state_at
from segship.engine.state.postgres import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from segship.engine.state.sqlite import (MIGRATIONS, SCHEMA_VERSION, SETTLE_JOURNAL, SETTLE_SORTED_JOURNAL,
                                         SqliteState)

#: schema 2 as segship 0.1 wrote it (engine/state.py before the state package)
SCHEMA_2 = MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version=2;"


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a store lives: a SQLite path, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(target: str | Path) -> StateStore:
    state = open_state_at(target)
    yield state
    state.close()


def keys(store: StateStore, export: str = "sync") -> list[str]:
    return sorted(store.acknowledged(export).read_all().column("key").to_pylist())


def test_a_schema_2_state_file_is_migrated_in_place_and_nothing_is_sent_again(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_2)
        db.execute("INSERT INTO exports VALUES ('sync', 'fp', '[\"id\",\"email\"]')")
        db.executemany("INSERT INTO members VALUES ('sync', ?, ?, ?, ?)", [
            ("k1", 7, "11,-12", "k1"), ("k2", 8, "13,14", "b@example.com"), ("k3", 9, None, "k3")])
        db.execute("INSERT INTO members VALUES ('orphan', 'x', 1, NULL, 'x')")  # an export without settings
        db.execute("INSERT INTO rejects VALUES ('sync', 'k9', 'bad email', 't', 't', 2)")
        db.execute("INSERT INTO stale_identities VALUES ('sync', 'k0', 'old@example.com')")
    db.close()
    store = open_state_at(path)
    assert store.schema_version() == SCHEMA_VERSION
    # acknowledged before targets were recorded: in target 1, the first one recorded
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 7, "target": 1}, {"key": "k2", "row_hash": 8, "target": 1},
        {"key": "k3", "row_hash": 9, "target": 1}]
    # made by DuckDB's hash(): a plan converts them (text column hashes, as segship 0.1 wrote them)
    assert store.hash_version("sync") == store.hash_version("orphan") == 1
    assert store.stored_hashes("sync").to_pylist() == [
        {"key": "k1", "row_hash": 7, "column_hashes": "11,-12"}, {"key": "k2", "row_hash": 8, "column_hashes": "13,14"},
        {"key": "k3", "row_hash": 9, "column_hashes": None}]
    # the settings are kept: a run with the same settings re-sends nobody
    assert not store.reconcile_settings("sync", "fp", ["id", "email"])
    assert store.details("sync", ["k1", "k2", "k3"]) == {
        "k1": ("11,-12", "k1"), "k2": ("13,14", "b@example.com"), "k3": (None, "k3")}
    assert store.identities_held("sync", ["b@example.com", "k1", "nobody"], 1) == {"b@example.com", "k1"}
    assert store.stale_identities("sync") == {1: [Member("k0", "old@example.com")]}
    assert keys(store, "orphan") == ["x"]
    assert store.rejected_keys("sync") == ["k9"]
    store.close()


def test_a_schema_1_state_file_is_migrated_too(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO members VALUES ('sync', 'k1', 7, NULL, 'a@example.com')")
    db.close()
    store = open_state_at(path)
    # acknowledged before targets were recorded: in target 1, the first one recorded
    assert store.acknowledged("sync").read_all().to_pylist() == [{"key": "k1", "row_hash": 7, "target": 1}]
    assert store.identities_held("sync", ["a@example.com", "b@example.com"], 1) == {"a@example.com"}


def test_a_sqlite_state_from_a_newer_segship_is_refused(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="written by a newer segship"):
        open_state_at(path)


def test_a_postgres_state_from_a_newer_segship_is_refused(postgres_url):
    open_state_at(postgres_url).close()
    store = open_state_at(postgres_url)
    store.execute("UPDATE schema_version SET version = ?", (POSTGRES_SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(StateError, match="written by a newer segship"):
        open_state_at(postgres_url)


def test_the_run_lock_refuses_a_second_holder_and_is_released(target):
    first, second = open_state_at(target), open_state_at(target)
    with first.export_lock("sync"):
        with pytest.raises(StateError, match="'sync' is already running: another run holds its lock"), \
                second.export_lock("sync"):
            pass
        with second.export_lock("other"):  # other exports are not blocked
            pass
    with second.export_lock("sync"):
        pass
    first.close()
    second.close()


def test_the_lock_key_is_stable_and_per_export():
    assert export_lock_key("sync") == export_lock_key("sync") != export_lock_key("sync2")
    assert -2**63 <= export_lock_key("sync") < 2**63


def test_commits_and_reads_through_the_contract(store):
    store.commit_upserts("sync", [("k1", 1, b"\x00\x01" * 8, "same@example.com"), ("k2", 2, None, "same@example.com"),
                                  ("k3", 3, "5,6", "k3")], [("k0", "old@example.com")], [("k4", "bad email")])
    assert keys(store) == ["k1", "k2", "k3"]
    # bytes, today's text hashes and unknown hashes come back as they were handed over
    assert store.details("sync", ["k1", "k2", "k3", "missing"]) == {
        "k1": (b"\x00\x01" * 8, "same@example.com"), "k2": (None, "same@example.com"), "k3": ("5,6", "k3")}
    assert store.identities_held("sync", ["same@example.com", "k3"], 1, excluding=["k2", "k3"]) == {
        "same@example.com"}
    assert store.identities_held("sync", ["same@example.com", "k3"], 2) == set()  # nobody in another target
    assert store.stale_identities("sync") == {1: [Member("k0", "old@example.com")]}
    assert store.rejected_keys("sync") == ["k4"]
    store.commit_upserts("sync", [("k4", 4, None, "k4")], [], [])  # accepted at last: no longer a reject
    assert store.rejects("sync") == []
    store.commit_removals("sync", [Member("k2", "same@example.com")], [], stale=False)
    store.commit_removals("sync", [Member("k0", "old@example.com")], [], stale=True)
    assert keys(store) == ["k1", "k3", "k4"]
    assert store.count_stale_identities("sync") == 0
    assert keys(store, "other") == []


def test_changed_settings_mark_every_member_for_a_full_resend(store):
    assert store.reconcile_settings("sync", "fp1", ["a"]) is False  # first run: nothing to compare
    store.commit_upserts("sync", [("k1", 11, b"h" * 8, "k1")], [], [])
    assert not store.settings_changed("sync", "fp1", ["a"])
    assert store.settings_changed("sync", "fp2", ["a"])
    assert store.reconcile_settings("sync", "fp2", ["a"]) is True
    assert store.acknowledged("sync").read_all().to_pylist() == [{"key": "k1", "row_hash": 0, "target": 1}]
    assert store.details("sync", ["k1"]) == {"k1": (None, "k1")}


def test_runs_are_kept_and_a_run_left_running_is_marked_interrupted(store):
    first = store.start_run("sync", dry_run=False)
    second = store.start_run("sync", dry_run=True)
    store.finish_run(second, "succeeded", {"upserted": 3})
    runs = store.runs("sync")
    assert [(r["id"], r["outcome"], r["dry_run"]) for r in runs] == [(second, "succeeded", True),
                                                                      (first, "interrupted", False)]
    assert runs[0]["report"] == {"upserted": 3}


def test_summary_and_forget(store):
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [("k2", "bad")])
    store.finish_run(store.start_run("sync", dry_run=False), "rejects", {})
    store.commit_upserts("keep", [("a", 1, None, "a")], [], [])
    summary = {row["export"]: row for row in store.summary()}
    assert (summary["sync"]["members"], summary["sync"]["rejects"]) == (1, 1)
    assert summary["sync"]["last_run"]["outcome"] == "rejects"
    assert summary["keep"]["last_run"] is None
    assert store.forget("sync") is True
    assert [row["export"] for row in store.summary()] == ["keep"]
    assert store.runs("sync") == [] and keys(store) == [] and keys(store, "keep") == ["a"]
    assert store.forget("sync") is False


def test_a_copy_between_backends_keeps_everything(tmp_path, postgres_url):
    source = open_state_at(tmp_path / "state.db")
    members = [(f"k{i:05d}", i * 7919 - 2**40, None if i % 3 else (b"%08d" % i), f"user{i}@example.com"
                if i % 2 else f"k{i:05d}") for i in range(120_000)]  # more rows than one copy page
    source.reconcile_settings("sync", "fp", ["a"])
    source.target_id("sync", {"list": "first"}, record=True)
    source.commit_upserts("sync", members[:10], [], [])
    assert source.target_id("sync", {"list": "second"}, record=True) == 2
    source.commit_upserts("sync", members, [("gone", "gone@example.com")], [("bad", "refused")], target=2)
    source.finish_run(source.start_run("sync", dry_run=False), "rejects", {"upserted": 3})
    for there, back in ((open_state_at(postgres_url), open_state_at(tmp_path / "back.db")),):
        there.replace_all({table: source.read_table(table) for table in source.counts()})
        back.replace_all({table: there.read_table(table) for table in there.counts()})
        for copy in (there, back):
            assert copy.counts() == source.counts()
            assert copy.acknowledged("sync").read_all().sort_by("key").equals(
                source.acknowledged("sync").read_all().sort_by("key"))
            probe = [key for key, *_ in members[:10]]
            assert copy.details("sync", probe) == source.details("sync", probe)
            assert not copy.settings_changed("sync", "fp", ["a"])
            assert copy.runs() == source.runs() and copy.rejects("sync") == source.rejects("sync")
            assert copy.stale_identities("sync") == {2: [Member("gone", "gone@example.com")]}
            assert copy.targets("sync") == {1: {"list": "first"}, 2: {"list": "second"}}
            assert copy.hash_version("sync") == source.hash_version("sync")
            assert copy.start_run("sync", dry_run=False) > source.runs()[0]["id"]  # ids go on after the copy


def test_targets_and_a_move_through_the_contract(store):
    assert store.target_id("sync", {"list": "a"}, record=False) == 1  # nothing recorded yet: nothing written
    assert store.targets("sync") == {}
    assert store.target_id("sync", {"list": "a"}, record=True) == 1
    store.commit_upserts("sync", [("k1", 1, None, "one@example.com"), ("k2", 2, None, "k2")], [], [])
    assert store.target_id("sync", {"list": "b"}, record=False) == 2
    assert store.targets("sync") == {1: {"list": "a"}}
    assert store.target_id("sync", {"list": "b"}, record=True) == 2
    assert store.targets("sync") == {1: {"list": "a"}, 2: {"list": "b"}}
    # k1 moves to target 2 (a new identity there too): its identity in target 1 is left to remove
    store.commit_upserts("sync", [("k1", 3, None, "new@example.com")], [("k1", "older@example.com")], [],
                         target=2, moving=True)
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 3, "target": 2}, {"key": "k2", "row_hash": 2, "target": 1}]
    assert store.members_by_target("sync", ["k1", "k2", "gone"]) == {2: [Member("k1", "new@example.com")],
                                                                     1: [Member("k2", "k2")]}
    assert store.stale_identities("sync") == {1: [Member("k1", "one@example.com")],
                                              2: [Member("k1", "older@example.com")]}
    assert store.count_stale_identities("sync") == 2
    assert store.identities_held("sync", ["new@example.com", "k2"], 2) == {"new@example.com"}
    assert store.identities_held("sync", ["new@example.com", "k2"], 1) == {"k2"}
    store.commit_removals("sync", [Member("k1", "one@example.com")], [], stale=True, target=1)
    assert store.stale_identities("sync") == {2: [Member("k1", "older@example.com")]}
    store.commit_removals("sync", [Member("k1", "older@example.com")], [], stale=True, target=1)  # not there
    assert store.count_stale_identities("sync") == 1
    assert store.forget("sync") and store.targets("sync") == {}


def test_earlier_fingerprints_hash_versions_and_converted_hashes(store):
    assert not store.has_members("sync")
    assert store.hash_version("sync") == HASH_VERSION  # a new export: the current hashes
    store.reconcile_settings("sync", "fp-old", ["a", "b"])
    # the same settings as an older segship fingerprinted them: no change, the fingerprint is replaced
    assert not store.settings_changed("sync", "fp-new", ["a", "b"], "fp-old")
    assert store.settings_changed("sync", "fp-new", ["a"], "fp-old")
    assert store.reconcile_settings("sync", "fp-new", ["a", "b"], "fp-old") is False
    assert not store.settings_changed("sync", "fp-new", ["a", "b"])
    store.commit_upserts("sync", [("k1", 5, "1,2", "k1"), ("k2", 6, None, "k2")], [], [])
    assert store.has_members("sync") and not store.has_members("other")
    assert store.stored_hashes("sync").to_pylist() == [{"key": "k1", "row_hash": 5, "column_hashes": "1,2"},
                                                       {"key": "k2", "row_hash": 6, "column_hashes": None}]
    converted = pa.table({"key": ["k1", "k2"], "row_hash": pa.array([50, 0], pa.int64()),
                          "column_hashes": pa.array([b"\x01" * 16, None], pa.binary())})
    store.convert_hashes("sync", converted, 7)
    assert store.hash_version("sync") == 7
    assert store.acknowledged("sync").read_all().column("row_hash").to_pylist() == [50, 0]
    assert store.details("sync", ["k1", "k2"]) == {"k1": (b"\x01" * 16, "k1"), "k2": (None, "k2")}
    assert store.reconcile_settings("sync", "fp-other", ["a", "b"]) is True  # nothing left to convert
    assert store.hash_version("sync") == HASH_VERSION


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


def test_an_export_created_in_a_transaction_that_rolled_back_gives_its_id_to_no_other(store, target):
    with pytest.raises(StateError):  # the export is created, then its commit fails: neither is kept
        store.commit_upserts("first", [("k1", 1, None, "k1"), (None, 1, None, "x")], [], [])
    store.commit_upserts("second", [("k2", 2, None, "k2")], [], [])
    store.commit_upserts("first", [("k3", 3, None, "k3")], [], [])
    assert (keys(store, "first"), keys(store, "second")) == (["k3"], ["k2"])
    reopened = open_state_at(target)  # as the next run finds them
    assert (keys(reopened, "first"), keys(reopened, "second")) == (["k3"], ["k2"])
    reopened.close()


def test_batches_in_flight_are_cleared_by_their_commit_and_folded_in_when_left(store):
    store.commit_upserts("sync", [("k2", 2, None, "old@example.com")], [], [])
    answered = store.record_in_flight("sync", ["k3"], ["k3"], 1)
    store.commit_upserts("sync", [("k3", 3, None, "k3")], [], [], in_flight=answered)
    # never answered (the run was killed): k1 is no member yet, k2 went out under another identity
    store.record_in_flight("sync", ["k1", "k2"], ["one@example.com", "new@example.com"], 1)
    assert store.settle_in_flight("sync") == 2
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 0, "target": 1}, {"key": "k2", "row_hash": 2, "target": 1},
        {"key": "k3", "row_hash": 3, "target": 1}]
    assert store.details("sync", ["k1"]) == {"k1": (None, "one@example.com")}
    assert store.stale_identities("sync") == {1: [Member("k2", "new@example.com")]}
    assert store.settle_in_flight("sync") == 0  # folded once


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


def test_a_members_digest_holds_until_any_write_to_the_members(store):
    digest = MembersDigest("kind", 2, -5)

    def recorded_then(write) -> MembersDigest | None:
        store.record_members_digest("sync", digest)
        assert store.members_digest("sync") == digest
        write()
        return store.members_digest("sync")

    store.start_run("sync", dry_run=False)
    assert store.members_digest("sync") is None
    assert recorded_then(lambda: store.commit_upserts("sync", [("k1", 1, None, "k1"), ("k2", 2, None, "k2")],
                                                      [], [])) is None
    # twice in one run: recording again means the next write must drop it again
    assert recorded_then(lambda: store.commit_upserts("sync", [("k3", 3, None, "k3")], [], [])) is None
    assert recorded_then(lambda: store.commit_removals("sync", [Member("k3", "k3")], [], stale=False)) is None
    assert recorded_then(lambda: store.record_in_flight("sync", ["k4"], ["k4"], 1)) == digest  # no member yet
    assert recorded_then(lambda: store.settle_in_flight("sync")) is None
    assert recorded_then(lambda: store.reconcile_settings("sync", "fp", ["a"])) is None
    assert recorded_then(lambda: store.convert_hashes("sync", pa.table({
        "key": ["k1"], "row_hash": pa.array([9], pa.int64()), "column_hashes": pa.array([None], pa.binary())}),
        HASH_VERSION)) is None
    # what leaves the members as they are keeps it: stale identities, rejects, runs
    assert recorded_then(lambda: store.commit_removals("sync", [Member("k0", "old")], [], stale=True)) == digest
    assert recorded_then(lambda: store.commit_upserts("sync", [], [], [("k9", "bad email")])) == digest
    assert recorded_then(lambda: store.start_run("sync", dry_run=False)) == digest
    assert store.forget("sync") and store.members_digest("sync") is None


def test_a_members_digest_dropped_in_a_transaction_that_failed_is_dropped_by_the_next_write(store):
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    store.start_run("sync", dry_run=False)
    store.record_members_digest("sync", MembersDigest("kind", 1, 7))
    with pytest.raises(StateError):  # the upsert runs, then a reject without a reason fails the transaction
        store.commit_upserts("sync", [("k2", 2, None, "k2")], [], [("k3", None)])  # type: ignore[list-item]
    assert store.members_digest("sync") == MembersDigest("kind", 1, 7)
    store.commit_upserts("sync", [("k2", 2, None, "k2")], [], [])
    assert store.members_digest("sync") is None
