"""Pointing an export at another destination instance (another account, workspace, endpoint or
connection) moves its members there, end to end through the CLI, with sandboxes that model
several workspaces and accounts."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from segship_braze.sandbox import BrazeSandbox, RunningBrazeSandbox
from segship_braze.sandbox import SANDBOX_API_KEY as BRAZE_KEY
from segship_sendinblue.sandbox import DEFAULT_ORGANIZATION_ID, BrevoSandbox, RunningBrevoSandbox
from segship_sendinblue.sandbox import SANDBOX_API_KEY as BREVO_KEY

from ..conftest import StateTarget
from .conftest import CONFIG as PROJECT_CONFIG
from .conftest import CSV_SOURCE
from .conftest import LIST_ID, SEGMENT_ID, Project, profile

STAGING_KEY = "braze-staging-key-0123456789abcdef"
OTHER_ACCOUNT_KEY = "xkeysib-other-account-0123456789abcdef"
ROTATED_KEY = "xkeysib-rotated-0123456789abcdef"
OTHER_ORGANIZATION = "5a5dbe11000000000000000b"

CONNECTIONS = {
    "braze-staging": """
  braze-staging:
    type: braze
    display_name: Braze staging
    data_privacy_consent: true
    settings: {api_key: "${env:STAGING_KEY}", rest_endpoint: "${env:STAGING_URL}", batch_size: BATCH}""",
    "braze-prod": """
  braze-prod:
    type: braze
    display_name: Braze production
    data_privacy_consent: true
    settings: {api_key: "${env:BRAZE_API_KEY}", rest_endpoint: "${env:BRAZE_URL}", batch_size: BATCH}""",
    "brevo": """
  brevo:
    type: brevo
    display_name: Brevo
    data_privacy_consent: true
    settings: {api_key: "${env:BREVO_API_KEY}", base_url: "${env:BREVO_URL}", process_poll_interval: 0.05}""",
    "brevo-other": """
  brevo-other:
    type: brevo
    display_name: Brevo, another account
    data_privacy_consent: true
    settings: {api_key: "${env:OTHER_BREVO_KEY}", base_url: "${env:BREVO_URL}", process_poll_interval: 0.05}""",
}
# the project's state, source and segment, then connections and exports of these tests' own
CONFIG = PROJECT_CONFIG[:PROJECT_CONFIG.index("connections:")] + """connections:{connections}
exports:
  vip-braze:
    display_name: VIP to Braze
    connection: {braze}
    segments: [vip]
    settings: {{segment_api_identifier: {segment}}}
    mapping: {{customer_id: customer_id, email: email, attributes: {{first_name: first_name}}}}
  vip-brevo:
    display_name: VIP to Brevo
    connection: {brevo}
    segments: [vip]
    settings: {{list_id: {list_id}}}
    mapping: {{email: email, first_name: first_name}}
