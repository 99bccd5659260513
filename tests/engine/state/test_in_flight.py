"""The in-flight journal through the contract (on both backends): groups of batches recorded before
they are sent, cleared by their commit, folded into the members when a run left them."""

from __future__ import annotations

from segship.destination import Member


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


def test_groups_are_numbered_per_export_and_a_commit_clears_its_own_group_only(store):
    assert [store.record_in_flight("sync", [key], [key], 1) for key in ("k1", "k2")] == [1, 2]
    assert store.record_in_flight("other", ["o1"], ["o1"], 1) == 1
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [], in_flight=1)
    assert store.settle_in_flight("sync") == 1  # k2's group only
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 1, "target": 1}, {"key": "k2", "row_hash": 0, "target": 1}]
    assert store.settle_in_flight("other") == 1


def test_the_last_group_a_key_was_sent_in_is_the_one_folded_in(store):
    store.record_in_flight("sync", ["k1"], ["first@example.com"], 1)
    store.record_in_flight("sync", ["k1"], ["second@example.com"], 2)
    assert store.settle_in_flight("sync") == 1
    assert store.members_by_target("sync", ["k1"]) == {2: [Member("k1", "second@example.com")]}
    assert store.stale_identities("sync") == {}
