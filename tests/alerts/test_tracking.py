"""Findings into alerts through real state: one alert when a condition starts, one when it clears."""

from __future__ import annotations

from pathlib import Path

import pytest

from segship.alerts.conditions import Finding
from segship.alerts.tracking import track
from segship.engine.state import StateStore, open_state_at

FAILING = Finding("failed", True, "run 3 of vip failed: down", {"outcome": "failed"})
CLEAR = Finding("failed", False, "", {"upserted": 10})


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    store = open_state_at(tmp_path / "state.db")
    yield store
    store.close()


def test_an_alert_opens_once_while_its_condition_persists_and_resolves_once(state: StateStore) -> None:
    [opened] = track(state, "vip", [FAILING], run_id=3, cleared_by="run 3 failed")
    assert (opened.event, opened.status, opened.export, opened.run_id, opened.message, opened.figures) == (
        "failed", "open", "vip", 3, "run 3 of vip failed: down", {"outcome": "failed"})
    assert track(state, "vip", [FAILING], run_id=4, cleared_by="run 4 failed") == []
    [resolved] = track(state, "vip", [CLEAR], run_id=5, cleared_by="run 5 succeeded")
    opened_at = resolved.figures["opened_at"]
    assert (resolved.status, resolved.run_id) == ("resolved", 5)
    assert resolved.message == f"vip: run failed, open since {opened_at} by run 3, is resolved: run 5 succeeded"
    assert resolved.figures == {"upserted": 10, "opened_at": opened_at, "opened_by_run": 3}
    assert track(state, "vip", [CLEAR], run_id=6, cleared_by="run 6 succeeded") == []
    assert state.open_alerts("vip") == {}


def test_events_and_exports_are_tracked_apart(state: StateStore) -> None:
    drop = Finding("drop", True, "members dropped", {})
    assert [alert.event for alert in track(state, "vip", [FAILING, drop], run_id=3, cleared_by="")] == ["failed",
                                                                                                          "drop"]
    assert [alert.export for alert in track(state, "other", [FAILING], run_id=4, cleared_by="")] == ["other"]
    [resolved] = track(state, "vip", [CLEAR, drop], run_id=5, cleared_by="run 5 rejects")
    assert (resolved.event, resolved.status) == ("failed", "resolved")
    assert set(state.open_alerts("vip")) == {"drop"} and set(state.open_alerts("other")) == {"failed"}


def test_a_stale_alert_opened_by_the_scheduler_has_no_run(state: StateStore) -> None:
    stale = Finding("stale", True, "no successful run", {})
    [opened] = track(state, "vip", [stale], run_id=None, cleared_by="")
    assert opened.run_id is None
    [resolved] = track(state, "vip", [Finding("stale", False)], run_id=9, cleared_by="run 9 succeeded")
    assert resolved.message.endswith(", is resolved: run 9 succeeded") and " by run " not in resolved.message
