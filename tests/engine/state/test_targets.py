"""Targets, members by target, moves and stale identities through the contract (on both backends)."""

from __future__ import annotations

from segship.destination import Member
from segship.engine.state import RecordedInstance, TargetInstance


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


def test_target_ids_count_per_export_and_settings_name_a_target_whatever_their_key_order(store):
    assert store.target_id("sync", {"list": "a", "folder": 1}, record=True) == 1
    assert store.target_id("sync", {"folder": 1, "list": "a"}, record=True) == 1  # the same settings
    assert store.target_id("other", {"list": "b"}, record=True) == 1  # each export counts from 1
    assert store.target_id("sync", {"list": "b"}, record=True) == 2
    assert store.targets("sync") == {1: {"folder": 1, "list": "a"}, 2: {"list": "b"}}
    assert store.targets("other") == {1: {"list": "b"}}


def test_a_member_moving_to_the_target_it_is_in_leaves_nothing_to_remove(store):
    store.commit_upserts("sync", [("k1", 1, None, "one@example.com")], [], [], target=2)
    store.commit_upserts("sync", [("k1", 2, None, "one@example.com"), ("k2", 2, None, "k2")], [], [],
                         target=2, moving=True)  # k1 is in target 2 already, k2 is no member yet
    assert store.stale_identities("sync") == {}
    assert store.members_by_target("sync", ["k1", "k2"]) == {2: [Member("k1", "one@example.com"),
                                                                 Member("k2", "k2")]}


STAGING = {"destination": "braze", "connection": "staging", "rest_endpoint": "https://rest.iad-01.braze.com"}
PRODUCTION = {"destination": "braze", "connection": "prod", "rest_endpoint": "https://rest.iad-01.braze.com"}


def test_a_target_is_its_settings_in_an_instance_and_targets_from_before_instances_adopt_the_first_recorded(store):
    assert store.target_id("sync", {"list": "a"}, record=True) == 1  # recorded before instances: none
    assert store.target_instances("sync") == {1: TargetInstance(None, None)}
    # a plan in any instance finds it (it was in the export's instance, which a run records first)
    assert store.target_id("sync", {"list": "a"}, record=False, instance=PRODUCTION, connection="prod") == 1
    assert store.target_instances("sync") == {1: TargetInstance(None, None)}  # a plan writes nothing
    assert store.target_id("sync", {"list": "a"}, record=True, instance=STAGING, connection="staging") == 1
    assert store.target_instances("sync") == {1: TargetInstance(STAGING, "staging")}
    # the same settings in another instance are another target
    assert store.target_id("sync", {"list": "a"}, record=False, instance=PRODUCTION, connection="prod") == 2
    assert store.target_id("sync", {"list": "a"}, record=True, instance=PRODUCTION, connection="prod") == 2
    assert store.targets("sync") == {1: {"list": "a"}, 2: {"list": "a"}}
    # an instance reached through another connection (a Brevo account, renamed) keeps its target
    assert store.target_id("sync", {"list": "a"}, record=True, instance=PRODUCTION, connection="renamed") == 2
    assert store.target_instances("sync") == {1: TargetInstance(STAGING, "staging"),
                                              2: TargetInstance(PRODUCTION, "renamed")}


def test_the_instance_an_export_last_ran_against_and_stale_identities_by_target(store):
    assert store.recorded_instance("sync") is None
    store.record_instance("sync", STAGING, "hmac-sha256:00ff:1234")
    assert store.recorded_instance("sync") == RecordedInstance(STAGING, "hmac-sha256:00ff:1234")
    store.record_instance("sync", PRODUCTION, None)
    assert store.recorded_instance("sync") == RecordedInstance(PRODUCTION, None)
    store.commit_upserts("sync", [("k1", 1, None, "k1"), ("k2", 1, None, "k2")], [], [])
    store.commit_upserts("sync", [("k1", 2, None, "k1")], [], [], target=2, moving=True)
    store.commit_upserts("sync", [("k2", 2, None, "k2b")], [("k2", "k2")], [], target=2, moving=True)
    assert (store.count_stale_identities("sync"), store.count_stale_identities("sync", 1),
            store.count_stale_identities("sync", 2)) == (3, 2, 1)
    assert store.forget("sync") and store.recorded_instance("sync") is None


def test_forgetting_a_target_drops_what_is_left_there_and_only_that(store):
    store.commit_upserts("sync", [("k1", 1, None, "k1"), ("k2", 1, None, "k2"), ("k3", 1, None, "k3")], [], [])
    store.commit_upserts("sync", [("k1", 2, None, "k1")], [], [], target=2, moving=True)
    store.commit_upserts("sync", [("k2", 2, None, "k2b")], [("k2", "k2-older")], [], target=2, moving=True)
    # target 1 holds k3 (not moved yet) and the identities k1 and k2 left to remove there
    assert store.forget_target("sync", 1) == 3
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 2, "target": 2}, {"key": "k2", "row_hash": 2, "target": 2}]
    assert store.stale_identities("sync") == {2: [Member("k2", "k2-older")]}
    assert store.forget_target("sync", 1) == 0
