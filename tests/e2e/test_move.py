"""Moving an export to a new target (a Brevo list, a Braze segment or attribute), end to end."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import pytest

from .conftest import LIST_ID, SEGMENT_ID, profile

NEW_SEGMENT = "7d1f0000-0000-4000-8000-000000000002"
NEW_LIST = 5


def rows(count: int, leaving: tuple[int, ...] = ()) -> list[dict]:
    return [profile(i, lifetime_value=5 if i in leaving else 500) for i in range(1, count + 1)]


def emails(numbers) -> set[str]:
    return {f"user{i}@example.com" for i in numbers}


def holding(project, attribute: str, value: str) -> set[str]:
    """Braze users whose array ``attribute`` holds ``value``."""
    return {uid for uid, user in project.braze.users().items() if value in (user.get(attribute) or [])}


def test_a_new_brevo_list_moves_the_members_and_leavers_of_the_same_run_leave_the_old_list(project):
    project.configure(max_removed=0.1)
    project.write(rows(40))
    assert project.cli("export", "vip-brevo").returncode == 0
    project.configure(max_removed=0.1, list_id=NEW_LIST)
    project.write(rows(40, leaving=(4,)))

    plan = project.cli("plan", "vip-brevo")
    assert plan.returncode == 0, plan.stderr
    assert f"vip-brevo: move from list_id {LIST_ID} to list_id {NEW_LIST}, 39 members" in plan.stdout
    dry = project.cli("export", "vip-brevo", "--dry-run")
    assert f"move from list_id {LIST_ID} to list_id {NEW_LIST}, 39 members" in dry.stdout
    assert set(project.brevo.list_contacts(NEW_LIST)) == set()  # plan and dry run send nothing

    # a move is no loss of members: one leaver in 40 stays under max_removed_fraction 0.1
    result = project.cli("export", "vip-brevo", "--report", "report.json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((project.root / "report.json").read_text())["exports"][0]
    assert (report["plan"]["move"], report["plan"]["remove"], report["upserted"]) == (39, 1, 39)
    assert set(project.brevo.list_contacts(NEW_LIST)) == emails(set(range(1, 41)) - {4})
    assert set(project.brevo.list_contacts(LIST_ID)) == set()  # the leaver too left the list it was in

    requests = project.brevo.stats()["requests"]
    again = project.cli("export", "vip-brevo", "--report", "again.json")
    assert again.returncode == 0, again.stderr
    assert project.brevo.stats()["requests"] == requests
    assert json.loads((project.root / "again.json").read_text())["exports"][0]["plan"]["unchanged"] == 39


def test_a_new_braze_segment_and_attribute_move_the_members_without_resending_everyone(project):
    project.write(rows(30))
    assert project.cli("export", "vip-braze").returncode == 0
    project.configure(segment_id=NEW_SEGMENT, membership_attribute="vip_segments")

    plan = project.cli("plan", "vip-braze")
    assert (f"vip-braze: move from segment_api_identifier {SEGMENT_ID}, membership_attribute segship_segments "
            f"to segment_api_identifier {NEW_SEGMENT}, membership_attribute vip_segments, 30 members") in plan.stdout
    assert "settings or mapping changed" not in plan.stdout  # a move, not a full re-send for new settings

    result = project.cli("export", "vip-braze")
    assert result.returncode == 0, result.stdout + result.stderr
    everyone = {f"C{i:05d}" for i in range(1, 31)}
    assert holding(project, "vip_segments", NEW_SEGMENT) == everyone
    assert holding(project, "segship_segments", SEGMENT_ID) == set()
    assert project.cli("plan", "vip-braze").stdout.count("move from") == 0


def test_a_move_killed_part_way_resumes_and_finishes(project):
    project.configure(braze_batch=5)
    project.write(rows(3000))
    assert project.cli("export", "vip-braze", timeout=300).returncode == 0
    project.configure(braze_batch=5, segment_id=NEW_SEGMENT)
    project.braze.set_faults(latency=0.2)
    process = subprocess.Popen(project.command("export", "vip-braze"), cwd=project.root, env=project.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def moved_members() -> int:
        state = project.state()
        try:
            state.summary("vip-braze")  # folds in the members the run journaled
            return int(state.one("SELECT count(*) FROM members m JOIN exports e ON e.id = m.export_id "
                                 "WHERE e.name = 'vip-braze' AND m.target = 2")[0])
        finally:
            state.close()

    # killed once Braze holds some members in the new segment and state has committed some of them
    # (a commit follows its batch's answer by a few milliseconds)
    deadline = time.monotonic() + 60
    while (len(holding(project, "segship_segments", NEW_SEGMENT)) < 60 or not moved_members()) \
            and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    moved = moved_members()
    assert 0 < moved < 3000, "the run should have been killed part-way through the move"

    project.braze.set_faults(latency=0.0)
    resumed = project.cli("export", "vip-braze", "--report", "resumed.json", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads((project.root / "resumed.json").read_text())["exports"][0]
    assert report["plan"]["move"] == 3000 - moved
    everyone = {f"C{i:05d}" for i in range(1, 3001)}
    users = project.braze.users()
    assert {uid for uid, user in users.items() if user.get("segship_segments") == [NEW_SEGMENT]} == everyone
    assert project.cli("export", "vip-braze", "--report", "after.json").returncode == 0
    after = json.loads((project.root / "after.json").read_text())["exports"][0]
    assert (after["plan"]["unchanged"], after["http"]["requests"]) == (3000, 0)


COUNT = 1000


@pytest.mark.parametrize("phase", ["joining", "removing"])
def test_a_move_cut_by_ctrl_c_at_a_random_point_is_planned_and_finished_with_its_removals(project, phase):
    project.configure(braze_batch=1)
    project.write(rows(COUNT))
    assert project.cli("export", "vip-braze", timeout=300).returncode == 0
    project.configure(braze_batch=1, segment_id=NEW_SEGMENT)
    project.braze.set_faults(latency=0.2)
    process = subprocess.Popen(project.command("export", "vip-braze"), cwd=project.root, env=project.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # cut while members join the new segment, or while their identities leave the old one
    # (short of the last 200: 120 records are in flight at a time, and those in flight are answered)
    point = random.randint(COUNT // 20, COUNT - 200)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if phase == "joining" and len(holding(project, "segship_segments", NEW_SEGMENT)) >= point:
            break
        if phase == "removing":
            if len(holding(project, "segship_segments", SEGMENT_ID)) <= COUNT - point:
                break
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stdout + stderr[-3000:]
    still_in_old = holding(project, "segship_segments", SEGMENT_ID)
    joined = holding(project, "segship_segments", NEW_SEGMENT)
    assert joined and still_in_old, f"the run should have been cut part-way (point {point}): {stdout}"

    planned = json.loads(project.cli("plan", "vip-braze", "--format", "json").stdout)[0]
    # every identity still in the old segment is a removal to come: a moving member's, or one a moved
    # member left there
    assert planned["removals"] == planned["move"] + planned["stale_identities"] == len(still_in_old), planned
    text = project.cli("plan", "vip-braze").stdout
    assert f"vip-braze: {len(still_in_old)} removal(s): 0 leaver(s)" in text, text
    header = next(line for line in text.splitlines() if line.startswith("┃ export"))
    row = next(line for line in text.splitlines() if line.startswith("│ vip-braze"))
    remove = [cell.strip() for cell in header.split("┃")].index("remove")
    assert row.split("│")[remove].strip() == str(len(still_in_old)), text  # the table's remove column

    project.braze.set_faults(latency=0.0)
    resumed = project.cli("export", "vip-braze", "--report", "resumed.json", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads((project.root / "resumed.json").read_text())["exports"][0]
    assert report["removed"] == planned["removals"]
    assert holding(project, "segship_segments", SEGMENT_ID) == set()
    assert holding(project, "segship_segments", NEW_SEGMENT) == {f"C{i:05d}" for i in range(1, COUNT + 1)}
