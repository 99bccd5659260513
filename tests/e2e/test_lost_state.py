"""Lost state is no longer silent (issue 24, item 5): the real CLI against both sandboxes.

After the state file was deleted, the next run sent every member as new with no warning and
never removed those who had left. Now a run whose state holds none of an export's members asks
the destination how many its target holds (Brevo: the list's contacts) and stops before sending
if any, until ``--allow-empty-state``; ``segship state rebuild`` rebuilds state from a
destination that lists its members, so leavers are removed again.
"""

from __future__ import annotations

import json

from .conftest import profile


def rows(*numbers: int) -> list[dict]:
    return [profile(i) for i in numbers]


def lose_state(project, *exports: str) -> None:
    """What a deleted state file (or a CI runner's empty disk) leaves: nothing known of the exports."""
    for export in exports or ("vip-braze", "vip-brevo"):
        forgot = project.cli("state", "forget", export, "--yes")
        assert forgot.returncode == 0, forgot.stderr


def test_a_run_from_lost_state_to_a_list_that_holds_members_stops_until_allowed(project):
    project.write(rows(*range(1, 21)))
    assert project.cli("export", "--all").returncode == 0
    lose_state(project)

    planned = project.cli("plan", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    checks = {plan["export"]: plan["empty_state_check"] for plan in json.loads(planned.stdout)}
    assert checks == {"vip-braze": False, "vip-brevo": True}  # Braze can't count its members
    text = project.cli("plan", "vip-brevo")
    assert "vip-brevo: state holds none of its members: before sending, the run asks the destination how " \
           "many members its target holds and stops if any" in text.stdout

    imported = project.brevo.stats()["imported_contacts"]
    stopped = project.cli("export", "--all")
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "export 'vip-brevo': state holds none of its members, but the destination already holds 20 in its " \
           "target" in stopped.stdout
    assert "segship state rebuild vip-brevo" in stopped.stdout and "--allow-empty-state" in stopped.stdout
    assert "nothing was sent" in stopped.stdout
    assert project.brevo.stats()["imported_contacts"] == imported
    assert project.acknowledged("vip-brevo") == set()
    # Braze declares no count: its export runs as before, every member sent again
    assert project.acknowledged("vip-braze") == {f"C{i:05d}" for i in range(1, 21)}

    allowed = project.cli("export", "vip-brevo", "--allow-empty-state")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert project.acknowledged("vip-brevo") == {f"C{i:05d}" for i in range(1, 21)}
    assert project.cli("export", "vip-brevo").returncode == 0  # state holds them now


def test_an_export_to_an_empty_list_or_with_nothing_to_send_is_not_stopped(project):
    project.write([profile(1, lifetime_value=5)])  # nobody in the segment
    requests = project.brevo.stats().get("requests", 0)
    assert project.cli("export", "vip-brevo").returncode == 0
    # nothing to send: no count; the one request asks which account the key belongs to (the first run's)
    assert project.brevo.stats().get("requests", 0) == requests + 1
    assert project.cli("export", "vip-brevo").returncode == 0
    assert project.brevo.stats().get("requests", 0) == requests + 1  # the account known: no request at all
    project.write(rows(1, 2))
    first = project.cli("export", "vip-brevo")
    assert first.returncode == 0, first.stdout + first.stderr
    assert project.brevo_members() == {"user1@example.com", "user2@example.com"}


def test_state_rebuild_finds_the_lists_members_so_leavers_are_removed_again(project):
    project.write(rows(*range(1, 21)))
    assert project.cli("export", "vip-brevo").returncode == 0
    lose_state(project, "vip-brevo")
    # meanwhile 16 to 20 left the segment, 21 and 22 joined, and 2's email is written in capitals
    project.write([*rows(1), profile(2, email="USER2@Example.com"), *rows(*range(3, 16), 21, 22)])

    rebuilt = project.cli("state", "rebuild", "vip-brevo")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "rebuilt export 'vip-brevo' from its destination: 20 member(s) listed; 15 match a segment row and are " \
           "members again (the next run sends their rows whole); 5 match none and the next run removes them; " \
           "0 were in state already" in rebuilt.stdout
    assert "@example.com" not in rebuilt.stdout

    planned = json.loads(project.cli("plan", "vip-brevo", "--format", "json").stdout)[0]
    assert (planned["add"], planned["update"], planned["remove"], planned["unchanged"]) == (2, 15, 5, 0)
    assert not planned["empty_state_check"]
    assert all(key.startswith("listed:") and "@" not in key for key in planned["examples"]["remove"])

    exported = project.cli("export", "vip-brevo")
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert project.brevo_members() == {f"user{i}@example.com" for i in (*range(1, 16), 21, 22)}
    assert project.acknowledged("vip-brevo") == {f"C{i:05d}" for i in (*range(1, 16), 21, 22)}
    again = project.cli("state", "rebuild", "vip-brevo")  # what state knows is kept
    assert "17 member(s) listed; 0 match a segment row" in again.stdout and "17 were in state already" in again.stdout
    assert json.loads(project.cli("plan", "vip-brevo", "--format", "json").stdout)[0]["unchanged"] == 17


def test_state_rebuild_is_refused_where_the_destination_cant_list_its_members(project):
    project.write(rows(1, 2))
    refused = project.cli("state", "rebuild", "vip-braze")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "export 'vip-braze' goes to braze, which can't list the members of its target" in refused.stderr
    unknown = project.cli("state", "rebuild", "nope")
    assert unknown.returncode == 2 and "unknown export 'nope'" in unknown.stderr
