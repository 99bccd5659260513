"""Shared PostgreSQL state, end to end: one run per export across machines, resume anywhere, the
server going away, and ``segship state show / copy / forget``; the real CLI, sandboxes and server."""

from __future__ import annotations

import json
import signal

import pytest

from ..conftest import StateTarget
from .conftest import Project
from .test_export import assert_resumes_to_the_whole_segment, rows, start_slow_export, until_some_are_acknowledged

POSTGRES_STATE = '{url: "${env:SEGSHIP_STATE_URL}"}'


def on_postgres(root, braze, brevo, url: str) -> Project:
    """A project (its own folder, config and data) whose state is the PostgreSQL database at ``url``."""
    root.mkdir(parents=True, exist_ok=True)
    return Project(root, braze, brevo, StateTarget("postgres", POSTGRES_STATE, {"SEGSHIP_STATE_URL": url}))


@pytest.fixture
def machines(tmp_path, braze_sandbox, sendinblue_sandbox, postgres_url) -> tuple[Project, Project]:
    """Two 'machines': two folders, each with its own copy of the config and data, one state URL."""
    return (on_postgres(tmp_path / "machine-a", braze_sandbox, sendinblue_sandbox, postgres_url),
            on_postgres(tmp_path / "machine-b", braze_sandbox, sendinblue_sandbox, postgres_url))


def test_a_second_run_of_an_export_anywhere_is_refused_while_other_exports_run(machines):
    a, b = machines
    process = start_slow_export(a)
    a.braze.set_faults(latency=3.0)  # a's run goes on while b tries
    b.write(rows(3000))
    try:
        refused = b.cli("export", "vip-braze")
        other = b.cli("export", "vip-brevo")  # another export is not blocked
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    assert refused.returncode == 1
    assert "export 'vip-braze' is already running: another run holds its lock" in refused.stdout
    assert other.returncode == 0, other.stdout + other.stderr
    assert len(b.brevo_members()) == 3000


def test_a_run_killed_with_sigkill_frees_its_lock_and_resumes_on_another_machine(machines):
    a, b = machines
    process = start_slow_export(a)
    until_some_are_acknowledged(a)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    acknowledged = a.acknowledged("vip-braze")
    assert 0 < len(acknowledged) < 3000, "the run should have been killed part-way"
    assert acknowledged <= set(a.braze_members())  # state never claims what Braze did not get
    b.configure(braze_batch=5)
    b.write(rows(3000))
    assert_resumes_to_the_whole_segment(b, acknowledged)  # at once: the lock died with the session
    assert b.acknowledged("vip-braze") == {f"C{i:05d}" for i in range(1, 3001)}
    assert "interrupted" in b.cli("runs", "vip-braze").stdout


def test_the_state_server_going_away_mid_run_fails_the_run_cleanly_and_the_next_run_resumes(
        tmp_path, braze_sandbox, sendinblue_sandbox, own_postgres_server):
    url = own_postgres_server.create_database("state")
    project = on_postgres(tmp_path / "project", braze_sandbox, sendinblue_sandbox, url)
    process = start_slow_export(project)
    until_some_are_acknowledged(project)
    own_postgres_server.stop()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    failure = [line for line in stdout.splitlines() if line.startswith("  ")]
    assert len(failure) == 1 and "state (PostgreSQL database 'state_1' on 127.0.0.1)" in failure[0], stdout
    assert "run the export again once the database is back" in failure[0]
    assert "Traceback" not in stderr
    assert own_postgres_server.password not in stdout + stderr
    own_postgres_server.start()
    acknowledged = project.acknowledged("vip-braze")
    assert acknowledged <= set(project.braze_members())  # nothing recorded that Braze did not get
    assert len(acknowledged) < 3000
    assert_resumes_to_the_whole_segment(project, acknowledged)


