"""Runs through the contract (on both backends): the run lock, and each run's outcome and report."""

from __future__ import annotations

import pytest

from segship.engine.state import StateError, export_lock_key, open_state_at


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


def test_runs_are_kept_and_a_run_left_running_is_marked_interrupted(store):
    first = store.start_run("sync", dry_run=False)
    second = store.start_run("sync", dry_run=True)
    store.finish_run(second, "succeeded", {"upserted": 3})
    runs = store.runs("sync")
    assert [(r["id"], r["outcome"], r["dry_run"]) for r in runs] == [(second, "succeeded", True),
                                                                      (first, "interrupted", False)]
    assert runs[0]["report"] == {"upserted": 3}


def test_runs_of_every_export_newest_first_up_to_a_limit(store):
    started = [store.start_run(export, dry_run=False) for export in ("sync", "other", "sync")]
    store.finish_run(started[1], "failed", {"message": "down"})
    assert [r["id"] for r in store.runs()] == started[::-1]
    assert [r["id"] for r in store.runs(limit=2)] == started[:0:-1]
    assert [(r["export"], r["outcome"], r["finished_at"] is None, r["report"]) for r in store.runs("other")] == [
        ("other", "failed", False, {"message": "down"})]
    # a run of another export leaves this one's running: only the export's own are interrupted
    assert [r["outcome"] for r in store.runs("sync")] == ["running", "interrupted"]
    assert store.runs("sync")[0]["report"] is None
    assert (store.count_runs(), store.count_runs("sync"), store.count_runs("none")) == (3, 2, 0)  # what a cut hides