"""


class Instances(Project):
    """A project whose exports can be pointed at other connections, and connections at other endpoints
    and keys: Braze production and staging (another endpoint, or another workspace of production's),
    and a Brevo sandbox with a second account and a rotated key of the first."""

    def __init__(self, root: Path, braze, staging, brevo, state: StateTarget) -> None:
        self.staging = staging
        super().__init__(root, braze, brevo, state)
        self.env.update({"STAGING_KEY": STAGING_KEY, "STAGING_URL": staging.url, "OTHER_BREVO_KEY": OTHER_ACCOUNT_KEY})

    def configure(self, *, braze: str = "braze-staging", brevo: str = "brevo", without: tuple[str, ...] = (),
                  braze_batch: int = 75, **_: object) -> None:
        connections = "".join(text.replace("BATCH", str(braze_batch)) for name, text in CONNECTIONS.items()
                              if name not in without)
        (self.root / "segship.yaml").write_text(CONFIG.format(
            state=self.state_target.yaml, source=CSV_SOURCE, connections=connections, braze=braze, brevo=brevo, segment=SEGMENT_ID,
            list_id=LIST_ID))

    def run(self, *args: str, report: str = "report.json", timeout: float = 120) -> tuple[subprocess.CompletedProcess,
                                                                                          dict]:
        """``segship export ARGS --report``: the process and the export's report."""
        result = self.cli("export", *args, "--report", report, timeout=timeout)
        exports = json.loads((self.root / report).read_text())["exports"] if (self.root / report).exists() else [{}]
        return result, exports[0]

    def stale_identities(self, export: str) -> int:
        state = self.state()
        try:
            return state.count_stale_identities(export)
        finally:
            state.close()


@pytest.fixture
def instances(tmp_path: Path, state_target: StateTarget) -> Iterator[Instances]:
    """Braze production (a second workspace, "staging", behind STAGING_KEY), Braze staging on an endpoint
    of its own, and Brevo (another account behind OTHER_ACCOUNT_KEY, ROTATED_KEY on the first one)."""
    with RunningBrazeSandbox(BrazeSandbox(api_key=BRAZE_KEY, workspaces={STAGING_KEY: "staging"})) as braze, \
            RunningBrazeSandbox(BrazeSandbox(api_key=STAGING_KEY)) as staging, \
            RunningBrevoSandbox(BrevoSandbox(api_key=BREVO_KEY, process_delay=0.01, accounts={
                OTHER_ACCOUNT_KEY: OTHER_ORGANIZATION, ROTATED_KEY: DEFAULT_ORGANIZATION_ID})) as brevo:
        yield Instances(tmp_path, braze, staging, brevo, state_target)


def rows(count: int) -> list[dict]:
    return [profile(i) for i in range(1, count + 1)]


def segment_members(users: dict[str, dict]) -> set[str]:
    return {uid for uid, user in users.items() if SEGMENT_ID in (user.get("segship_segments") or [])}


def customers(count: int) -> set[str]:
    return {f"C{i:05d}" for i in range(1, count + 1)}


def emails(count: int) -> set[str]:
    return {f"user{i}@example.com" for i in range(1, count + 1)}


def target_line(connection: str, url: str) -> str:
    return (f"segment_api_identifier {SEGMENT_ID}, membership_attribute segship_segments on {connection} "
            f"(destination braze, rest_endpoint {url})")


# -- Braze: endpoint and connection ------------------------------------------------------------------

def test_a_braze_export_pointed_at_a_connection_on_another_endpoint_moves_its_members_there(instances):
    instances.write(rows(20))
    assert instances.cli("export", "vip-braze").returncode == 0
    assert segment_members(instances.staging.users()) == customers(20)
    instances.configure(braze="braze-prod")

    plan = instances.cli("plan", "vip-braze")
    assert plan.returncode == 0, plan.stderr
    assert (f"vip-braze: move from {target_line('braze-staging', instances.staging.url)} to "
            f"{target_line('braze-prod', instances.braze.url)}, 20 members") in plan.stdout
    moves = json.loads(instances.cli("plan", "vip-braze", "--format", "json").stdout)[0]["moves"]
    assert [(move["from_connection"], move["members"]) for move in moves] == [("braze-staging", 20)]

    result, report = instances.run("vip-braze")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (report["plan"]["move"], report["upserted"], report["removed"], report["left_behind"]) == (20, 20, 20, [])
    assert segment_members(instances.braze.users()) == customers(20)
    assert segment_members(instances.staging.users()) == set()  # taken out of the segment, the users stay
    assert len(instances.staging.users()) == 20

    again, report = instances.run("vip-braze", report="again.json")
    assert again.returncode == 0
    assert (report["plan"]["unchanged"], report["http"]["requests"]) == (20, 0)


def test_two_connections_on_one_endpoint_are_two_workspaces(instances):
    instances.env["STAGING_URL"] = instances.braze.url  # staging is a workspace of production's endpoint
    instances.write(rows(15))
    assert instances.cli("export", "vip-braze").returncode == 0
    assert segment_members(instances.braze.users("staging")) == customers(15)
    instances.configure(braze="braze-prod")

    plan = instances.cli("plan", "vip-braze")
    assert (f"vip-braze: move from {target_line('braze-staging', instances.braze.url)} to "
            f"{target_line('braze-prod', instances.braze.url)}, 15 members") in plan.stdout

    result, report = instances.run("vip-braze")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (report["upserted"], report["removed"]) == (15, 15)
    assert segment_members(instances.braze.users()) == customers(15)
    assert segment_members(instances.braze.users("staging")) == set()


def test_an_endpoint_changed_in_place_moves_the_members_and_reports_the_old_one_unreachable(instances):
    instances.write(rows(10))
    assert instances.cli("export", "vip-braze").returncode == 0
    old_url = instances.staging.url
    # the same connection now points at production's endpoint (its "staging" workspace, by the key)
    instances.env["STAGING_URL"] = instances.braze.url + "/"  # a trailing slash names the same endpoint

    plan = instances.cli("plan", "vip-braze")
    assert (f"vip-braze: move from {target_line('braze-staging', old_url)} to "
            f"{target_line('braze-staging', instances.braze.url)}, 10 members") in plan.stdout

    result, report = instances.run("vip-braze")
    assert result.returncode == 0, result.stdout + result.stderr  # everyone reached the new instance
    assert segment_members(instances.braze.users("staging")) == customers(10)
    # the old endpoint can't be reached through a connection that points elsewhere: nothing was
    # removed there, and the run says so, naming the connection, the instance and the count
    assert segment_members(instances.staging.users()) == customers(10)
    assert [(left["from_connection"], left["members"]) for left in report["left_behind"]] == [("braze-staging", 10)]
    line = (f"10 member(s) left to remove from {target_line('braze-staging', old_url)}: connection 'braze-staging' "
            f"now reaches another instance")
    assert line in result.stdout and line in report["message"]
    assert instances.stale_identities("vip-braze") == 10  # kept: never lose track of anyone
    assert line in instances.cli("plan", "vip-braze").stdout
    # the same endpoint, written with a slash or without: no move on the next run
    instances.env["STAGING_URL"] = instances.braze.url
    result, report = instances.run("vip-braze", report="again.json")
    assert (report["plan"]["unchanged"], report["left_behind"][0]["members"]) == (10, 10)

    # that instance is gone for good: its leftovers are dropped deliberately, and only them
    refused = instances.cli("state", "forget", "vip-braze", "--left-in", "braze-staging")
    assert refused.returncode == 2 and f"rest_endpoint {old_url}" in refused.stderr
    assert instances.stale_identities("vip-braze") == 10
    forgot = instances.cli("state", "forget", "vip-braze", "--left-in", "braze-staging", "--yes")
    assert forgot.returncode == 0, forgot.stderr
    assert "stopped tracking 10 member identities" in forgot.stdout
    assert instances.stale_identities("vip-braze") == 0 and len(instances.acknowledged("vip-braze")) == 10
    result, report = instances.run("vip-braze", report="forgotten.json")
    assert (report["left_behind"], report["message"], report["http"]["requests"]) == ([], "", 0)
    assert segment_members(instances.staging.users()) == customers(10)  # nothing was removed there


def test_an_old_connection_gone_from_the_config_is_reported_and_its_members_removed_once_it_is_back(instances):
    instances.write(rows(12))
    assert instances.cli("export", "vip-braze").returncode == 0
    instances.configure(braze="braze-prod", without=("braze-staging",))

    plan = instances.cli("plan", "vip-braze")
    gone = (f"12 member(s) left to remove from {target_line('braze-staging', instances.staging.url)}: "
            "connection 'braze-staging' is no longer in the config")
    assert f"vip-braze: {gone}" in plan.stdout
    markdown = instances.cli("plan", "vip-braze", "--format", "markdown").stdout
    assert f"⚠️ `vip-braze`: {gone}" in markdown

    result, report = instances.run("vip-braze")
    assert result.returncode == 0, result.stdout + result.stderr
    assert gone in result.stdout and gone in report["message"]
    assert report["outcome"] == "succeeded" and report["left_behind"][0]["members"] == 12
    assert segment_members(instances.braze.users()) == customers(12)
    assert segment_members(instances.staging.users()) == customers(12)
    assert instances.stale_identities("vip-braze") == 12
    # a run with nothing else to do still reports them, and asks nothing of production
    result, report = instances.run("vip-braze", report="still.json")
    assert (report["left_behind"][0]["members"], report["http"]["requests"]) == (12, 0)

    instances.configure(braze="braze-prod")  # the connection is back
    result, report = instances.run("vip-braze", report="back.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (report["removed"], report["left_behind"], report["message"]) == (12, [], "")
    assert segment_members(instances.staging.users()) == set()
    assert instances.stale_identities("vip-braze") == 0
    assert instances.run("vip-braze", report="after.json")[1]["http"]["requests"] == 0


# -- Brevo: the account the key belongs to ---------------------------------------------------------

def test_a_brevo_export_pointed_at_a_connection_of_another_account_moves_its_members_there(instances):
    instances.write(rows(8))
    assert instances.cli("export", "vip-brevo").returncode == 0
    instances.configure(brevo="brevo-other")

    plan = instances.cli("plan", "vip-brevo")
    # which account a key reaches is known only by asking Brevo, which a plan never does
    assert ("vip-brevo: its connection changed from brevo to brevo-other: a run first asks which account "
            "brevo-other reaches, and moves the members there if it is another") in plan.stdout

    result, report = instances.run("vip-brevo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (report["plan"]["move"], report["upserted"], report["removed"]) == (8, 8, 8)
    assert [move["from_instance"]["observed"] for move in report["plan"]["moves"]] == [
        {"organization_id": DEFAULT_ORGANIZATION_ID}]
    assert set(instances.brevo.list_contacts(LIST_ID, OTHER_ORGANIZATION)) == emails(8)
    assert set(instances.brevo.list_contacts(LIST_ID)) == set()
    assert instances.run("vip-brevo", report="again.json")[1]["http"]["requests"] == 0


def test_a_brevo_key_switched_to_another_account_moves_the_members_and_the_old_account_is_reported(instances):
    instances.write(rows(6))
    assert instances.cli("export", "vip-brevo").returncode == 0
    instances.env["BREVO_API_KEY"] = OTHER_ACCOUNT_KEY

    result, report = instances.run("vip-brevo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (report["plan"]["move"], report["upserted"]) == (6, 6)
    assert set(instances.brevo.list_contacts(LIST_ID, OTHER_ORGANIZATION)) == emails(6)
    # the old account is reached by no connection now: its list keeps them, and the run says so
    assert set(instances.brevo.list_contacts(LIST_ID)) == emails(6)
    assert report["left_behind"][0]["members"] == 6
    assert f"organization_id {DEFAULT_ORGANIZATION_ID}): connection 'brevo' now reaches another instance" in \
        report["message"]
    assert instances.run("vip-brevo", report="again.json")[1]["plan"]["unchanged"] == 6


def test_a_rotated_brevo_key_on_the_same_account_re_sends_nobody(instances):
    instances.write(rows(9))
    assert instances.cli("export", "vip-brevo").returncode == 0
    before = instances.brevo.stats()
    instances.env["BREVO_API_KEY"] = ROTATED_KEY

    result, report = instances.run("vip-brevo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (report["plan"]["unchanged"], report["plan"]["move"], report["upserted"]) == (9, 0, 0)
    assert report["http"]["requests"] == 1  # which account the new key reaches: the same one
    after = instances.brevo.stats()
    assert (after["imports"], after.get("removed_contacts", 0)) == \
        (before["imports"], before.get("removed_contacts", 0))
    assert instances.run("vip-brevo", report="again.json")[1]["http"]["requests"] == 0  # known since


# -- state from before instances -----------------------------------------------------------------------

def make_state_from_before_instances(project: Instances) -> None:
    """Turn the project's state into what segship wrote before instances: no instance columns nor the
    tables of later migrations, the schema version before them (SQLite 6, PostgreSQL 3)."""
    state = project.state()
    try:
        state.summary()  # folds SQLite's member journal
        state.execute("DROP VIEW segship_sync_log")  # a later migration's (the sync log), over exports
        for table, column in (("targets", "instance"), ("targets", "connection"), ("exports", "instance"),
                              ("exports", "credentials"), ("member_digests", "buckets"),
                              *(("rejects", column) for column in (
                                  "origin", "row_hash", "fingerprint", "kind", "since_run"))):
            state.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        # later migrations' (segship retire, alerts, dropped fields, the warehouse planner, the sync log;
        # the digests' buckets above)
        for table in ("export_destinations", "alerts", "dropped_fields", "member_locations", "sync_log",
                      "sync_log_runs"):
            state.execute(f"DROP TABLE {table}")
        if state.backend == "sqlite":
            state.execute("PRAGMA user_version=6")
        else:
            state.execute("UPDATE schema_version SET version = 3")
    finally:
        state.close()


def test_state_from_before_instances_re_sends_nobody_and_then_knows_where_its_members_are(instances):
    instances.write(rows(7))
    assert instances.cli("export", "vip-braze", "vip-brevo").returncode == 0
    make_state_from_before_instances(instances)
    sent = (len(instances.staging.users()), instances.brevo.stats()["imports"])

    result = instances.cli("export", "vip-braze", "vip-brevo", "--report", "upgraded.json")
    assert result.returncode == 0, result.stdout + result.stderr
    braze, brevo = json.loads((instances.root / "upgraded.json").read_text())["exports"]
    assert (braze["plan"]["unchanged"], braze["plan"]["move"], braze["http"]["requests"]) == (7, 0, 0)
    # Brevo asks once which account its key reaches, then knows
    assert (brevo["plan"]["unchanged"], brevo["plan"]["move"], brevo["http"]["requests"]) == (7, 0, 1)
    assert (len(instances.staging.users()), instances.brevo.stats()["imports"]) == sent

    instances.configure(braze="braze-prod")  # now a move: the targets adopted the instance they were in
    result, report = instances.run("vip-braze")
    assert (report["plan"]["move"], report["removed"]) == (7, 7)
    assert segment_members(instances.braze.users()) == customers(7)
    assert segment_members(instances.staging.users()) == set()


# -- a move across instances stopped part-way ---------------------------------------------------------

def test_a_move_to_another_endpoint_killed_part_way_resumes_and_finishes(instances):
    instances.configure(braze_batch=5)
    instances.write(rows(2000))
    assert instances.cli("export", "vip-braze", timeout=300).returncode == 0
    instances.configure(braze="braze-prod", braze_batch=5)
    instances.braze.set_faults(latency=0.2)
    process = subprocess.Popen(instances.command("export", "vip-braze"), cwd=instances.root, env=instances.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(segment_members(instances.braze.users())) < 60 and time.monotonic() < deadline \
            and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    joined = len(segment_members(instances.braze.users()))
    assert 0 < joined < 2000, "the run should have been killed part-way through the move"

    instances.braze.set_faults(latency=0.0)
    # a Ctrl-C while the old instance's identities are removed ends the run cleanly too
    process = subprocess.Popen(instances.command("export", "vip-braze"), cwd=instances.root, env=instances.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    instances.staging.set_faults(latency=0.2)
    while len(segment_members(instances.staging.users())) == 2000 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 1 and "interrupted" in out, out
    assert 0 < len(segment_members(instances.staging.users())) < 2000, "interrupted part-way through the removal"
    instances.staging.set_faults(latency=0.0)

    resumed, report = instances.run("vip-braze", report="resumed.json", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert segment_members(instances.braze.users()) == customers(2000)
    assert segment_members(instances.staging.users()) == set()
    assert instances.stale_identities("vip-braze") == 0
    after = instances.run("vip-braze", report="after.json")[1]
    assert (after["plan"]["unchanged"], after["http"]["requests"]) == (2000, 0)
