"""The member-level sync log end to end: runs write it, `segship log` reads it, runs prune it, and an
analyst reads it with SQL (the view segship_sync_log), on both state backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from .conftest import LIST_ID, profile

NEW_LIST = 5


def rows(count: int, **changes: dict) -> list[dict]:
    return [profile(i, **changes.get(f"C{i:05d}", {})) for i in range(1, count + 1)]


def run_id(project, export: str) -> tuple[int, int]:
    """Exports ``export``; its run's id and exit code."""
    result = project.cli("export", export, "--report", "report.json")
    report = json.loads((project.root / "report.json").read_text())["exports"][0]
    assert result.returncode in (0, 3), result.stdout + result.stderr
    return report["run_id"], result.returncode


def logged(project, export: str, *options: str, pii: bool = False) -> dict:
    result = project.cli(*(["--log-pii"] if pii else []), "log", export, *options, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def changes(found: dict) -> list[tuple]:
    return [(c["key"], c["action"], c["fields"]) for c in found["changes"]]


def test_a_members_history_by_key_identity_and_run(project):
    project.write(rows(6))
    first, _ = run_id(project, "vip-brevo")
    project.write(rows(6, C00002={"first_name": "Ann"}, C00003={"lifetime_value": 5},
                       C00005={"email": "not-an-email"}))
    second, code = run_id(project, "vip-brevo")
    assert code == 3  # the bad email is refused

    by_run = logged(project, "vip-brevo", "--run", str(second))
    assert sorted(changes(by_run)) == [("C00002", "update", "first_name"), ("C00003", "remove", None),
                                       ("C00005", "refused", None)]
    refused = next(c for c in by_run["changes"] if c["action"] == "refused")
    assert "email" in refused["reason"].lower() and refused["run_id"] == second
    assert by_run["total"] == 3

    history = logged(project, "vip-brevo", "--key", "C00002")
    assert [(c["run_id"], c["action"], c["fields"]) for c in history["changes"]] == [
        (second, "update", "first_name"), (first, "add", None)]  # newest first
    assert history["changes"][0]["target_settings"] == {"list_id": LIST_ID}

    # an identity's history, masked as log lines are unless --log-pii
    masked = logged(project, "vip-brevo", "--identity", "user3@example.com")
    assert [(c["key"], c["action"], c["identity"]) for c in masked["changes"]] == [
        ("C00003", "remove", "u***@***"), ("C00003", "add", "u***@***")]
    shown = logged(project, "vip-brevo", "--identity", "user3@example.com", pii=True)
    assert {c["identity"] for c in shown["changes"]} == {"user3@example.com"}
    assert "user3@example.com" not in project.cli("log", "vip-brevo", "--identity", "user3@example.com").stdout

    # an unchanged run writes nothing
    project.write(rows(6, C00002={"first_name": "Ann"}, C00003={"lifetime_value": 5}))
    run_id(project, "vip-brevo")  # C00005's email as it was
    total = logged(project, "vip-brevo")["total"]
    unchanged, _ = run_id(project, "vip-brevo")
    assert logged(project, "vip-brevo")["total"] == total
    assert logged(project, "vip-brevo", "--run", str(unchanged))["changes"] == []

    # a move: every member joins the new list, and its identity leaves the old one
    project.configure(list_id=NEW_LIST)
    moved, _ = run_id(project, "vip-brevo")
    move = logged(project, "vip-brevo", "--run", str(moved), "--limit", "100")
    members = {f"C{i:05d}" for i in (1, 2, 4, 5, 6)}
    assert {c["key"] for c in move["changes"] if c["action"] == "move"} == members
    assert {c["target_settings"]["list_id"] for c in move["changes"] if c["action"] == "move"} == {NEW_LIST}
    left = [c for c in move["changes"] if c["action"] == "remove"]
    assert {c["key"] for c in left} == members and {c["target_settings"]["list_id"] for c in left} == {LIST_ID}
    assert all(c["reason"].startswith("an earlier identity") for c in left)

    text = project.cli("log", "vip-brevo", "--limit", "2")
    assert text.returncode == 0 and f"showing 2 of {move['total'] + total} change(s)" in text.stdout


def test_a_destination_refusal_is_logged_with_its_reason(project):
    project.write(rows(5))
    project.braze.set_faults(refuse_external_ids=["C00003"])
    run, code = run_id(project, "vip-braze")
    assert code == 3
    found = logged(project, "vip-braze", "--key", "C00003")
    assert [(c["run_id"], c["action"], c["identity"]) for c in found["changes"]] == [(run, "refused", "C00003")]
    assert "refuse" in found["changes"][0]["reason"]
    assert sorted(changes(logged(project, "vip-braze", "--run", str(run)))) == [
        ("C00001", "add", None), ("C00002", "add", None), ("C00003", "refused", None), ("C00004", "add", None),
        ("C00005", "add", None)]


def test_a_dropped_field_is_logged_with_the_member_sent(project):
    project.write(rows(3, C00002={"phone": "n/a"}))
    run, code = run_id(project, "vip-brevo")
    assert code == 0  # the contact is sent without its phone
    found = logged(project, "vip-brevo", "--key", "C00002", pii=True)
    assert sorted((c["run_id"], c["action"], c["fields"]) for c in found["changes"]) == [
        (run, "add", None), (run, "dropped_field", "phone")]
    dropped = next(c for c in found["changes"] if c["action"] == "dropped_field")
    assert "n/a" in dropped["reason"] and dropped["identity"] == "user2@example.com"


def test_usage_errors_exit_2(project):
    project.write(rows(2))
    assert project.cli("log", "nope").returncode == 2
    both = project.cli("log", "vip-braze", "--key", "C00001", "--run", "1")
    assert both.returncode == 2 and "at most one of" in both.stderr


def test_runs_prune_the_log_past_its_retention_and_0_days_keeps_none(project):
    project.write(rows(3))
    old, _ = run_id(project, "vip-braze")
    state = project.state()
    try:  # as if it had run 31 days ago
        state.execute("UPDATE runs SET started_at = ? WHERE id = ?",
                      ((datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="seconds"), old))
    finally:
        state.close()
    project.write(rows(3, C00001={"last_name": "Smith"}))
    recent, _ = run_id(project, "vip-braze")
    assert [(c["run_id"], c["key"], c["action"]) for c in logged(project, "vip-braze")["changes"]] == [
        (recent, "C00001", "update")]  # the old run's adds went

    config = project.root / "segship.yaml"
    config.write_text(config.read_text() + "sync_log: {retention_days: 0}\n")
    project.write(rows(3, C00001={"last_name": "Jones"}))
    run_id(project, "vip-braze")
    assert logged(project, "vip-braze")["total"] == 0  # turned off: nothing written, the rest deleted


def test_an_analyst_reads_the_view_with_sql(project):
    """The view is the stable interface: plain SQL, names rather than codes."""
    project.write(rows(2))
    first, _ = run_id(project, "vip-brevo")
    project.write(rows(2, C00002={"last_name": "Lee"}))
    second, _ = run_id(project, "vip-brevo")
    query = ("SELECT export, run_id, key, identity, action, fields, reason, target_settings FROM segship_sync_log "
             "WHERE export = 'vip-brevo' ORDER BY id")
    if project.state_target.env:  # PostgreSQL: as an analyst's client would, with its own connection
        import adbc_driver_postgresql.dbapi

        with adbc_driver_postgresql.dbapi.connect(project.state_target.env["SEGSHIP_STATE_URL"]) as db, \
                db.cursor() as cursor:
            cursor.execute("SELECT extract(epoch FROM at) > 0 FROM segship.segship_sync_log")
            assert {row[0] for row in cursor.fetchall()} == {True}  # a timestamp
            cursor.execute(query.replace("FROM segship_sync_log", "FROM segship.segship_sync_log"))
            found = cursor.fetchall()
    else:
        import sqlite3

        with sqlite3.connect(project.root / ".segship" / "state.db") as db:
            found = db.execute(query).fetchall()
        db.close()
    settings = {"list_id": LIST_ID}  # JSON text
    assert [(*row[:7], json.loads(row[7])) for row in found] == [
        ("vip-brevo", first, "C00001", "user1@example.com", "add", None, None, settings),
        ("vip-brevo", first, "C00002", "user2@example.com", "add", None, None, settings),
        ("vip-brevo", second, "C00002", "user2@example.com", "update", "last_name", None, settings)]
