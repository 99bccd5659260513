"""Each backend's schema: older SQLite files migrated in place, a schema from a newer segship refused."""

from __future__ import annotations

import sqlite3

import pytest

from segship.destination import Member
from segship.engine.state import MembersDigest, StateError, TargetInstance, open_state_at
from segship.engine.state.postgres import MIGRATIONS as POSTGRES_MIGRATIONS
from segship.engine.state.postgres import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from segship.engine.state.sql.schema import TABLES, statements
from segship.engine.state.sqlite import MIGRATIONS, SCHEMA_VERSION

from .conftest import keys

#: the schema versions that gave rejects their origin, kind and run (and made dropped_fields)
SQLITE_REJECT_ORIGINS, POSTGRES_REJECT_ORIGINS = 10, 7
#: schema 2 as segship 0.1 wrote it (engine/state.py before the state package)
SCHEMA_2 = MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version=2;"


def test_a_schema_2_state_file_is_migrated_in_place_and_nothing_is_sent_again(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_2)
        db.execute("INSERT INTO exports VALUES ('sync', 'fp', '[\"id\",\"email\"]')")
        db.executemany("INSERT INTO members VALUES ('sync', ?, ?, ?, ?)", [
            ("k1", 7, "11,-12", "k1"), ("k2", 8, "13,14", "b@example.com"), ("k3", 9, None, "k3")])
        db.execute("INSERT INTO members VALUES ('orphan', 'x', 1, NULL, 'x')")  # an export without settings
        db.execute("INSERT INTO rejects VALUES ('sync', 'k9', 'bad email', 't', 't', 2)")
        db.execute("INSERT INTO stale_identities VALUES ('sync', 'k0', 'old@example.com')")
    db.close()
    store = open_state_at(path)
    assert store.schema_version() == SCHEMA_VERSION
    # acknowledged before targets were recorded: in target 1, the first one recorded
    assert store.acknowledged("sync").read_all().to_pylist() == [
        {"key": "k1", "row_hash": 7, "target": 1}, {"key": "k2", "row_hash": 8, "target": 1},
        {"key": "k3", "row_hash": 9, "target": 1}]
    # made by DuckDB's hash(): a plan converts them (text column hashes, as segship 0.1 wrote them)
    assert store.hash_version("sync") == store.hash_version("orphan") == 1
    assert store.stored_hashes("sync").to_pylist() == [
        {"key": "k1", "row_hash": 7, "column_hashes": "11,-12"}, {"key": "k2", "row_hash": 8, "column_hashes": "13,14"},
        {"key": "k3", "row_hash": 9, "column_hashes": None}]
    # the settings are kept: a run with the same settings re-sends nobody
    assert not store.reconcile_settings("sync", "fp", ["id", "email"])
    assert store.details("sync", ["k1", "k2", "k3"]) == {
        "k1": ("11,-12", "k1"), "k2": ("13,14", "b@example.com"), "k3": (None, "k3")}
    assert store.identities_held("sync", ["b@example.com", "k1", "nobody"], 1) == {"b@example.com", "k1"}
    assert store.stale_identities("sync") == {1: [Member("k0", "old@example.com")]}
    assert keys(store, "orphan") == ["x"]
    assert store.rejected_keys("sync") == ["k9"]
    store.close()


