"""An export deleted from the config: `plan` lists the members it left behind, `segship retire` removes them
(connection and targets from state) and then forgets its state."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import yaml

from .conftest import LIST_ID, SEGMENT_ID, profile

NEW_LIST = 5


def rows(count: int, **changes: dict) -> list[dict]:
    return [profile(i, **changes.get(f"C{i:05d}", {})) for i in range(1, count + 1)]


def emails(numbers) -> set[str]:
    return {f"user{i}@example.com" for i in numbers}


def delete_from_config(project, export: str | None = None, connection: str | None = None) -> None:
    path = project.root / "segship.yaml"
    config = yaml.safe_load(path.read_text())
    config["exports"].pop(export, None)
    config["connections"].pop(connection, None)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_deleted_export_is_planned_as_retired_then_retired(project):
    project.write(rows(10))
    assert project.cli("export", "--all").returncode == 0
    assert project.brevo_members() == emails(range(1, 11))
    delete_from_config(project, "vip-brevo")

    plan = project.cli("plan")
    assert plan.returncode == 0, plan.stderr
    assert ("vip-brevo: no longer in the config, but its 10 members are still in its destination: "
            "`segship retire vip-brevo` removes them and forgets its state") in plan.stdout
    as_json = {entry["export"]: entry for entry in json.loads(project.cli("plan", "--format", "json").stdout)}
    assert (as_json["vip-brevo"]["retired"], as_json["vip-brevo"]["acknowledged"]) == (True, 10)
    assert as_json["vip-brevo"]["remove"] == 0 and as_json["vip-braze"]["retired"] is False
    markdown = project.cli("plan", "--format", "markdown").stdout
    assert "- 🗑️ `vip-brevo`: no longer in the config, but its 10 members are still in its destination" in markdown
    assert "vip-brevo" not in project.cli("plan", "vip-braze").stdout  # planning named exports: those only
    assert project.cli("plan", "--detailed-exitcode").returncode == 0  # `segship export` has nothing to do

    requests = project.brevo.stats()["requests"]
    without_keys = {k: v for k, v in project.env.items() if k not in ("BRAZE_API_KEY", "BREVO_API_KEY")}
    dry = project.cli("retire", "vip-brevo", "--dry-run", env=without_keys)  # opens no connection
    assert dry.returncode == 0, dry.stderr
    assert "vip-brevo: dry run succeeded (retire: 10 member(s), 0 old identit(ies) through connection 'brevo')" \
        in dry.stdout
    assert f"would remove from list_id {LIST_ID}: 10 member(s)" in dry.stdout
    assert project.brevo.stats()["requests"] == requests and project.brevo_members() == emails(range(1, 11))

    retired = project.cli("retire", "vip-brevo")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert f"removed from list_id {LIST_ID}: 10 member(s)" in retired.stdout
    assert "10 removal(s) acknowledged, 0 refused" in retired.stdout
    assert project.brevo_members() == set()
    assert project.acknowledged("vip-brevo") == set()
    state = project.state()
    try:
        assert state.summary("vip-brevo") == [] and state.recorded_destination("vip-brevo") is None
    finally:
        state.close()
    assert len(project.braze_members()) == 10  # the other export is left alone
    assert "vip-brevo" not in project.cli("plan").stdout

    again = project.cli("retire", "vip-brevo")
    assert again.returncode == 2 and "no state for export 'vip-brevo': nothing to retire" in again.stderr


def test_retire_removes_members_from_every_target_a_move_left_them_in(project):
    project.write(rows(10))
    assert project.cli("export", "vip-brevo").returncode == 0
    project.configure(list_id=NEW_LIST)
    project.write(rows(10, C00004={"email": "not-an-email"}))  # refused by the mapping: stays in the old list
    assert project.cli("export", "vip-brevo").returncode == 3
    assert set(project.brevo.list_contacts(NEW_LIST)) == emails(set(range(1, 11)) - {4})
    assert set(project.brevo.list_contacts(LIST_ID)) == emails({4})
    delete_from_config(project, "vip-brevo")

    retired = project.cli("retire", "vip-brevo")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert f"removed from list_id {LIST_ID}: 1 member(s)" in retired.stdout
    assert f"removed from list_id {NEW_LIST}: 9 member(s)" in retired.stdout
    assert set(project.brevo.list_contacts(NEW_LIST)) == set() and set(project.brevo.list_contacts(LIST_ID)) == set()


def test_braze_members_leave_the_segment_the_export_last_used(project):
    project.write(rows(6))
    assert project.cli("export", "vip-braze").returncode == 0
    delete_from_config(project, "vip-braze")
    retired = project.cli("retire", "vip-braze")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert f"removed from membership_attribute segship_segments, segment_api_identifier {SEGMENT_ID}: 6 member(s)" \
        in retired.stdout
    users = project.braze.users()
    assert len(users) == 6 and all(SEGMENT_ID not in (user.get("segship_segments") or []) for user in users.values())


def test_refused_removals_keep_the_state_and_a_second_retire_finishes(project):
    project.write(rows(5))
    assert project.cli("export", "vip-brevo").returncode == 0
    delete_from_config(project, "vip-brevo")
    project.brevo.answer_instead(f"/contacts/lists/{LIST_ID}/contacts/remove", status=400, count=1,
                                 body='{"code": "invalid_parameter", "message": "try later"}')
    refused = project.cli("retire", "vip-brevo")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "5 removal(s) were refused or not answered: state keeps them; run `segship retire vip-brevo` again" \
        in refused.stdout
    assert project.acknowledged("vip-brevo") == {f"C{i:05d}" for i in range(1, 6)}
    assert "vip-brevo: no longer in the config, but its 5 members" in project.cli("plan").stdout

    finished = project.cli("retire", "vip-brevo")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert project.brevo_members() == set() and project.acknowledged("vip-brevo") == set()


def test_retire_refuses_an_export_in_the_config_or_without_its_connection(project):
    project.write(rows(3))
    assert project.cli("export", "--all").returncode == 0
    still = project.cli("retire", "vip-braze")
    assert still.returncode == 2 and "export 'vip-braze' is still in the config: delete it there first" \
        in still.stderr, still.stderr
    delete_from_config(project, "vip-braze", connection="braze")
    gone = project.cli("retire", "vip-braze")
    assert gone.returncode == 2, gone.stderr
    assert "export 'vip-braze' was sent through connection 'braze', which is no longer in the config: add it back " \
           "(type braze, with its key)" in gone.stderr
    assert len(project.braze_members()) == 3
    unknown = project.cli("retire", "nope")
    assert unknown.returncode == 2 and "no state for export 'nope'" in unknown.stderr


def test_a_retirement_stopped_by_ctrl_c_keeps_the_rest_and_a_second_one_finishes(project):
    project.write(rows(1500))
    assert project.cli("export", "vip-brevo").returncode == 0
    delete_from_config(project, "vip-brevo")
    project.brevo.set_faults(latency=0.3)  # removals of 150 answered slowly: Ctrl-C lands part-way
    process = subprocess.Popen(project.command("retire", "vip-brevo"), cwd=project.root, env=project.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(project.acknowledged("vip-brevo")) == 1500 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stdout + stderr[-3000:]
    assert "run `segship retire vip-brevo` again to continue" in stdout
    left = project.acknowledged("vip-brevo")
    assert 0 < len(left) < 1500
    assert project.brevo_members() == emails(int(key[1:]) for key in left)  # state and Brevo agree

    project.brevo.set_faults(latency=0.0)
    finished = project.cli("retire", "vip-brevo")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"retire: {len(left)} member(s)" in finished.stdout
    assert project.brevo_members() == set()
