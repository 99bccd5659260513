"""The engine's promises, end to end: the real CLI against the Braze and Brevo sandboxes."""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import time
import urllib.request

import pytest

from .conftest import COLUMNS, LIST_ID, WAREHOUSE_TYPES, accept_identity_conflicts, profile

EXPORTS = ("vip-braze", "vip-brevo")
#: Every promise on each state backend, and with the export's source planned in its warehouse.
pytestmark = pytest.mark.parametrize("state_target", ["sqlite", "postgres", "warehouse", "streamed"], indirect=True)


def rows(count: int, **overrides: dict) -> list[dict]:
    return [profile(i, **overrides.get(f"C{i:05d}", {})) for i in range(1, count + 1)]


def test_first_run_sends_every_member_and_an_unchanged_rerun_sends_nothing(project):
    project.write(rows(120))
    first = project.cli("export", "--all", "--report", "report.json")
    assert first.returncode == 0, first.stderr
    assert set(project.braze_members()) == {f"C{i:05d}" for i in range(1, 121)}
    assert project.brevo_members() == {f"user{i}@example.com" for i in range(1, 121)}
    user = project.braze.user("C00007")
    assert (user["email"], user["first_name"], user["segship_segments"]) == (
        "user7@example.com", "First7", ["3c4a9e52-0000-4000-8000-000000000001"])

    requests = (project.braze.stats()["requests"], project.brevo.stats()["requests"])
    again = project.cli("export", "--all", "--report", "again.json")
    assert again.returncode == 0, again.stderr
    assert (project.braze.stats()["requests"], project.brevo.stats()["requests"]) == requests
    report = json.loads((project.root / "again.json").read_text())
    assert report["exit_code"] == 0
    assert [(r["export"], r["upserted"], r["http"]["requests"], r["plan"]["unchanged"]) for r in report["exports"]] \
        == [("vip-braze", 0, 0, 120), ("vip-brevo", 0, 0, 120)]


def test_a_changed_attribute_sends_only_that_user_and_for_braze_only_that_attribute(project):
    project.write(rows(50))
    assert project.cli("export", "--all").returncode == 0
    braze_before, brevo_before = project.braze.stats(), project.brevo.stats()

    project.write(rows(50, C00009={"first_name": "Renamed"}))
    result = project.cli("export", "--all")
    assert result.returncode == 0, result.stderr
    braze_after, brevo_after = project.braze.stats(), project.brevo.stats()
    assert braze_after["objects_processed"] - braze_before["objects_processed"] == 1
    assert braze_after["data_points"] - braze_before["data_points"] == 1  # first_name only
    assert project.braze.user("C00009")["first_name"] == "Renamed"
    assert brevo_after["imported_contacts"] - brevo_before["imported_contacts"] == 1
    assert project.brevo.list_contacts(3)["user9@example.com"]["FIRSTNAME"] == "Renamed"


def test_members_who_leave_the_segment_are_removed(project):
    project.write(rows(30))
    assert project.cli("export", "--all").returncode == 0
    leaving = rows(30, C00004={"lifetime_value": 5}, C00011={"lifetime_value": 5})
    project.write(leaving)
    result = project.cli("export", "--all")
    assert result.returncode == 0, result.stderr
    expected = {f"C{i:05d}" for i in range(1, 31)} - {"C00004", "C00011"}
    assert set(project.braze_members()) == expected
    assert "C00004" in project.braze.users()  # left the segment, not deleted from Braze
    assert project.brevo_members() == {f"user{i}@example.com" for i in range(1, 31)} - {
        "user4@example.com", "user11@example.com"}
    assert project.acknowledged("vip-braze") == expected


