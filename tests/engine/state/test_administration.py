"""``state show`` and ``state forget`` through the contract (on both backends)."""

from __future__ import annotations

from segship.destination import Member
from segship.engine.state import (DroppedFields, LoggedChanges, MembersDigest, MembersLocation, OpenAlert,
                                   RecordedDestination, open_state_at)
from segship.engine.sync_log import rows

from .conftest import keys


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


def test_the_summary_counts_stale_identities_and_an_export_known_by_them_alone(store):
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [("k0", "old@example.com")], [])
    store.commit_upserts("leaving", [], [("x", "x@example.com")], [])
    assert [(row["export"], row["members"], row["stale_identities"]) for row in store.summary()] == [
        ("leaving", 0, 1), ("sync", 1, 1)]
    assert [row["export"] for row in store.summary("sync")] == ["sync"]
    assert store.summary("nothing") == []


def test_forget_leaves_no_row_of_the_export_in_any_table(store, target):
    target_id = store.target_id("sync", {"list": "a"}, record=True)
    store.reconcile_settings("sync", "fp", ["a"])
    store.move_members_out("sync", MembersLocation("warehouse", "segship"))  # (then members again, here)
    run_id = store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [("k0", "old@example.com")], [("k2", "bad")],
                         target=target_id, dropped=DroppedFields(fields=[("k1", "phone", "invalid phone")]),
                         log=LoggedChanges(run_id, rows([("k1", "k1", "add", None, None)])))
    store.record_members_digest("sync", MembersDigest("kind", 1, 7))
    store.record_in_flight("sync", ["k3"], ["k3"], target_id)
    store.record_destination("sync", RecordedDestination("brevo", "sendinblue", {"list_id": 3}, {"email": "email"}))
    store.open_alert("sync", OpenAlert("failed", "2026-01-05T09:00:00+00:00", 1, "run 1 failed", {}))
    assert all(store.counts().values())  # a row in every table
    assert store.forget("sync") is True
    assert set(store.counts().values()) == {0}
    store.commit_upserts("sync", [("k4", 4, None, "k4")], [], [])  # made anew, under an id of its own
    reopened = open_state_at(target)
    try:
        assert keys(reopened) == ["k4"] and reopened.stale_identities("sync") == {}
        assert reopened.members_by_target("sync", ["k1", "k4"]) == {1: [Member("k4", "k4")]}
    finally:
        reopened.close()
