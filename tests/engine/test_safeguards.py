"""The safeguards as a function of the plan: when a run must stop before sending, and what it is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from segship.config import Config
from segship.engine.report import ExportPlan
from segship.engine.safeguards import (
    SafeguardError,
    check_empty_state,
    check_safeguards,
    empty_state_problem,
    safeguard_problem,
)
from segship.plugins import Plugins

from ..conftest import StateTarget
from .conftest import Workspace


@pytest.fixture
def config_with(tmp_path: Path, memory_plugins: Plugins, monkeypatch: pytest.MonkeyPatch):
    """The engine tests' config with the export's ``safeguards`` as given (YAML flow), never run."""
    monkeypatch.setenv("MEMORY_KEY", "memory-secret-key-123")
    workspace = Workspace(tmp_path, memory_plugins, StateTarget("sqlite", "{path: .segship/state.db}", {}))

    def config(safeguards: str | None = None) -> Config:
        workspace.configure(extra=f"safeguards: {safeguards}" if safeguards else "")
        return workspace.config()
    return config


def plan(members: int, acknowledged: int = 0, remove: int = 0) -> ExportPlan:
    return ExportPlan("sync", members=members, acknowledged=acknowledged, remove=remove)


def test_a_plan_within_every_safeguard_has_no_problem(config_with):
    config = config_with("{max_profiles: 10, max_removed_fraction: 0.2}")
    assert safeguard_problem(plan(10, acknowledged=10, remove=2), config, "sync", 10) is None


def test_more_members_than_max_profiles_or_the_destinations_limit_is_a_problem(config_with):
    config = config_with("{max_profiles: 5}")
    assert safeguard_problem(plan(6), config, "sync", None) == \
        "export 'sync' has 6 members, more than safeguards.max_profiles (5)"
    assert safeguard_problem(plan(4), config_with(), "sync", 3) == \
        "export 'sync' has 4 members, more than the destination's limit (3)"


def test_by_default_at_most_half_of_the_acknowledged_members_may_leave(config_with):
    config = config_with()
    assert safeguard_problem(plan(5, acknowledged=10, remove=5), config, "sync", None) is None
    problem = safeguard_problem(plan(4, acknowledged=10, remove=6), config, "sync", None)
    assert problem.startswith("export 'sync' would remove 6 of the 10 members the destination has (60%), more than "
                              "the default removal safeguard (50%). Check the segment's source")
    assert "`segship export sync --allow-mass-removal` once" in problem
    assert "exports.sync.safeguards.max_removed_fraction (null turns the check off)" in problem


def test_a_removal_over_the_set_fraction_names_the_setting(config_with):
    problem = safeguard_problem(plan(7, acknowledged=10, remove=3), config_with("{max_removed_fraction: 0.25}"),
                                "sync", None)
    assert "would remove 3 of the 10 members the destination has (30%), more than " \
           "safeguards.max_removed_fraction (25%)" in problem


def test_the_removal_safeguard_is_off_when_allowed_once_when_null_and_when_nothing_was_acknowledged(config_with):
    emptied = plan(0, acknowledged=10, remove=10)
    assert safeguard_problem(emptied, config_with(), "sync", None, allow_mass_removal=True) is None
    assert safeguard_problem(emptied, config_with("{max_removed_fraction: null}"), "sync", None) is None
    assert safeguard_problem(plan(3), config_with("{max_removed_fraction: 0.0}"), "sync", None) is None


def test_allow_mass_removal_does_not_lift_max_profiles(config_with):
    problem = safeguard_problem(plan(6, acknowledged=10, remove=10), config_with("{max_profiles: 5}"), "sync",
                                None, allow_mass_removal=True)
    assert problem == "export 'sync' has 6 members, more than safeguards.max_profiles (5)"


def test_check_safeguards_stops_the_run_telling_nothing_was_sent(config_with):
    config = config_with("{max_profiles: 5}")
    check_safeguards(plan(5), config, "sync", None)
    with pytest.raises(SafeguardError, match=r"more than safeguards.max_profiles \(5\); nothing was sent$"):
        check_safeguards(plan(6), config, "sync", None)


def test_empty_state_is_a_problem_only_when_the_destination_counts_members_there():
    empty = ExportPlan("sync", members=10, add=10, empty_state_check=True)
    assert empty_state_problem(empty, "sync", 0) is None and empty_state_problem(empty, "sync", None) is None
    problem = empty_state_problem(empty, "sync", 25)
    assert problem.startswith("export 'sync': state holds none of its members, but the destination already holds "
                              "25 in its target")
    assert "`segship state rebuild sync`" in problem and "`segship export sync --allow-empty-state`" in problem
    assert empty_state_problem(empty, "sync", 25, allow_empty_state=True) is None
    assert empty_state_problem(ExportPlan("sync", members=10, add=10), "sync", 25) is None  # state not empty
    with pytest.raises(SafeguardError, match="nothing was sent"):
        check_empty_state(empty, "sync", 25)
