"""Members through the contract, on both backends: commits and reads, settings and hash versions,
and the members' digest."""

from __future__ import annotations

import pyarrow as pa
import pytest

from segship.destination import Member
from segship.engine.hashing import HASH_VERSION
from segship.engine.state import MembersDigest, MembersLocation, StateError, open_state_at

from .conftest import keys


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


def test_arrow_batches_commit_as_rows_do(store):
    """What the engine commits: the acknowledged columns of a record batch, with no Python object a row."""
    store.commit_upserts("sync", pa.RecordBatch.from_pydict({
        "key": pa.array(["k1", "k2"], pa.string()), "row_hash": pa.array([1, 2], pa.int64()),
        "column_hashes": pa.array([b"\x01" * 8, None], pa.binary(8)),
        "identity": pa.array(["k1", "two@example.com"], pa.string())}), [], [])
    store.commit_upserts("sync", pa.RecordBatch.from_pydict({
        "key": pa.array(["k2"], pa.string()), "row_hash": pa.array([3], pa.int64()),
        "column_hashes": pa.array([b"\x03" * 8], pa.binary(8)), "identity": pa.array(["k2"], pa.string())}), [], [])
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 1, "target": 1}, {"key": "k2", "row_hash": 3, "target": 1}]  # a later commit wins
    assert store.details("sync", ["k1", "k2"]) == {"k1": (b"\x01" * 8, "k1"), "k2": (b"\x03" * 8, "k2")}
    assert store.identities_held("sync", ["two@example.com", "k2"], 1) == {"k2"}


def test_changed_settings_mark_every_member_for_a_full_resend(store):
    assert store.reconcile_settings("sync", "fp1", ["a"]) is False  # first run: nothing to compare
    store.commit_upserts("sync", [("k1", 11, b"h" * 8, "k1")], [], [])
    assert not store.settings_changed("sync", "fp1", ["a"])
    assert store.settings_changed("sync", "fp2", ["a"])
    assert store.reconcile_settings("sync", "fp2", ["a"]) is True
    assert store.acknowledged("sync").read_all().to_pylist() == [{"key": "k1", "row_hash": 0, "target": 1}]
    assert store.details("sync", ["k1"]) == {"k1": (None, "k1")}


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


@pytest.mark.parametrize("digest", [MembersDigest("kind", 2, -5),
                                    MembersDigest("bucketed kind", 2, 0, b"\x00by\xffbucket")], ids=["summed", "bucketed"])
def test_a_members_digest_holds_until_any_write_to_the_members(store, digest):

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


def test_a_members_digest_another_store_records_is_dropped_by_this_ones_next_run(store, target):
    """Which digests a run already deleted is forgotten when the next run starts: another run (another
    machine) may have recorded the digest since."""
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])  # deletes the digest: none is left to delete
    other = open_state_at(target)
    try:
        other.start_run("sync", dry_run=False)
        other.record_members_digest("sync", MembersDigest("kind", 1, 7))
    finally:
        other.close()
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k2", 2, None, "k2")], [], [])
    assert store.members_digest("sync") is None


def test_a_digest_drop_rolled_back_is_not_taken_as_done_by_the_next_commit(store):
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    store.start_run("sync", dry_run=False)
    store.record_members_digest("sync", MembersDigest("kind", 1, 7))
    with pytest.raises(StateError):  # drops the digest, then fails: rolled back
        store.commit_upserts("sync", [("k2", 2, None, "k2")], [], [("k3", None)])  # type: ignore[list-item]
    store.record_in_flight("sync", ["k2"], ["k2"], 1)  # a transaction that commits, the members as they are
    store.commit_upserts("sync", [("k2", 2, None, "k2")], [], [], in_flight=1)
    assert store.members_digest("sync") is None


def test_members_the_destination_holds_are_added_of_unknown_hash_and_known_ones_kept(store):
    store.commit_upserts("sync", [("k1", 11, b"\x01" * 8, "one@example.com")], [], [])
    store.record_members_digest("sync", MembersDigest("kind", 1, 5))
    added = store.add_unknown_members("sync", [("k1", "other@example.com"), ("k2", "two@example.com"), ("k3", "k3")],
                                      target=2)
    assert added == 2
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 11, "target": 1}, {"key": "k2", "row_hash": 0, "target": 2},
        {"key": "k3", "row_hash": 0, "target": 2}]
    assert store.details("sync", ["k1", "k2", "k3"]) == {"k1": (b"\x01" * 8, "one@example.com"),
                                                         "k2": (None, "two@example.com"), "k3": (None, "k3")}
    assert store.members_digest("sync") is None  # the members changed
    assert store.add_unknown_members("new", [("k9", "nine@example.com")], target=1) == 1


def test_members_move_out_to_a_warehouse_planner_and_back_each_in_one_transaction(store):
    store.commit_upserts("sync", [("a", 11, b"\x01" * 16, "a"), ("b", 12, b"\x02" * 16, "b@example.com")], [], [])
    store.commit_upserts("sync", [("c", 13, None, "c")], [], [], target=2)
    assert store.members_location("sync") is None

    store.move_members_out("sync", MembersLocation("warehouse", "segship"))
    assert store.members_location("sync") == MembersLocation("warehouse", "segship")
    assert keys(store) == [] and not store.has_members("sync")

    back = pa.RecordBatch.from_pydict(
        {"key": ["a", "b", "c"], "row_hash": [11, 12, 13], "column_hashes": [b"\x01" * 16, b"\x02" * 16, None],
         "identity": ["a", "b@example.com", "c"], "target": [1, 1, 2]},
        schema=pa.schema([("key", pa.string()), ("row_hash", pa.int64()), ("column_hashes", pa.binary()),
                          ("identity", pa.string()), ("target", pa.int32())]))
    store.take_members_back("sync", [back])
    assert store.members_location("sync") is None
    assert sorted(store.acknowledged("sync").read_all().to_pylist(), key=lambda row: row["key"]) == [
        {"key": "a", "row_hash": 11, "target": 1}, {"key": "b", "row_hash": 12, "target": 1},
        {"key": "c", "row_hash": 13, "target": 2}]
    assert store.details("sync", ["a", "b"]) == {"a": (b"\x01" * 16, "a"), "b": (b"\x02" * 16, "b@example.com")}


def test_acknowledged_rows_written_elsewhere_only_settle_their_rejects_and_clear_their_group(store):
    store.commit_upserts("sync", [], [], [("a", "bad email")])
    flight = store.record_in_flight("sync", ["a"], ["a"], 1)
    assert store.in_flight_records("sync") == [(flight, 1, ["a"], ["a"])]
    store.commit_upserts("sync", [("a", 11, b"\x01" * 8, "a")], [], [], in_flight=flight, write_members=False)
    assert store.rejected_keys("sync") == [] and store.in_flight_records("sync") == []
    assert keys(store) == []