def test_state_copy_moves_state_to_postgres_and_back_with_nothing_lost(project, postgres_url):
    if project.state_target.backend != "sqlite":
        pytest.skip("starts from the SQLite file")
    project.write(rows(40, C00003={"email": "broken"}))
    assert project.cli("export", "--all").returncode == 3  # members, rejects and runs to copy
    before = json.loads(project.cli("state", "show", "--json").stdout)
    env = {**project.env, "NEW_STATE_URL": postgres_url}

    literal = project.cli("state", "copy", "--to", postgres_url, env=env)
    assert literal.returncode == 2 and "by reference" in literal.stderr
    assert postgres_url not in literal.stdout + literal.stderr
    copied = project.cli("state", "copy", "--to", "${env:NEW_STATE_URL}", env=env)
    assert copied.returncode == 0, copied.stderr
    assert "counts verified" in copied.stdout and postgres_url not in copied.stdout + copied.stderr
    again = project.cli("state", "copy", "--to", "${env:NEW_STATE_URL}", env=env)
    assert again.returncode == 1 and "already holds state" in again.stderr and "--force" in again.stderr

    # the config moves to PostgreSQL: nothing is sent again, and everything is there
    config = (project.root / "segship.yaml").read_text()
    (project.root / "segship.yaml").write_text(config.replace("state: {path: .segship/state.db}",
                                                              'state: {url: "${env:NEW_STATE_URL}"}'))
    moved = json.loads(project.cli("state", "show", "--json", env=env).stdout)
    assert moved["backend"] == "postgresql"
    assert moved["exports"] == before["exports"]
    requests = project.braze.stats()["requests"], project.brevo.stats()["requests"]
    unchanged = project.cli("export", "--all", env=env)
    # Braze took the member without its broken email; Brevo's mapping refused the row, which is still
    # refused as it was, copied with everything else: nothing is sent, and a known reject exits 0
    assert unchanged.returncode == 0, unchanged.stdout
    assert "vip-braze: succeeded (plan +0 ~0 -0 =40)" in unchanged.stdout
    assert "vip-brevo: succeeded (plan +0 ~0 -0 =39 still refused 1)" in unchanged.stdout
    assert (project.braze.stats()["requests"], project.brevo.stats()["requests"]) == requests

    back = project.cli("state", "copy", "--to", "back/state.db", env=env)
    assert back.returncode == 0, back.stderr
    (project.root / "segship.yaml").write_text(config.replace(".segship/state.db", "back/state.db"))
    returned = json.loads(project.cli("state", "show", "--json").stdout)
    assert returned["backend"] == "sqlite"
    assert [(e["export"], e["members"], e["rejects"]) for e in returned["exports"]] == \
        [(e["export"], e["members"], e["rejects"]) for e in moved["exports"]]


def test_state_show_and_forget(project):
    project.write(rows(6))
    assert project.cli("export", "vip-braze").returncode == 0
    shown = project.cli("state", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"state: {'sqlite' if project.state_target.backend == 'sqlite' else 'postgresql'}" in shown.stdout
    assert "vip-braze" in shown.stdout and "succeeded" in shown.stdout
    refused = project.cli("state", "forget", "vip-braze")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    forgot = project.cli("state", "forget", "vip-braze", "--yes")
    assert forgot.returncode == 0 and "6 members" in forgot.stdout
    assert "still in the config" in forgot.stderr
    assert json.loads(project.cli("state", "show", "--json").stdout)["exports"] == []
    assert project.cli("state", "forget", "vip-braze", "--yes").returncode == 1


def test_an_unset_state_url_is_named_and_the_url_never_shows(project):
    if project.state_target.backend != "postgres":
        pytest.skip("state.url only")
    project.write(rows(3))
    unset = project.cli("export", "vip-braze", env={k: v for k, v in project.env.items() if k != "SEGSHIP_STATE_URL"})
    assert unset.returncode == 2 and "environment variable SEGSHIP_STATE_URL is not set" in unset.stderr
    url = project.env["SEGSHIP_STATE_URL"]
    wrong = url.replace("@127.0.0.1", "x@127.0.0.1")  # a wrong password
    failed = project.cli("--log-level", "debug", "export", "vip-braze", "--report", "report.json",
                         env={**project.env, "SEGSHIP_STATE_URL": wrong})
    assert failed.returncode == 1 and "password authentication failed" in failed.stderr
    password = wrong.split(":")[2].split("@")[0]
    assert password not in failed.stdout + failed.stderr
    ok = project.cli("export", "vip-braze", "--report", "report.json")
    assert ok.returncode == 0
    text = ok.stdout + ok.stderr + (project.root / "report.json").read_text() + project.cli("runs").stdout
    assert url.split(":")[2].split("@")[0] not in text