def test_a_schema_1_state_file_is_migrated_too(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO members VALUES ('sync', 'k1', 7, NULL, 'a@example.com')")
    db.close()
    store = open_state_at(path)
    # acknowledged before targets were recorded: in target 1, the first one recorded
    assert store.acknowledged("sync").read_all().to_pylist() == [{"key": "k1", "row_hash": 7, "target": 1}]
    assert store.identities_held("sync", ["a@example.com", "b@example.com"], 1) == {"a@example.com"}


def test_a_sqlite_state_from_a_newer_segship_is_refused(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="written by a newer segship"):
        open_state_at(path)


def test_a_postgres_state_from_a_newer_segship_is_refused(postgres_url):
    open_state_at(postgres_url).close()
    store = open_state_at(postgres_url)
    store.execute("UPDATE schema_version SET version = ?", (POSTGRES_SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(StateError, match="written by a newer segship"):
        open_state_at(postgres_url)


def test_a_new_store_is_at_its_backends_latest_schema(store):
    assert store.schema_version() == {"sqlite": SCHEMA_VERSION, "postgresql": POSTGRES_SCHEMA_VERSION}[store.backend]


def test_a_schema_6_state_file_gains_instances_and_its_targets_adopt_the_first_one_a_run_records(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:  # as segship wrote it before destination instances
        db.executescript("".join(MIGRATIONS[:6]) + "PRAGMA user_version=6;")
        db.execute("INSERT INTO exports (id, name, fingerprint, columns, hash_version) "
                   "VALUES (1, 'sync', 'fp', '[]', 2)")
        db.executemany("INSERT INTO targets VALUES (1, ?, ?)", [(1, '{"list_id":3}'), (2, '{"list_id":5}')])
    db.close()
    store = open_state_at(path)
    assert store.target_instances("sync") == {1: TargetInstance(None, None), 2: TargetInstance(None, None)}
    assert store.recorded_instance("sync") is None and not store.settings_changed("sync", "fp", [])
    instance = {"destination": "sendinblue", "observed": {"organization_id": "5a5dbe11000000000000000a"}}
    assert store.target_id("sync", {"list_id": 5}, record=True, instance=instance, connection="brevo") == 2
    assert store.target_instances("sync") == {1: TargetInstance(instance, "brevo"),
                                              2: TargetInstance(instance, "brevo")}
    store.close()


def test_a_digest_recorded_before_buckets_were_kept_is_read_without_them(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:  # as segship wrote it before digests by bucket (schema 12)
        for script in MIGRATIONS[:12]:
            for statement in statements(script):
                db.execute(statement)
        db.execute("PRAGMA user_version=12")
        db.execute("INSERT INTO exports (id, name, fingerprint, columns, hash_version) "
                   "VALUES (1, 'sync', 'fp', '[]', 2)")
        db.execute("INSERT INTO member_digests VALUES (1, 'kind', 3, -7)")
    db.close()
    store = open_state_at(path)
    try:
        assert store.members_digest("sync") == MembersDigest("kind", 3, -7, None)
    finally:
        store.close()


def test_rejects_of_an_earlier_schema_are_the_destinations_since_the_run_that_saw_them_on_both_backends(
        tmp_path, postgres_url):
    """Rejects recorded before origins were kept are retried (a destination's); they are refused since
    the last run that started before they were first seen."""
    earlier = [("sqlite", tmp_path / "state.db", MIGRATIONS[:SQLITE_REJECT_ORIGINS - 1]),
               ("postgresql", postgres_url, POSTGRES_MIGRATIONS[:POSTGRES_REJECT_ORIGINS - 1])]
    for backend, target, migrations in earlier:
        if backend == "sqlite":
            db = sqlite3.connect(target)
            db.executescript("".join(migrations) + f"PRAGMA user_version={len(migrations)};")
            run = db.execute
        else:
            store = open_state_at(target)  # made at the latest schema: dropped, then made as before
            store.execute("DROP VIEW segship_sync_log")  # it reads tables dropped below
            for table in ("schema_version", *TABLES):
                store.execute(f"DROP TABLE {table}")
            store.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for script in migrations:
                for statement in statements(script):
                    store.execute(statement)
            store.execute("INSERT INTO schema_version VALUES (?)", (len(migrations),))
            run = store.execute
        run("INSERT INTO runs (export, started_at, outcome, dry_run) VALUES ('sync', '2026-01-01T00:00:00+00:00', "
            "'rejects', 0)")
        run("INSERT INTO runs (export, started_at, outcome, dry_run) VALUES ('sync', '2026-01-03T00:00:00+00:00', "
            "'rejects', 0)")
        run("INSERT INTO rejects VALUES ('sync', 'k9', 'bad email', '2026-01-02T00:00:00+00:00', "
            "'2026-01-03T00:00:00+00:00', 2)")
        if backend == "sqlite":
            db.commit()
            db.close()
        else:
            store.close()
        migrated = open_state_at(target)
        try:
            first_run = min(row["id"] for row in migrated.runs("sync"))
            assert migrated.refusals("sync").to_pylist() == [
                {"key": "k9", "origin": "destination", "row_hash": None, "fingerprint": None, "since_run": first_run}]
            later = migrated.start_run("sync", dry_run=False)
            migrated.commit_upserts("sync", [], [], [("k9", "bad email")])  # the same reason: not new
            assert migrated.new_rejects("sync", later) == 0
            assert migrated.rejects_by_kind("sync")[0]["since_run"] == first_run
        finally:
            migrated.close()