def test_rejected_rows_are_listed_with_reasons_and_retried_on_the_next_run(project):
    project.write(rows(20, C00005={"email": "not-an-email"}))
    project.braze.set_faults(refuse_external_ids=["C00003"])
    first = project.cli("export", "--all")
    assert first.returncode == 3, first.stderr

    braze_rejects = project.cli("rejects", "vip-braze", "--json")
    assert braze_rejects.returncode == 0
    listed = {row["key"]: row for row in json.loads(braze_rejects.stdout)}
    assert set(listed) == {"C00003"} and "refuse" in listed["C00003"]["reason"]  # Braze refused one
    # for Braze the email is no identity: the bad one is left out and the user sent without it
    assert "C00005" in project.braze_members() and "email" not in project.braze_members()["C00005"]
    summary = json.loads(project.cli("rejects", "vip-braze", "--summary", "--json").stdout)
    assert [(field["field"], field["reason"], field["examples"]) for field in summary["dropped_fields"]] == [
        ("email", "invalid email address '…'", ["C00005"])]
    # for Brevo it is the identity: the row is refused
    brevo_rejects = {row["key"]: row for row in json.loads(project.cli("rejects", "vip-brevo", "--json").stdout)}
    assert set(brevo_rejects) == {"C00005"} and "email" in brevo_rejects["C00005"]["reason"].lower()
    assert brevo_rejects["C00005"]["origin"] == "mapping"
    assert "C00003" not in project.braze_members()

    project.braze.set_faults(refuse_external_ids=[])
    project.write(rows(20))
    second = project.cli("export", "--all")
    assert second.returncode == 0, second.stderr
    assert "C00003" in project.braze_members()
    assert project.braze_members()["C00005"]["email"] == "user5@example.com"
    assert "user5@example.com" in project.brevo_members()
    assert json.loads(project.cli("rejects", "vip-braze", "--json").stdout) == []
    assert json.loads(project.cli("rejects", "vip-brevo", "--json").stdout) == []
    assert json.loads(project.cli("rejects", "vip-braze", "--summary", "--json").stdout)["dropped_fields"] == []


def test_a_page_that_is_not_the_destinations_answer_acknowledges_nothing_and_fails_the_run(project):
    # a proxy or gateway between segship and the destinations answers 200 text/html: Braze's once the
    # connection check got through, Brevo's imports (its key and list checks reach Brevo)
    page = "<!doctype html><html><head><title>Access gateway</title></head><body>Sign in</body></html>"
    project.write(rows(20))
    project.braze.set_faults(canned_answers=[
        {"path": "/users/track", "status": 400, "body": '{"message": "Valid data must be provided"}'},
        {"path": "/users/track", "body": page, "content_type": "text/html", "count": None}])
    project.brevo.answer_instead("/contacts/import", page, content_type="text/html")
    run = project.cli("export", "--all", "--report", "report.json")
    assert run.returncode == 1, run.stderr
    report = {r["export"]: r for r in json.loads((project.root / "report.json").read_text())["exports"]}
    assert {(name, r["outcome"], r["upserted"]) for name, r in report.items()} == {
        ("vip-braze", "failed", 0), ("vip-brevo", "failed", 0)}
    assert "not Braze's JSON answer" in report["vip-braze"]["message"] and "rest_endpoint" in report[
        "vip-braze"]["message"]
    assert "base_url" in report["vip-brevo"]["message"]
    assert project.acknowledged("vip-braze") == project.acknowledged("vip-brevo") == set()
    assert project.braze.users() == {} and project.brevo_members() == set()
    plan = project.cli("plan", "--json")
    assert [(p["export"], p["add"]) for p in json.loads(plan.stdout)] == [("vip-braze", 20), ("vip-brevo", 20)]

    project.braze.set_faults(canned_answers=[])
    project.brevo.set_faults(canned_answers=[])
    again = project.cli("export", "--all")
    assert again.returncode == 0, again.stderr
    assert set(project.braze_members()) == {f"C{i:05d}" for i in range(1, 21)}
    assert project.brevo_members() == {f"user{i}@example.com" for i in range(1, 21)}


