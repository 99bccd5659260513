"""The SQLite state file through the real CLI: a damaged or foreign one stops every command that opens
state (never a new, empty state that would send every member again); a new one is the owner's only."""

from __future__ import annotations

import json

import pytest

from ..conftest import StateTarget, file_mode
from ..engine.state.test_sqlite_file import DAMAGED
from .conftest import Project
from .test_export import rows


@pytest.fixture
def local(tmp_path, braze_sandbox, sendinblue_sandbox) -> Project:
    """A project whose state is the default SQLite file, ``.segship/state.db``."""
    return Project(tmp_path, braze_sandbox, sendinblue_sandbox,
                   StateTarget("sqlite", "{path: .segship/state.db}", {}))


@pytest.mark.parametrize("damage", ["empty", "not SQLite", "another program's"])
def test_a_damaged_state_file_stops_export_plan_and_state_show_and_is_left_as_it_was(local, damage):
    local.write(rows(5))
    path = local.root / ".segship" / "state.db"
    path.parent.mkdir()
    make, problem = DAMAGED[damage]
    make(path)
    before = path.read_bytes()
    for command in (["export", "--all"], ["plan"], ["state", "show"]):
        result = local.cli(*command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert f"state {path} {problem}" in result.stderr, (command, result.stderr)
        assert "restore it from a backup, or delete it deliberately" in result.stderr
        assert "Traceback" not in result.stderr
    assert path.read_bytes() == before
    assert local.braze.stats().get("requests", 0) == 0 and local.brevo.stats().get("requests", 0) == 0


def test_a_first_run_makes_its_state_the_owners_only_and_so_does_state_copy(local, permissive_umask):
    local.write(rows(5))
    exported = local.cli("export", "--all")
    assert exported.returncode == 0, exported.stdout + exported.stderr
    folder = local.root / ".segship"
    assert file_mode(folder) == 0o700
    assert {file.relative_to(folder).as_posix(): file_mode(file) for file in folder.rglob("*")} == {
        "state.db": 0o600, "locks": 0o700, "locks/vip-braze.lock": 0o600, "locks/vip-brevo.lock": 0o600}
    copied = local.cli("state", "copy", "--to", "backup/state.db")
    assert copied.returncode == 0, copied.stderr
    assert file_mode(local.root / "backup") == 0o700 and file_mode(local.root / "backup" / "state.db") == 0o600


def test_the_report_is_written_when_no_run_can_start(local):
    """``export --report``: a run that can't start is reported too, each export failed with the reason."""
    local.write(rows(5))
    path = local.root / ".segship" / "state.db"
    path.parent.mkdir()
    path.write_bytes(b"")  # a truncated state file: an error, never a new state
    result = local.cli("export", "--all", "--report", "out/run.json")
    assert result.returncode == 1, result.stderr
    report = json.loads((local.root / "out" / "run.json").read_text())
    assert report["exit_code"] == 1
    assert report["error"].startswith(f"state {path} is empty (0 bytes)"), report
    assert [(run["export"], run["outcome"], run["message"]) for run in report["exports"]] == [
        ("vip-braze", "failed", report["error"]), ("vip-brevo", "failed", report["error"])]

    unknown = local.cli("export", "nope", "--report", "out/unknown.json")
    assert unknown.returncode == 2
    report = json.loads((local.root / "out" / "unknown.json").read_text())
    assert report["exit_code"] == 2 and report["error"].startswith("unknown export 'nope'"), report
    assert [(run["export"], run["outcome"]) for run in report["exports"]] == [("nope", "invalid")]
