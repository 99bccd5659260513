"""The warehouse planner's own promises, end to end (the real CLI, a real PostgreSQL, the Braze sandbox):
switching planners re-sends nobody, a kill -9 or a lost warehouse connection while acknowledgements
are written loses nothing, a role without the grants is told which grant it lacks, and a member's row
digest tells an unchanged row without ever hiding a change."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import adbc_driver_postgresql.dbapi as postgresql
import pytest

from ..warehouse_digest import recorded_and_summed
from .conftest import WAREHOUSE_SOURCE
from .test_export import assert_resumes_to_the_whole_segment, rows, start_slow_export
from .test_retire import delete_from_config

pytestmark = pytest.mark.parametrize("state_target", ["warehouse"], indirect=True)
UPSERT = "INSERT INTO \"segship\".segship_members%"
#: The same source with the local planner: its rows stream out of PostgreSQL and are diffed by segship.
LOCAL_SOURCE = '{type: postgres, url: "${env:WAREHOUSE_URL}"}'


def sql(url: str, statement: str, *, autocommit: bool = True) -> list[tuple]:
    with postgresql.connect(url, autocommit=autocommit) as connection, connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


def plan_changes(project) -> dict:
    result = project.cli("plan", "vip-braze", "--format", "json")
    assert result.returncode == 0, result.stderr
    [plan] = json.loads(result.stdout)
    return {action: plan[action] for action in ("add", "update", "remove", "unchanged")}


def planner(project, on: bool) -> None:
    config = project.root / "segship.yaml"
    text = config.read_text()
    config.write_text(text.replace(LOCAL_SOURCE, WAREHOUSE_SOURCE) if on else text.replace(WAREHOUSE_SOURCE, LOCAL_SOURCE))


def filter_segment(project, where: str) -> None:
    """Give the segment's query another WHERE clause (and whatever follows it)."""
    config = project.root / "segship.yaml"
    config.write_text(config.read_text().replace("WHERE lifetime_value > 100", where))


def test_switching_planners_either_way_re_sends_nobody_and_moves_the_member_state(project):
    project.write(rows(40))
    assert project.cli("export", "vip-braze").returncode == 0
    requests = project.braze.stats()["requests"]
    local_members = lambda: set(project.state().acknowledged("vip-braze").read_all().column("key").to_pylist())  # noqa: E731

    planner(project, on=False)  # the local planner reads the same table: the member state comes home
    assert plan_changes(project) == {"add": 0, "update": 0, "remove": 0, "unchanged": 40}
    assert project.cli("export", "vip-braze").returncode == 0
    assert project.braze.stats()["requests"] == requests
    assert len(local_members()) == 40
    [shown] = json.loads(project.cli("state", "show", "vip-braze", "--json").stdout)["exports"]
    assert shown["members"] == 40 and "members_location" not in shown
    assert sql(project.state_target.warehouse, "SELECT count(*) FROM segship.segship_members") == [(0,)]

    planner(project, on=True)
    assert plan_changes(project) == {"add": 0, "update": 0, "remove": 0, "unchanged": 40}
    assert project.cli("export", "vip-braze").returncode == 0
    assert project.braze.stats()["requests"] == requests
    assert local_members() == set()
    assert project.acknowledged("vip-braze") == {f"C{i:05d}" for i in range(1, 41)}
    [shown] = json.loads(project.cli("state", "show", "vip-braze", "--json").stdout)["exports"]
    assert (shown["members"], shown["members_location"]) == (None, {"source": "crm", "schema": "segship"})

    project.write(rows(40, C00003={"first_name": "Changed"}))
    assert plan_changes(project) == {"add": 0, "update": 1, "remove": 0, "unchanged": 39}


def blocked_upserts(url: str) -> list[int]:
    """Backends waiting to write acknowledged members."""
    return [row[0] for row in sql(url, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       f"AND query LIKE '{UPSERT}'")]


def hold_members_table(url: str):
    """A transaction of the test's that locks the members table, so that acknowledgements wait."""
    connection = postgresql.connect(url, autocommit=False)
    cursor = connection.cursor()
    cursor.execute("LOCK TABLE segship.segship_members IN EXCLUSIVE MODE")
    return connection, cursor


