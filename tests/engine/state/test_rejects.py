"""Rejects through the contract (on both backends): recorded by the commits, counted, cleared once
accepted, removed or forgotten."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from segship.destination import Member
from segship.engine.state import Rejected, open_state_at


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


def test_a_reject_keeps_who_refused_it_and_since_which_run_for_its_kind_of_reason(store):
    first = store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [], [], [Rejected("k1", "invalid email 'a@'", 11, "fp-1"),
                                          ("k2", "Braze refused the user")])
    assert store.new_rejects("sync", first) == 2
    refusals = {row["key"]: row for row in store.refusals("sync").to_pylist()}
    assert refusals == {"k1": {"key": "k1", "origin": "mapping", "row_hash": 11, "fingerprint": "fp-1",
                               "since_run": first},
                        "k2": {"key": "k2", "origin": "destination", "row_hash": None, "fingerprint": None,
                               "since_run": first}}
    second = store.start_run("sync", dry_run=False)
    # the same kinds of reason (another value quoted): known; a new kind: new, since this run
    store.commit_upserts("sync", [], [], [Rejected("k1", "invalid email 'b@'", 12, "fp-1"), ("k2", "Braze: rate limited"),
                                          ("k3", "Braze refused the user")])
    assert store.new_rejects("sync", second) == 2
    since = {row["key"]: row["since_run"] for row in store.rejects("sync")}
    assert since == {"k1": first, "k2": second, "k3": second}
    assert store.refusals("sync").filter(pa.compute.equal(store.refusals("sync")["key"], "k1"))["row_hash"][0].as_py() \
        == 12


def test_rejects_are_listed_by_kind_and_filtered_by_reason(store):
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [], [], [(f"k{i}", f"invalid email 'user{i}@'") for i in range(5)]
                         + [("x1", "Braze refused the user: 100% wrong_key")])
    by_kind = store.rejects_by_kind("sync", examples=2)
    assert [(row["reason"], row["origin"], row["count"], row["examples"]) for row in by_kind] == [
        ("invalid email '…'", "destination", 5, ["k0", "k1"]),
        ("Braze refused the user: 100% wrong_key", "destination", 1, ["x1"])]
    assert [row["key"] for row in store.rejects("sync", reason="INVALID EMAIL", limit=2)] == ["k0", "k1"]
    assert store.count_rejects("sync", reason="invalid email") == 5 and store.count_rejects("sync") == 6
    assert [row["key"] for row in store.rejects("sync", reason="100% wrong_")] == ["x1"]  # % and _ are text
    # as LIKE patterns, these would match: "0" then "w" later, "user" then any character
    assert store.rejects("sync", reason="0%w") == [] and store.count_rejects("sync", reason="user_") == 0
