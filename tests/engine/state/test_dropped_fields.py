"""Dropped fields through the contract (on both backends): recorded by the commits, replaced as a later
record maps their column again, gone with the member."""

from __future__ import annotations

import pyarrow as pa

from segship.destination import Member
from segship.engine.state import DroppedFields


def by_kind(store):
    return [(row["field"], row["reason"], row["count"], row["examples"]) for row in store.dropped_fields_by_kind("sync")]


def test_dropped_fields_are_counted_by_column_and_kind_of_reason(store):
    first = store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [(f"k{i}", i, None, f"k{i}") for i in range(4)], [], [], dropped=DroppedFields(
        whole=["k0", "k1", "k2", "k3"],
        fields=[("k0", "phone", "invalid phone number 'n/a': not a phone number"),
                ("k1", "phone", "invalid phone number '12': too short"),
                ("k2", "phone", "invalid phone number 'x': not a phone number"),
                ("k2", "tier", "tier holds a bytes")]))
    assert by_kind(store) == [("phone", "invalid phone number '…': not a phone number", 2, ["k0", "k2"]),
                              ("phone", "invalid phone number '…': too short", 1, ["k1"]),
                              ("tier", "tier holds a bytes", 1, ["k2"])]
    assert {row["since_run"] for row in store.dropped_fields_by_kind("sync")} == {first}


def test_a_record_replaces_the_dropped_fields_of_the_columns_it_mapped_and_a_leaver_takes_its_own(store):
    dropped = DroppedFields(whole=pa.array(["k1", "k2"]), fields=[("k1", "phone", "bad phone 'a'"),
                                                                  ("k1", "tier", "bad tier"),
                                                                  ("k2", "phone", "bad phone 'b'")])
    store.commit_upserts("sync", [("k1", 1, None, "k1"), ("k2", 2, None, "k2")], [], [], dropped=dropped)
    # k1 changed its phone only (now valid): its tier, unchanged, is still dropped
    store.commit_upserts("sync", [("k1", 3, None, "k1")], [], [], dropped=DroppedFields(remapped=[("k1", "phone")]))
    assert by_kind(store) == [("phone", "bad phone '…'", 1, ["k2"]), ("tier", "bad tier", 1, ["k1"])]
    # k2 mapped whole again, nothing dropped: none of its dropped fields is left
    store.commit_upserts("sync", [("k2", 4, None, "k2")], [], [], dropped=DroppedFields(whole=["k2"]))
    assert by_kind(store) == [("tier", "bad tier", 1, ["k1"])]
    store.commit_removals("sync", [Member("k1", "k1")], [], stale=False)
    assert by_kind(store) == []
