"""Rejects through the contract (on both backends): recorded by the commits, counted, cleared once
accepted, removed or forgotten."""

from __future__ import annotations

from segship.destination import Member
from segship.engine.state import open_state_at


def test_a_reject_counts_its_attempts_and_keeps_the_latest_reason(store):
    store.commit_upserts("sync", [], [], [("k1", "bad email"), ("k2", "too long")])
    store.commit_upserts("sync", [("k3", 3, None, "k3")], [], [("k1", "worse email")])
    rejects = {reject["key"]: reject for reject in store.rejects("sync")}
    assert {key: (r["reason"], r["attempts"]) for key, r in rejects.items()} == {
        "k1": ("worse email", 2), "k2": ("too long", 1)}
    assert rejects["k1"]["first_seen"] <= rejects["k1"]["last_seen"]
    assert sorted(store.rejected_keys("sync")) == ["k1", "k2"]
    assert len(store.rejects("sync", limit=1)) == 1
    assert store.rejects("other") == [] and store.rejected_keys("other") == []


def test_rejects_leave_once_accepted_removed_or_forgotten(store):
    store.commit_upserts("sync", [("k1", 1, None, "k1"), ("k2", 2, None, "k2")], [], [])
    store.commit_upserts("sync", [], [], [("k1", "refused"), ("k2", "refused"), ("k3", "refused"), ("k4", "refused")])
    store.commit_upserts("sync", [("k3", 3, None, "k3")], [], [])  # accepted
    store.commit_removals("sync", [Member("k1", "k1")], [], stale=False)  # removed
    store.forget_rejects("sync", ["k4"])  # no longer in the export
    assert store.rejected_keys("sync") == ["k2"]
    store.commit_removals("sync", [], [("k2", "could not remove")], stale=False)  # a removal refused
    assert [(r["key"], r["reason"], r["attempts"]) for r in store.rejects("sync")] == [
        ("k2", "could not remove", 2)]


def test_a_reject_another_store_recorded_is_cleared_by_this_ones_next_run(store, target):
    """Whether an export has rejects is asked once a run: the next run asks again."""
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])  # no rejects: known for this run
    other = open_state_at(target)  # another machine's run refuses k2
    try:
        other.start_run("sync", dry_run=False)
        other.commit_upserts("sync", [], [], [("k2", "refused")])
    finally:
        other.close()
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k2", 2, None, "k2")], [], [])  # accepted at last
    assert store.rejected_keys("sync") == []
