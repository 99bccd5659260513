"""The tables both backends hold (their DDL is each backend's: ``sqlite.py``, ``postgres.py``).

- ``exports``: an id per export name, the settings its hashes were made with, the
  version of the hash functions that made them, and the destination instance its last run was
  against with the salted fingerprint of the connection settings that observed it;
- ``targets``: per export id, each target it has had (an id counting from 1, its settings, the
  destination instance it is in and the connection that last reached it);
- ``members``: per export id and key, the acknowledged row hash, column hashes, the
  identity, NULL when it equals the key (Braze: the key is the external id), which keeps
  the largest table small, and the id of the target the member is in;
- ``member_digests``: per export id, the digest of its members (``MembersDigest``, with its
  buckets when it is bucketed: ``engine/buckets.py``), deleted by the first write to them in a
  run (``members.py``);
- ``export_destinations``: per export id, the connection, destination type, settings and
  mapping its last run built its destination from (``RecordedDestination``, ``destinations.py``);
- ``stale_identities`` (with the target to remove each from), ``rejects``, ``dropped_fields``,
  ``runs``, ``in_flight``, ``alerts`` (each export's open conditions), ``member_locations`` (the warehouse
  planner schema keeping an export's members instead of ``members``): by export name (few rows);
- ``sync_log``: per export id and run id, each logged change to a member (``sync_log.py``), read
  through the view ``segship_sync_log`` (``SYNC_LOG_MIGRATION``); ``sync_log_runs``: where each logged
  run's rows start.

A table is declared here once for every concern that goes through all of them: ``state copy``
copies ``TABLES`` (``transfer.py``), ``forget`` deletes an export's rows by ``EXPORT_COLUMNS``
(``administration.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

from segship.engine.state import StateError

#: Columns of each table (and their Arrow types, for ``state copy``), in an order that
#: copies parents first. The backends' DDL matches these types.
TABLES: dict[str, pa.Schema] = {
    "exports": pa.schema([("id", pa.int64()), ("name", pa.string()), ("fingerprint", pa.string()),
                          ("columns", pa.string()), ("hash_version", pa.int32()), ("instance", pa.string()),
                          ("credentials", pa.string())]),
    "targets": pa.schema([("export_id", pa.int64()), ("id", pa.int32()), ("settings", pa.string()),
                          ("instance", pa.string()), ("connection", pa.string())]),
    "members": pa.schema([("export_id", pa.int64()), ("key", pa.string()), ("row_hash", pa.int64()),
                          ("column_hashes", pa.binary()), ("identity", pa.string()), ("target", pa.int32())]),
    "member_digests": pa.schema([("export_id", pa.int64()), ("kind", pa.string()), ("members", pa.int64()),
                                 ("digest", pa.int64()), ("buckets", pa.binary())]),
    "export_destinations": pa.schema([("export_id", pa.int64()), ("connection", pa.string()), ("type", pa.string()),
                                      ("settings", pa.string()), ("mapping", pa.string())]),
    "stale_identities": pa.schema([("export", pa.string()), ("key", pa.string()), ("identity", pa.string()),
                                   ("target", pa.int32())]),
    "runs": pa.schema([("id", pa.int64()), ("export", pa.string()), ("started_at", pa.string()),
                       ("finished_at", pa.string()), ("outcome", pa.string()), ("dry_run", pa.int32()),
                       ("report", pa.string())]),
    "rejects": pa.schema([("export", pa.string()), ("key", pa.string()), ("reason", pa.string()),
                          ("first_seen", pa.string()), ("last_seen", pa.string()), ("attempts", pa.int32()),
                          ("origin", pa.string()), ("row_hash", pa.int64()), ("fingerprint", pa.string()),
                          ("kind", pa.string()), ("since_run", pa.int64())]),
    "dropped_fields": pa.schema([("export", pa.string()), ("key", pa.string()), ("field", pa.string()),
                                 ("reason", pa.string()), ("kind", pa.string()), ("since_run", pa.int64())]),
    "in_flight": pa.schema([("export", pa.string()), ("id", pa.int64()), ("target", pa.int32()),
                            ("members", pa.string())]),
    "alerts": pa.schema([("export", pa.string()), ("event", pa.string()), ("opened_at", pa.string()),
                         ("run_id", pa.int64()), ("message", pa.string()), ("figures", pa.string())]),
    "member_locations": pa.schema([("export", pa.string()), ("source", pa.string()), ("schema_name", pa.string())]),
    "sync_log": pa.schema([("id", pa.int64()), ("export_id", pa.int64()), ("run_id", pa.int64()),
                           ("at", pa.int64()), ("key", pa.string()), ("identity", pa.string()),
                           ("action", pa.int32()), ("target", pa.int32()), ("fields", pa.string()),
                           ("reason", pa.string())]),
    "sync_log_runs": pa.schema([("run_id", pa.int64()), ("export_id", pa.int64()), ("first_id", pa.int64())]),
}
#: Primary keys, by which ``state copy`` reads a table in pages.
TABLE_KEYS: dict[str, tuple[str, ...]] = {"exports": ("id",), "targets": ("export_id", "id"),
                                          "members": ("export_id", "key"), "member_digests": ("export_id",),
                                          "export_destinations": ("export_id",),
                                          "stale_identities": ("export", "target", "identity"), "runs": ("id",),
                                          "rejects": ("export", "key"), "dropped_fields": ("export", "key", "field"),
                                          "in_flight": ("export", "id"), "alerts": ("export", "event"),
                                          "member_locations": ("export",), "sync_log": ("id",),
                                          "sync_log_runs": ("run_id",)}
#: The column that ties a table's rows to an export: ``export`` (its name), or else the export's id;
#: in the order ``forget`` deletes them.
EXPORT_COLUMNS: dict[str, str] = {"members": "export_id", "member_digests": "export_id", "targets": "export_id",
                                  "export_destinations": "export_id", "sync_log": "export_id",
                                  "sync_log_runs": "export_id",
                                  "exports": "id", "stale_identities": "export", "rejects": "export",
                                  "dropped_fields": "export", "runs": "export", "in_flight": "export",
                                  "alerts": "export", "member_locations": "export"}

#: The migration that records destination instances (see engine/instances.py), the same in both
#: backends (SQLite schema 7, PostgreSQL 4): targets recorded before it have none, and adopt the
#: instance of their export's next run.
INSTANCES_MIGRATION = """
    -- JSON, or NULL: recorded before instances
    ALTER TABLE targets ADD COLUMN instance TEXT;
    -- the connection that last reached it
    ALTER TABLE targets ADD COLUMN connection TEXT;
    -- JSON of the instance the export's last run was against
    ALTER TABLE exports ADD COLUMN instance TEXT;
    -- salted HMAC-SHA256 of the connection settings that observed it
    ALTER TABLE exports ADD COLUMN credentials TEXT;
    """

#: The migration that records where a warehouse planner keeps an export's members (engine/warehouse_state.py),
#: the same in both backends (SQLite schema 11, PostgreSQL 8).
MEMBER_LOCATIONS_MIGRATION = """
    CREATE TABLE member_locations (     -- exports whose members a warehouse planner keeps, not members
        export TEXT PRIMARY KEY,
        source TEXT NOT NULL,           -- the warehouse source's name
        schema_name TEXT NOT NULL       -- its planner schema
    )
    """

#: The migration that keeps a members' digest by bucket (engine/buckets.py), the same in both backends
#: but for the type of bytes (SQLite schema 13, PostgreSQL 10). Digests recorded before have none.
MEMBER_DIGEST_BUCKETS_MIGRATION = """
    ALTER TABLE member_digests ADD COLUMN buckets {blob}
    """

#: A migration both backends apply (with their integer type and table options): rejects say who refused
#: them (a mapping's with the row's hash and the mapping's fingerprint: a plan knows in bulk which are
#: still refused as they were), their kind of reason (without the row's values) and the run since
#: which they are refused for it (an existing one: the last run that started before it was first
#: seen); fields left out of acknowledged members' records for their invalid values.
REJECT_ORIGINS_AND_DROPPED_FIELDS = """
    ALTER TABLE rejects ADD COLUMN origin TEXT NOT NULL DEFAULT 'destination';
    ALTER TABLE rejects ADD COLUMN row_hash {integer};
    ALTER TABLE rejects ADD COLUMN fingerprint TEXT;
    ALTER TABLE rejects ADD COLUMN kind TEXT;
    ALTER TABLE rejects ADD COLUMN since_run {integer};
    UPDATE rejects SET since_run = (SELECT max(id) FROM runs WHERE runs.export = rejects.export
                                    AND runs.started_at <= rejects.first_seen);
    CREATE TABLE dropped_fields (
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        field TEXT NOT NULL,            -- the segment column whose value was left out
        reason TEXT NOT NULL,
        kind TEXT NOT NULL,             -- the reason without the row's values
        since_run {integer},
        PRIMARY KEY (export, key, field)
    ){table_options};
    """


#: The migration that makes the member-level sync log (``sync_log.py``), the same in both backends
#: (SQLite schema 12, PostgreSQL 9) but for the id column (``{id}``: SQLite's rowid, the order of
#: writing), the integer type of ids (``{integer}``) and how the view reads a time (``{at}``: the
#: backend's expression of ``l.at``, Unix seconds). No index but the ids': a row is appended at the
#: end whatever its key (an index by key would take a page write per member of a first run in no
#: key order); a run's rows are a range of ids, from where ``sync_log_runs`` notes it starts. The
#: view ``segship_sync_log`` reads it by names (docs/sync-log.md): the export's, the action's
#: (``SYNC_LOG_ACTIONS``), the identity (NULL when not known), the target's settings.
SYNC_LOG_MIGRATION = """
    CREATE TABLE sync_log (
        id {id},
        export_id {integer} NOT NULL,
        run_id {integer} NOT NULL,      -- runs.id
        at {integer} NOT NULL,          -- Unix seconds of the commit
        key TEXT NOT NULL,
        identity TEXT,                  -- NULL: the key, '': not known
        action INTEGER NOT NULL,        -- the place in SYNC_LOG_ACTIONS (0 add, 1 update...)
        target INTEGER,                 -- targets.id (1 takes no byte in SQLite)
        fields TEXT,                    -- comma-joined: an update's changed columns, a dropped field
        reason TEXT                     -- refused, dropped field
    );
    CREATE TABLE sync_log_runs (        -- where each logged run's rows start: every one has an id above first_id
        run_id {integer} PRIMARY KEY,
        export_id {integer} NOT NULL,
        first_id {integer} NOT NULL     -- the log's largest id before the run's first row
    );
    CREATE VIEW segship_sync_log AS
    SELECT l.id, e.name AS export, l.run_id, {at} AS at, l.key,
           CASE WHEN l.identity IS NULL THEN l.key WHEN l.identity = '' THEN NULL ELSE l.identity END AS identity,
           CASE l.action WHEN 0 THEN 'add' WHEN 1 THEN 'update' WHEN 2 THEN 'remove' WHEN 3 THEN 'move'
                         WHEN 4 THEN 'refused' WHEN 5 THEN 'dropped_field' END AS action,
           l.target, t.settings AS target_settings, l.fields, l.reason
    FROM sync_log l
    JOIN exports e ON e.id = l.export_id
    LEFT JOIN targets t ON t.export_id = l.export_id AND t.id = l.target
    """

def migrate(current: int, migrations: Sequence[str], describe: str, apply: Callable[[int], None]) -> None:
    """Apply ``migrations[current:]`` via ``apply(target_version)``; refuse a newer schema."""
    latest = len(migrations)
    if current > latest:
        raise StateError(f"state {describe} was written by a newer segship (schema {current}, this one knows "
                         f"{latest}); upgrade segship")
    if current < latest:
        apply(latest)


def statements(script: str) -> list[str]:
    """The statements of a migration script (no ';' inside our statements)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]
