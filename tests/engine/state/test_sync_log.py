"""The sync log through the contract, on both backends: written by the commits, read by member, identity
and run, pruned by runs, forgotten and copied with the export's state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from segship.destination import Member
from segship.engine.state import LoggedChanges, open_state_at
from segship.engine.sync_log import BatchChanges, removal_changes, rows


def joined(*members: tuple[str, str]) -> pa.RecordBatch:
    """Acknowledged rows (key, identity) as a commit takes them."""
    return pa.RecordBatch.from_pydict({
        "key": pa.array([key for key, _ in members], pa.string()),
        "row_hash": pa.array(range(1, len(members) + 1), pa.int64()),
        "column_hashes": pa.array([None] * len(members), pa.binary()),
        "identity": pa.array([identity for _, identity in members], pa.string())})


def commit(store, run_id: int, acknowledged: pa.RecordBatch, changes: BatchChanges, refused=(), dropped=(),
           **kwargs) -> None:
    store.commit_upserts("sync", acknowledged, [], list(refused), **kwargs,
                         log=LoggedChanges(run_id, changes.changes(acknowledged, list(refused), dropped)))


def summary(changes: list[dict]) -> list[tuple]:
    return [(c["run_id"], c["key"], c["identity"], c["action"], c["target"], c["fields"], c["reason"])
            for c in changes]


def test_a_run_logs_adds_updates_refusals_dropped_fields_and_removals(store):
    first = store.start_run("sync", dry_run=False)
    commit(store, first, joined(("k1", "k1"), ("k2", "two@example.com")), BatchChanges())
    second = store.start_run("sync", dry_run=False)
    changes = BatchChanges(updates={"k1": frozenset({"last_name", "first_name"}), "k2": None},
                           identities={"k3": "three@example.com"})
    commit(store, second, joined(("k1", "k1"), ("k2", "two@example.com")), changes,
           refused=[("k3", "invalid email"), ("k4", "key too long")],
           dropped=[("k1", "phone", "not a phone number"), ("k9", "phone", "never sent")])
    store.commit_removals("sync", [Member("k2", "two@example.com")], [("k1", "not found")], stale=False,
                          log=LoggedChanges(second, removal_changes([Member("k2", "two@example.com")],
                                                                    [("k1", "not found")], {"k1": "k1"},
                                                                    stale=False)))
    logged, total = store.sync_log("sync", run_id=second)
    assert total == 7
    assert summary(reversed(logged)) == [
        (second, "k1", "k1", "update", 1, "first_name,last_name", None),
        (second, "k2", "two@example.com", "update", 1, None, None),  # not known what changed: every field sent
        (second, "k1", "k1", "dropped_field", 1, "phone", "not a phone number"),  # k9 was not acknowledged
        (second, "k3", "three@example.com", "refused", 1, None, "invalid email"),
        (second, "k4", None, "refused", 1, None, "key too long"),  # refused by the mapping: no identity known
        (second, "k2", "two@example.com", "remove", 1, None, None),
        (second, "k1", "k1", "refused", 1, None, "not found")]
    assert summary(store.sync_log("sync", key="k2")[0]) == [
        (second, "k2", "two@example.com", "remove", 1, None, None),
        (second, "k2", "two@example.com", "update", 1, None, None),
        (first, "k2", "two@example.com", "add", 1, None, None)]
    # an identity's rows: those naming it, and those of a key that is its own identity
    assert [c["key"] for c in store.sync_log("sync", identity="two@example.com")[0]] == ["k2", "k2", "k2"]
    assert [c["action"] for c in store.sync_log("sync", identity="k1")[0]] == [
        "refused", "dropped_field", "update", "add"]
    page, total = store.sync_log("sync", limit=2)
    assert (len(page), total) == (2, 9) and page[0]["id"] > page[1]["id"]
    assert page[0]["at"].endswith("Z") and page[0]["target_settings"] is None  # no target recorded here
    assert store.sync_log("other") == ([], 0)


def test_an_unchanged_member_sent_again_logs_nothing(store):
    """A full resync sends unchanged members again: no change, no row."""
    run = store.start_run("sync", dry_run=False)
    commit(store, run, joined(("k1", "k1"), ("k2", "k2")), BatchChanges(updates={"k1": frozenset(), "k2": frozenset({"a"})}))
    assert summary(store.sync_log("sync")[0]) == [(run, "k2", "k2", "update", 1, "a", None)]


def test_a_member_joining_from_another_target_is_logged_as_a_move(store):
    first_target = store.target_id("sync", {"list": 1}, record=True)
    second_target = store.target_id("sync", {"list": 2}, record=True)
    run = store.start_run("sync", dry_run=False)
    commit(store, run, joined(("k1", "k1")), BatchChanges(), target=first_target)
    moving = store.start_run("sync", dry_run=False)
    commit(store, moving, joined(("k1", "k1"), ("k2", "k2")), BatchChanges(), target=second_target, moving=True)
    store.commit_removals("sync", [Member("k1", "k1")], [], stale=True, target=first_target,
                          log=LoggedChanges(moving, removal_changes([Member("k1", "k1")], [], {}, stale=True)))
    logged = store.sync_log("sync", run_id=moving)[0]
    assert [(c["key"], c["action"], c["target"], c["target_settings"]) for c in reversed(logged)] == [
        ("k1", "move", second_target, {"list": 2}), ("k2", "add", second_target, {"list": 2}),
        ("k1", "remove", first_target, {"list": 1})]
    assert logged[0]["reason"].startswith("an earlier identity")


def test_runs_prune_the_log_older_than_the_retention(store):
    old = store.start_run("sync", dry_run=False)
    commit(store, old, joined(("k1", "k1")), BatchChanges())
    month_ago = (datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="seconds")
    store.execute("UPDATE runs SET started_at = ? WHERE id = ?", (month_ago, old))  # as if it ran a month ago
    recent = store.start_run("sync", dry_run=False)
    commit(store, recent, joined(("k2", "k2")), BatchChanges())
    other = store.start_run("other", dry_run=False)
    store.log_changes("other", LoggedChanges(other, rows([("k1", "k1", "add", None, None)])))
    store.execute("UPDATE runs SET started_at = ? WHERE id = ?", (month_ago, other))
    assert store.prune_sync_log("sync", 30) == 1
    assert [c["run_id"] for c in store.sync_log("sync")[0]] == [recent]
    assert store.prune_sync_log("sync", 30) == 0  # nothing old left
    assert store.prune_sync_log("sync", 32) == 0
    assert store.sync_log("other")[1] == 1  # another export's log is its own
    # 0 days: the log is off, and what was kept goes
    assert store.prune_sync_log("sync", 0) == 1 and store.sync_log("sync") == ([], 0)
    assert store.prune_sync_log("nobody", 30) == 0


def test_the_log_is_forgotten_and_copied_with_the_state(store, tmp_path):
    run = store.start_run("sync", dry_run=False)
    commit(store, run, joined(("k1", "one@example.com")), BatchChanges())
    copy = open_state_at(tmp_path / "copy.db")
    try:
        copy.replace_all({table: store.read_table(table) for table in store.counts()})
        assert copy.counts()["sync_log"] == 1
        assert summary(copy.sync_log("sync")[0]) == [(run, "k1", "one@example.com", "add", 1, None, None)]
    finally:
        copy.close()
    store.forget("sync")
    assert store.counts()["sync_log"] == 0


def test_runs_of_two_exports_at_once_keep_their_own_rows(store):
    """Commits of two exports interleave in the log: a run's rows, and a prune, are each export's own."""
    first = store.start_run("sync", dry_run=False)
    other = store.start_run("other", dry_run=False)
    store.log_changes("sync", LoggedChanges(first, rows([("k1", "k1", "add", None, None)])))
    store.log_changes("other", LoggedChanges(other, rows([("o1", "o1", "add", None, None)])))
    store.log_changes("sync", LoggedChanges(first, rows([("k2", "k2", "add", None, None)])))
    second = store.start_run("sync", dry_run=False)
    store.log_changes("other", LoggedChanges(other, rows([("o2", "o2", "add", None, None)])))
    store.log_changes("sync", LoggedChanges(second, rows([("k1", "k1", "update", "a", None)])))
    assert [c["key"] for c in store.sync_log("sync", run_id=first)[0]] == ["k2", "k1"]
    assert [c["key"] for c in store.sync_log("sync", run_id=second)[0]] == ["k1"]
    assert [c["key"] for c in store.sync_log("other", run_id=other)[0]] == ["o2", "o1"]
    assert store.sync_log("sync", run_id=other) == ([], 0)  # another export's run
    month_ago = (datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="seconds")
    store.execute("UPDATE runs SET started_at = ? WHERE id IN (?, ?)", (month_ago, first, other))
    assert store.prune_sync_log("sync", 30) == 2
    assert [c["run_id"] for c in store.sync_log("sync")[0]] == [second]
    assert store.sync_log("other")[1] == 2
    assert store.prune_sync_log("other", 30) == 2 and store.sync_log("other") == ([], 0)
    assert [c["key"] for c in store.sync_log("sync", run_id=second)[0]] == ["k1"]
