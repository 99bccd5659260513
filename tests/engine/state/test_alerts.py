"""Open alerts and the last successful run through the contract (on both backends)."""

from __future__ import annotations

from segship.engine.state import OpenAlert, open_state_at

FAILED = OpenAlert("failed", "2026-01-05T09:00:00+00:00", 12, "run 12 failed: down", {"upserted": 0})
STALE = OpenAlert("stale", "2026-01-05T15:00:00+00:00", None, "no success for 6h", {"stale_after_seconds": 21600})


def test_an_alert_opens_once_and_resolves_once(store):
    assert store.open_alerts("sync") == {}
    assert store.open_alert("sync", FAILED) is True
    assert store.open_alert("sync", FAILED._replace(run_id=13, message="run 13 failed")) is False  # still open
    assert store.open_alert("sync", STALE) is True   # another event of the export
    assert store.open_alert("other", FAILED) is True  # the same event of another export
    assert store.open_alerts("sync") == {"failed": FAILED, "stale": STALE}  # the first one kept, run id None kept
    assert store.resolve_alert("sync", "failed") == FAILED
    assert store.resolve_alert("sync", "failed") is None
    assert store.open_alerts("sync") == {"stale": STALE}
    assert store.open_alerts("other") == {"failed": FAILED}


def test_two_stores_on_one_state_open_an_alert_only_once(target):
    first, second = open_state_at(target), open_state_at(target)
    try:
        assert [first.open_alert("sync", STALE), second.open_alert("sync", STALE)] == [True, False]
        assert [first.resolve_alert("sync", "stale"), second.resolve_alert("sync", "stale")] == [STALE, None]
    finally:
        first.close()
        second.close()


def test_open_alerts_are_forgotten_with_their_export(store):
    store.open_alert("sync", FAILED)
    store.open_alert("keep", FAILED)
    store.finish_run(store.start_run("sync", dry_run=False), "failed", {})
    assert store.forget("sync") is True
    assert store.open_alerts("sync") == {} and store.open_alerts("keep") == {"failed": FAILED}


def test_the_last_success_is_the_latest_run_that_delivered_before_a_given_run(store):
    assert store.last_success("sync") is None
    succeeded = store.start_run("sync", dry_run=False)
    store.finish_run(succeeded, "succeeded", {"plan": {"members": 10}})
    with_rejects = store.start_run("sync", dry_run=False)
    store.finish_run(with_rejects, "rejects", {"plan": {"members": 9}})
    store.finish_run(store.start_run("sync", dry_run=True), "succeeded", {})  # a dry run delivers nothing
    store.finish_run(store.start_run("other", dry_run=False), "succeeded", {})
    failed = store.start_run("sync", dry_run=False)
    store.finish_run(failed, "failed", {"message": "down"})
    last = store.last_success("sync")
    assert (last["id"], last["outcome"], last["report"]) == (with_rejects, "rejects", {"plan": {"members": 9}})
    assert last["started_at"] and last["finished_at"]
    assert store.last_success("sync", before=with_rejects)["id"] == succeeded
    assert store.last_success("sync", before=succeeded) is None
