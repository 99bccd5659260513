"""Targets in state: what the memory destination's ``list`` setting names, and state from before targets
(on each state backend)."""

from __future__ import annotations

from segship.engine.snapshot import export_fingerprint

from .conftest import profiles
from .memory_destination import MemoryDestination


def test_state_from_before_targets_is_no_settings_change_and_no_move(workspace, sent):
    workspace.configure(settings=", list: first")
    workspace.write(profiles(8))
    workspace.run()
    config = workspace.config()
    export = config.exports["sync"]
    columns = MemoryDestination.source_columns(export.mapping)
    state = workspace.state()
    try:  # what segship recorded before targets: a fingerprint of every setting, no target
        state.execute("UPDATE exports SET fingerprint = ?", (export_fingerprint("memory", export, columns),))
        state.execute("DELETE FROM targets")
    finally:
        state.close()
    before = len(sent())
    report = workspace.run()
    assert (report.plan["settings_changed"], report.plan["move"], report.plan["unchanged"]) == (False, 0, 8)
    assert len(sent()) == before
    state = workspace.state()
    try:
        assert state.one("SELECT fingerprint FROM exports")[0] == export_fingerprint(
            "memory", export, columns, ("list",))
        assert state.rows("SELECT id, settings FROM targets") == [(1, '{"list":"first"}')]
    finally:
        state.close()


def test_a_new_target_is_a_move_not_a_settings_change_and_its_default_is_the_same_target(workspace):
    workspace.write(profiles(5))
    workspace.run()
    workspace.configure(settings=", list: main")  # the schema's default, now written out: the same target
    assert workspace.run().plan["unchanged"] == 5
    workspace.configure(settings=", list: other")
    dry = workspace.run(dry_run=True)
    assert (dry.plan["settings_changed"], dry.plan["move"]) == (False, 5)
    assert dry.plan["moves"] == [{"from": {"list": "main"}, "members": 5}]
    assert dry.plan["target"] == {"list": "other"}