def brevo_api(project, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    """One request to the Brevo sandbox's API, as a Brevo user's own tool would make it."""
    request = urllib.request.Request(project.brevo.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"api-key": project.brevo.api_key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.loads(answer.read() or "null")


def test_consent_is_never_sent_unless_mapped_nor_overwritten(project):
    # the segment has columns named like Braze's subscription and Brevo's blocklist fields; no mapping names them
    consent = {"email_subscribe": "opted_in", "push_subscribe": "subscribed", "subscription_groups": "[]",
               "emailBlacklisted": "false", "smsBlacklisted": "false"}

    def write(members: list[dict]) -> None:
        with (project.root / "profiles.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=[*COLUMNS, *consent])
            writer.writeheader()
            writer.writerows({**member, **consent} for member in members)
        if project.state_target.warehouse:
            project.state_target.load("crm", [{**member, **consent} for member in members],
                                      {**WAREHOUSE_TYPES, **dict.fromkeys(consent, "text")})

    received: list[dict] = []  # every attributes object Braze got
    update_user = project.braze.sandbox._update_user
    project.braze.sandbox._update_user = lambda user: received.append(dict(user)) or update_user(user)
    write(rows(10))
    assert project.cli("export", "--all").returncode == 0
    # the person blocklists herself in Brevo (an unsubscribe link, a form, Brevo's API)
    assert brevo_api(project, "PUT", "/contacts/user3%40example.com",
                     {"emailBlacklisted": True, "smsBlacklisted": True})[0] == 204

    write(rows(10, C00003={"first_name": "Renamed"}, C00005={"lifetime_value": 5}))  # a change, a leaver
    changed = project.cli("export", "--all")
    assert changed.returncode == 0, changed.stderr
    write(rows(10, C00003={"first_name": "Renamed"}))  # the leaver is back
    resync = project.cli("export", "--all", "--full-resync")
    assert resync.returncode == 0, resync.stderr

    assert len(received) == 10 + 2 + 10  # joins, a change and a leave, the resync of all
    assert not [user for user in received if {"email_subscribe", "push_subscribe", "subscription_groups"} & set(user)]
    assert project.brevo.blacklisting("user3@example.com") == {"emailBlacklisted": True, "smsBlacklisted": True}
    assert project.brevo.list_contacts(LIST_ID)["user3@example.com"]["FIRSTNAME"] == "Renamed"
    assert [project.brevo.blacklisting(f"user{i}@example.com") for i in (1, 5, 10)] == [
        {"emailBlacklisted": False, "smsBlacklisted": False}] * 3
    assert brevo_api(project, "GET", f"/contacts/lists/{LIST_ID}")[1]["totalBlacklisted"] == 1
    assert project.brevo.stats()["contact_updates"] == 1  # the person's own: segship sent none


def start_slow_export(project, rows_count: int = 3000, command: tuple[str, ...] = ("export", "vip-braze"),
                      braze_schedule: str | None = None) -> subprocess.Popen:
    """Start exporting to a slow Braze (``segship *command``) and return once some users have arrived.

    Small requests answered slowly: the Braze plugin keeps ~120 requests in flight, so
    3,000 rows in 600 requests take several round trips and a signal lands part-way.
    """
    project.configure(braze_batch=5)
    if braze_schedule:
        config = project.root / "segship.yaml"
        config.write_text(config.read_text().replace(
            "    display_name: VIP to Braze\n", f"    display_name: VIP to Braze\n    schedule: '{braze_schedule}'\n"))
    project.write(rows(rows_count))
    project.braze.set_faults(latency=0.2)
    process = subprocess.Popen(project.command(*command), cwd=project.root, env=project.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(project.braze.users()) < 60 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    return process


def assert_resumes_to_the_whole_segment(project, acknowledged: set[str], rows_count: int = 3000) -> None:
    project.braze.set_faults(latency=0.0)
    resumed = project.cli("export", "vip-braze", "--report", "resumed.json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((project.root / "resumed.json").read_text())["exports"][0]
    assert report["upserted"] == rows_count - len(acknowledged)
    members = project.braze_members()
    assert set(members) == {f"C{i:05d}" for i in range(1, rows_count + 1)}
    assert all(user["segship_segments"] == ["3c4a9e52-0000-4000-8000-000000000001"] for user in members.values())


def until_some_are_acknowledged(project) -> None:
    """Wait until a run in progress has committed a batch (Braze gets users before it answers)."""
    deadline = time.monotonic() + 30
    while not project.acknowledged("vip-braze") and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_run_killed_with_sigkill_resumes_without_losing_or_duplicating_anyone(project):
    process = start_slow_export(project)
    until_some_are_acknowledged(project)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    acknowledged = project.acknowledged("vip-braze")
    assert 0 < len(acknowledged) < 3000, "the run should have been killed part-way"
    assert acknowledged <= set(project.braze_members())  # state never claims what Braze did not get
    assert_resumes_to_the_whole_segment(project, acknowledged)
    assert "interrupted" in project.cli("runs", "vip-braze").stdout  # the killed run, as the next one found it


def test_ctrl_c_finishes_the_batches_in_flight_commits_and_exits_1(project):
    process = start_slow_export(project)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stdout + stderr[-3000:]
    assert "interrupted" in stdout and "run the export again to continue" in stdout
    assert "Traceback" not in stderr
    acknowledged = project.acknowledged("vip-braze")
    assert 0 < len(acknowledged) < 3000
    # every batch in flight was answered and committed: state and Braze agree exactly
    assert acknowledged == set(project.braze_members())
    assert_resumes_to_the_whole_segment(project, acknowledged)


def test_a_second_ctrl_c_aborts_at_once_with_exit_130_and_loses_nothing(project):
    process = start_slow_export(project, command=("export", "vip-braze", "--report", "aborted.json"))
    project.braze.set_faults(latency=5.0)  # the batches sent from now on are answered after the second Ctrl-C
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    while "stopping: finishing the batches in flight" not in (line := process.stderr.readline()):
        assert line, "the first Ctrl-C was not acknowledged"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stdout + stderr[-3000:]
    assert "aborting: the batches in flight are cut off" in stderr and "Traceback" not in stderr
    report = json.loads((project.root / "aborted.json").read_text())
    assert report["exit_code"] == 130
    assert [(run["export"], run["outcome"]) for run in report["exports"]] == [("vip-braze", "interrupted")]
    acknowledged = project.acknowledged("vip-braze")
    assert acknowledged <= set(project.braze_members())  # state never claims what Braze did not get
    assert report["exports"][0]["upserted"] == len(acknowledged)
    assert_resumes_to_the_whole_segment(project, acknowledged)


def test_a_full_resync_cut_by_ctrl_c_at_a_random_point_says_the_command_that_finishes_it(project):
    project.configure(braze_batch=1)
    project.write(rows(1000))
    assert project.cli("export", "vip-braze", timeout=300).returncode == 0
    project.braze.set_faults(latency=0.2)
    before = project.braze.stats()["requests"]
    process = subprocess.Popen(project.command("export", "vip-braze", "--full-resync"), cwd=project.root,
                               env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    point = before + random.randint(20, 800)  # a request per member; ~120 in flight are answered after the cut
    deadline = time.monotonic() + 60
    while project.braze.stats()["requests"] < point and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stdout + stderr[-3000:]
    # state keeps no resync going: a plain run would send nothing, so the message names the command that resyncs
    assert ("run `segship export vip-braze --full-resync` again to resync every member "
            "(a plain run sends only what changed)") in stdout, stdout
    assert "run the export again to continue" not in stdout
    resent = project.braze.stats()["requests"] - before
    assert resent < 1000, f"the resync should have been cut part-way (point {point - before})"

    project.braze.set_faults(latency=0.0)
    again = project.cli("export", "vip-braze", "--full-resync", "--report", "again.json", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((project.root / "again.json").read_text())["exports"][0]["upserted"] == 1000


def test_sigterm_to_a_scheduled_run_finishes_the_batches_in_flight_commits_and_exits_1(project):
    process = start_slow_export(project, command=("schedule", "--once"), braze_schedule="* * * * *")
    process.send_signal(signal.SIGTERM)  # what Kubernetes, systemd and CI runners send first
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "vip-braze: interrupted" in stdout and "Traceback" not in stderr
    acknowledged = project.acknowledged("vip-braze")
    assert 0 < len(acknowledged) < 3000
    assert acknowledged == set(project.braze_members())
    assert_resumes_to_the_whole_segment(project, acknowledged)


def test_sigterm_to_a_waiting_scheduler_stops_it_at_once_with_exit_0(project):
    project.write(rows(3))
    with (project.root / "segship.yaml").open("a") as config:
        config.write("    schedule: '0 0 1 1 *'\n")  # vip-brevo, next due on New Year's Day
    process = subprocess.Popen(project.command("schedule"), cwd=project.root, env=project.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stderr.readline()  # blocks until the scheduler says what it waits for
    assert "schedule.waiting" in first, first
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and project.brevo.stats().get("requests", 0) == 0


def test_schedule_once_runs_the_exports_that_are_due(project):
    project.write(rows(8))
    with (project.root / "segship.yaml").open("a") as config:
        config.write("    schedule: '* * * * *'\n")  # appended to the last export, vip-brevo: due every minute
    result = project.cli("schedule", "--once")
    assert result.returncode == 0, result.stderr
    assert "vip-brevo: succeeded" in result.stdout and "vip-braze" not in result.stdout
    assert len(project.brevo_members()) == 8

    project.write(rows(8) + [profile(2, email="twin@example.com")])
    failed = project.cli("schedule", "--once")
    assert failed.returncode == 1  # cron and CI see a failed export, as with `segship export`
    assert "vip-brevo: failed" in failed.stdout


def test_duplicate_or_null_keys_stop_the_run_before_anything_is_sent(project):
    project.write(rows(10) + [profile(3, email="twin@example.com")])
    result = project.cli("export", "--all")
    assert result.returncode == 1
    assert "key 'customer_id' is not unique" in result.stdout and "C00003 (2 rows)" in result.stdout
    assert project.braze.stats().get("requests", 0) == 0 and project.brevo.stats().get("requests", 0) == 0

    project.write(rows(10) + [profile(11, customer_id="")])
    result = project.cli("export", "vip-braze")
    assert result.returncode == 1 and "have no 'customer_id'" in result.stdout
    assert project.braze.stats().get("requests", 0) == 0


def test_safeguards_stop_a_mass_removal(project):
    project.configure(max_removed=0.2)
    project.write(rows(20))
    assert project.cli("export", "vip-braze").returncode == 0
    requests = project.braze.stats()["requests"]
    project.write(rows(10))
    result = project.cli("export", "vip-braze")
    assert result.returncode == 1
    assert "would remove 10 of the 20 members" in result.stdout
    assert project.braze.stats()["requests"] == requests
    assert len(project.braze_members()) == 20
    assert "--allow-mass-removal" in result.stdout

    # plan tells beforehand, in text and in JSON
    plan = project.cli("plan", "vip-braze")
    assert plan.returncode == 0 and "vip-braze: a run would stop before sending anything" in plan.stdout
    stopped = json.loads(project.cli("plan", "vip-braze", "--json").stdout)[0]["stopped_by_safeguard"]
    assert "would remove 10 of the 20 members" in stopped

    # one deliberate run goes through
    result = project.cli("export", "vip-braze", "--allow-mass-removal")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(project.braze_members()) == 10
    assert json.loads(project.cli("plan", "vip-braze", "--json").stdout)[0]["stopped_by_safeguard"] is None


def test_dry_run_and_plan_send_nothing(project):
    project.write(rows(15, C00002={"email": "broken"}))
    plan = project.cli("plan", "--json")
    assert plan.returncode == 0, plan.stderr
    assert [(p["export"], p["add"]) for p in json.loads(plan.stdout)] == [("vip-braze", 15), ("vip-brevo", 15)]
    without_keys = {k: v for k, v in project.env.items() if k not in ("BRAZE_API_KEY", "BREVO_API_KEY")}
    dry = project.cli("export", "--all", "--dry-run", env=without_keys)  # as in CI: no secret needed
    assert dry.returncode == 3, dry.stdout  # the broken email would be rejected by Brevo's mapping rules
    assert "would be rejected" in dry.stdout
    assert project.braze.stats().get("requests", 0) == 0 and project.brevo.stats().get("requests", 0) == 0
    assert project.acknowledged("vip-braze") == set()


def test_a_contributor_cannot_run_an_export_through_an_admins_only_connection(project):
    project.write(rows(5))
    refused = project.cli("--role", "contributor", "export", "vip-braze")
    assert refused.returncode == 2
    assert "only admins may use; you run as contributor" in refused.stderr
    assert project.braze.stats().get("requests", 0) == 0
    allowed = project.cli("export", "vip-brevo", env={**project.env, "SEGSHIP_ROLE": "contributor"})
    assert allowed.returncode == 0, allowed.stderr


def test_no_api_key_in_output_logs_or_report_and_an_unset_key_is_named(project):
    project.write(rows(5, C00001={"email": "broken"}))
    result = project.cli("--log-level", "debug", "export", "--all", "--report", "report.json")
    assert result.returncode == 3
    text = result.stdout + result.stderr + (project.root / "report.json").read_text()
    for key in (project.braze.api_key, project.brevo.api_key):
        assert key not in text
    assert "user2@example.com" not in result.stderr  # personal data is masked in logs

    env = {k: v for k, v in project.env.items() if k != "BRAZE_API_KEY"}
    unset = project.cli("export", "vip-braze", env=env)
    assert unset.returncode == 2
    assert "environment variable BRAZE_API_KEY is not set" in unset.stdout


def test_unknown_export_and_missing_names_are_usage_errors(project):
    project.write(rows(1))
    assert project.cli("export", "nope").returncode == 2
    assert project.cli("export").returncode == 2


def test_a_removal_never_takes_out_a_profile_a_staying_member_still_maps_to(project):
    # two keys, one Brevo contact (emails match once trimmed and lower-cased): a plan stops on it
    # unless the export accepts it, and then the lower key joining takes the contact over
    accept_identity_conflicts(project, "vip-brevo")
    project.write(rows(4, C00001={"lifetime_value": 5}, C00002={"email": "USER1@example.com"}))
    assert project.cli("export", "vip-brevo").returncode == 0
    project.write(rows(4, C00002={"email": "USER1@example.com"}))  # C00001 joins: C00002 is left out
    left = project.cli("export", "vip-brevo")
    assert left.returncode == 0, left.stderr
    assert "user1@example.com" in project.brevo_members()  # still C00001's
    assert project.cli("plan", "vip-brevo", "--json").returncode == 0

    # two members swap emails: each old email is still held by the other, so none is removed
    project.write(rows(4, C00002={"email": "USER1@example.com", "lifetime_value": 5},
                       C00003={"email": "user4@example.com"}, C00004={"email": "user3@example.com"}))
    swapped = project.cli("export", "vip-brevo")
    assert swapped.returncode == 0, swapped.stderr
    assert project.brevo_members() == {"user1@example.com", "user3@example.com", "user4@example.com"}


def test_plan_verbose_names_the_changed_fields_of_example_keys(project):
    project.write(rows(5))
    assert project.cli("export", "vip-braze").returncode == 0
    project.write(rows(5, C00002={"first_name": "Renamed"}))
    plan = project.cli("plan", "vip-braze", "--verbose", "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)[0]["changed_fields"] == {"C00002": ["first_name"]}