def until_an_upsert_waits(url: str, process: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 60
    while not (waiting := blocked_upserts(url)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert waiting, "no acknowledgement reached the warehouse"
    return waiting


@pytest.mark.parametrize("cut", ["kill -9", "connection terminated"])
def test_a_run_cut_while_it_acknowledges_in_the_warehouse_resumes_losing_no_one(project, cut):
    url = project.state_target.warehouse
    project.write(rows(10))
    assert project.cli("export", "vip-braze").returncode == 0  # the schema and table exist
    connection, cursor = hold_members_table(url)
    try:
        process = start_slow_export(project)
        waiting = until_an_upsert_waits(url, process)
        if cut == "kill -9":
            process.send_signal(signal.SIGKILL)
        else:
            sql(url, f"SELECT pg_terminate_backend({waiting[0]})")
    finally:
        connection.rollback()
        cursor.close()
        connection.close()
    stdout, _ = process.communicate(timeout=60)
    acknowledged = project.acknowledged("vip-braze")
    assert acknowledged <= set(project.braze_members())  # the warehouse never claims what Braze did not get
    if sql(url, "SELECT 1 FROM segship.segship_member_digests"):  # (the write it was in rolled back)
        members_digest(url)
    if cut != "kill -9":
        assert process.returncode == 1
        assert "planner schema 'segship' of source 'crm': acknowledging failed" in stdout
    # Braze got more than was acknowledged (the group waiting to be written, and those in flight):
    # they were in flight, so they are sent again; nobody is lost
    resumed = project.cli("export", "vip-braze", "--report", "resumed.json")
    assert resumed.returncode == 0, resumed.stderr
    assert set(project.braze_members()) == {f"C{i:05d}" for i in range(1, 3001)}
    assert project.acknowledged("vip-braze") == {f"C{i:05d}" for i in range(1, 3001)}
    assert members_digest(url)[0] == 3000
    assert plan_changes(project) == {"add": 0, "update": 0, "remove": 0, "unchanged": 3000}


def test_a_run_killed_mid_acknowledgement_resumes_as_a_local_run_does(project):
    process = start_slow_export(project)
    deadline = time.monotonic() + 30
    while not project.acknowledged("vip-braze") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    acknowledged = project.acknowledged("vip-braze")
    assert 0 < len(acknowledged) < 3000, "the run should have been killed part-way"
    # the members acknowledged got their row's digest with them (the run's end never came)
    assert None not in {digest for key, digest in digests(project).items() if key in acknowledged}
    assert_resumes_to_the_whole_segment(project, acknowledged)


def test_a_role_without_the_grants_is_told_which_grant_it_lacks(project, postgres_server):
    url = project.state_target.warehouse
    database = url.rsplit("/", 1)[1]
    role = f"planner_{database}"  # roles are the server's: one of this test's own
    project.write(rows(5))
    for statement in (f"CREATE ROLE {role} LOGIN PASSWORD 'planner-pass-1'", f"GRANT SELECT ON crm TO {role}",
                      f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC'):
        sql(url, statement)
    project.env["WAREHOUSE_URL"] = f"postgresql://{role}:planner-pass-1@127.0.0.1:{postgres_server.port}/{database}"

    refused = project.cli("export", "vip-braze")
    assert refused.returncode == 1
    assert f'GRANT CREATE ON DATABASE "{database}" TO "{role}"' in refused.stdout
    assert "planner-pass-1" not in refused.stderr + refused.stdout

    sql(url, "CREATE SCHEMA segship")
    sql(url, f"GRANT USAGE ON SCHEMA segship TO {role}")
    refused = project.cli("export", "vip-braze")
    assert refused.returncode == 1
    assert "lacks CREATE on the planner schema 'segship'" in refused.stdout
    assert f'GRANT USAGE, CREATE ON SCHEMA "segship" TO "{role}"' in refused.stdout
    assert project.braze.stats().get("requests", 0) == 0  # refused before anything was sent

    sql(url, f"GRANT CREATE ON SCHEMA segship TO {role}")
    sql(url, f"REVOKE SELECT ON crm FROM {role}")
    refused = project.cli("export", "vip-braze")
    assert refused.returncode == 1
    assert "permission denied for table crm" in refused.stdout
    assert "(GRANT SELECT ON TABLE crm TO the source's role)" in refused.stdout

    sql(url, f"GRANT SELECT ON crm TO {role}")
    granted = project.cli("export", "vip-braze")
    assert granted.returncode == 0, granted.stdout
    assert set(project.braze_members()) == {f"C{i:05d}" for i in range(1, 6)}


def test_retiring_a_planned_export_removes_its_members_and_empties_the_schema(project):
    project.write(rows(6))
    assert project.cli("export", "vip-braze").returncode == 0
    delete_from_config(project, "vip-braze")
    assert "6 member" in project.cli("retire", "vip-braze", "--dry-run").stdout  # read in the schema
    retired = project.cli("retire", "vip-braze")
    assert retired.returncode == 0, retired.stdout
    assert project.braze_members() == {}
    assert project.acknowledged("vip-braze") == set()


def digests(project) -> dict[str, int | None]:
    return dict(sql(project.state_target.warehouse, "SELECT key, row_digest FROM segship.segship_members"))


def test_a_member_keeps_its_rows_digest_and_a_changed_row_is_told_by_its_hashes(project):
    project.write(rows(20))
    assert project.cli("export", "vip-braze").returncode == 0
    first = digests(project)
    assert len(first) == 20 and None not in first.values()  # written with the acknowledgements

    project.write(rows(20, C00004={"first_name": "Changed"}))
    assert plan_changes(project) == {"add": 0, "update": 1, "remove": 0, "unchanged": 19}
    assert project.cli("export", "vip-braze").returncode == 0
    assert project.braze.user("C00004")["first_name"] == "Changed"
    second = digests(project)
    assert second["C00004"] not in (None, first["C00004"])
    assert {key: digest for key, digest in second.items() if key != "C00004"} == {
        key: digest for key, digest in first.items() if key != "C00004"}


def test_digests_not_of_their_rows_cost_hashing_and_send_no_one(project):
    """Digests unknown (a run killed before it recorded them) or of no row of the member's (another
    PostgreSQL's hashing): the rows are hashed, found unchanged, and their digests recorded. Either
    way the members' digest is not what the segment's rows sum to (a kill's first write deleted it;
    another hashing mixes them otherwise): here it is deleted as a kill would."""
    url = project.state_target.warehouse
    project.write(rows(12))
    assert project.cli("export", "vip-braze").returncode == 0
    recorded, requests = digests(project), project.braze.stats()["requests"]
    sql(url, "UPDATE segship.segship_members SET row_digest = CASE WHEN key < 'C00006' THEN NULL ELSE 7 END")
    sql(url, "DELETE FROM segship.segship_member_digests")

    assert plan_changes(project) == {"add": 0, "update": 0, "remove": 0, "unchanged": 12}
    assert digests(project)["C00009"] == 7  # a plan writes nothing
    assert project.cli("export", "vip-braze").returncode == 0
    assert project.braze.stats()["requests"] == requests
    assert digests(project) == recorded


def test_a_members_table_from_before_digests_gets_them_without_a_re_send(project):
    url = project.state_target.warehouse
    project.write(rows(8))
    assert project.cli("export", "vip-braze").returncode == 0
    recorded, requests = digests(project), project.braze.stats()["requests"]
    sql(url, "ALTER TABLE segship.segship_members DROP COLUMN row_digest")

    assert plan_changes(project) == {"add": 0, "update": 0, "remove": 0, "unchanged": 8}  # the table as it is
    assert project.cli("export", "vip-braze").returncode == 0  # the run adds the column
    assert project.braze.stats()["requests"] == requests
    assert digests(project) == recorded
    project.write(rows(8, C00002={"first_name": "Changed"}))
    assert plan_changes(project) == {"add": 0, "update": 1, "remove": 0, "unchanged": 7}


def members_tuples_read(url: str) -> int:
    """Rows of the members table PostgreSQL has read so far (after the CLI's sessions ended: a backend
    reports its table statistics as it exits)."""
    deadline = time.monotonic() + 10
    while sql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")[0][0]:
        assert time.monotonic() < deadline, "the CLI's sessions did not end"
        time.sleep(0.05)
    [(read,)] = sql(url, "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables "
                         "WHERE schemaname = 'segship' AND relname = 'segship_members'")
    return int(read)


def members_digest(url: str) -> tuple[int, int]:
    """The recorded members' digest (members, digest), checked to be the members' as they are."""
    recorded, summed = recorded_and_summed(url, "vip-braze")
    assert recorded == summed
    return recorded[1:]


def test_an_unchanged_segment_is_told_by_the_members_digest_without_reading_the_members(project):
    url = project.state_target.warehouse
    project.write(rows(50))
    assert project.cli("export", "vip-braze").returncode == 0
    first = members_digest(url)
    assert first[0] == 50
    requests, read = project.braze.stats()["requests"], members_tuples_read(url)

    assert plan_changes(project) == {"add": 0, "update": 0, "remove": 0, "unchanged": 50}
    assert project.cli("export", "vip-braze").returncode == 0

    assert project.braze.stats()["requests"] == requests
    # one member each, to know there are some; classifying would read all 50 (and does, below)
    assert members_tuples_read(url) - read <= 2
    assert members_digest(url) == first

    project.write(rows(50, C00003={"first_name": "Changed"}))
    read = members_tuples_read(url)
    assert plan_changes(project) == {"add": 0, "update": 1, "remove": 0, "unchanged": 49}
    assert members_tuples_read(url) - read >= 50
    assert project.cli("export", "vip-braze").returncode == 0
    assert project.braze.user("C00003")["first_name"] == "Changed"
    assert members_digest(url)[1] != first[1]  # recorded again, of the members as the run left them
    assert plan_changes(project) == {"add": 0, "update": 0, "remove": 0, "unchanged": 50}


def test_a_failing_statement_is_told_without_the_statement_the_driver_quotes(project):
    """The warehouse's message, not the planner's statement (which may hold rows' values, and runs long)."""
    filter_segment(project, "WHERE 1 / (lifetime_value - lifetime_value) = 0")
    project.write(rows(3))
    result = project.cli("export", "vip-braze")
    assert result.returncode == 1
    assert "planner schema 'segship' of source 'crm': planning failed" in result.stdout
    assert "division by zero" in result.stdout and "SQLSTATE: 22012" in result.stdout
    assert "Query was" not in result.stdout and "hash_record_extended" not in result.stdout


def test_a_segment_ending_in_a_comment_and_a_semicolon_is_planned_in_the_warehouse(project):
    filter_segment(project, "WHERE lifetime_value > 100 -- big spenders;")
    project.write(rows(5))
    result = project.cli("export", "vip-braze")
    assert result.returncode == 0, result.stdout + result.stderr
    assert plan_changes(project)["unchanged"] == len(project.braze.users()) > 0
