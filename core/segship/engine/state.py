"""Run state in SQLite (WAL): what each destination acknowledged, runs, and rejects.

Per export and key, ``members`` keeps the hash of the row the destination last
acknowledged, per-column hashes (to send only changed attributes) and the identity
the destination knows the profile by (to remove it after it has left the segment:
for Brevo that is the email, so the state file holds personal data; keep it where
the data it was made from is kept). Nothing is written before the destination
acknowledges it, so a run killed at any moment loses nothing.

Two runs of one export at once are refused with an OS file lock, which the kernel
releases even when a run is killed with -9.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from segship.destination import Member
from segship.engine.hashing import HASH_VERSION

# Each entry migrates from version N-1 to N; applied in order inside one transaction.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE members (
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        row_hash INTEGER NOT NULL,      -- 0: unknown, send the whole row again
        column_hashes TEXT,             -- comma-separated, in the order of exports.columns
        identity TEXT NOT NULL,
        PRIMARY KEY (export, key)
    ) WITHOUT ROWID;
    CREATE TABLE stale_identities (    -- identities to remove that are no member's any more
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        identity TEXT NOT NULL,
        PRIMARY KEY (export, identity)
    ) WITHOUT ROWID;
    CREATE TABLE exports (
        export TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,      -- destination type + settings + mapping the state was made with
        columns TEXT NOT NULL           -- JSON list of source columns hashed, in order
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        export TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        report TEXT
    );
    CREATE INDEX runs_by_export ON runs (export, id);
    CREATE TABLE rejects (
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        reason TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (export, key)
    ) WITHOUT ROWID;
    """,
    # 2: find the members holding an identity (a leaver's email may be a staying member's too)
    """
    CREATE INDEX members_by_identity ON members (export, identity);
    """,
    # 3: which hash function made an export's hashes (segship.engine.hashing.HASH_VERSION); from
    # version 2 on, members.column_hashes holds 8 bytes a column (a BLOB), no longer decimal text
    """
    ALTER TABLE exports ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
    """,
    # 4: where members were sent (a Brevo list, a Braze segment), so a changed target moves them.
    # Target ids count from 1 per export; 1 is the first target recorded, which is where members
    # acknowledged before this migration are.
    """
    CREATE TABLE targets (
        export TEXT NOT NULL,
        id INTEGER NOT NULL,
        settings TEXT NOT NULL,         -- JSON of the destination's target settings
        PRIMARY KEY (export, id)
    ) WITHOUT ROWID;
    ALTER TABLE members ADD COLUMN target INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE stale_identities_by_target (
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        identity TEXT NOT NULL,
        target INTEGER NOT NULL,        -- where to remove the identity from
        PRIMARY KEY (export, target, identity)
    ) WITHOUT ROWID;
    INSERT INTO stale_identities_by_target SELECT export, key, identity, 1 FROM stale_identities;
    DROP TABLE stale_identities;
    ALTER TABLE stale_identities_by_target RENAME TO stale_identities;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StateError(Exception):
    """State can't be used (locked by another run, written by a newer segship, unreadable)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            self.db.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state database {path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(f"state database {self.path} was written by a newer segship "
                             f"(schema {version}, this one knows {SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            for script in MIGRATIONS[version:]:
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def export_lock(self, export: str) -> Iterator[None]:
        """Hold the export's run lock, or raise StateError if another run holds it."""
        lock_dir = self.path.parent / "locks"
        lock_dir.mkdir(exist_ok=True)
        handle = open(lock_dir / f"{export}.lock", "a+")  # noqa: SIM115 - held for the with-block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(f"export {export!r} is already running (lock {handle.name}); "
                                 "two runs of one export at once are refused") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.close()

    # -- what was acknowledged ---------------------------------------------------------------

    def acknowledged(self, export: str) -> pa.Table:
        """(key, row_hash, target) of every member the destination acknowledged, for the bulk diff."""
        keys: list[str] = []
        hashes: list[int] = []
        targets: list[int] = []
        for key, row_hash, target in self.db.execute("SELECT key, row_hash, target FROM members WHERE export = ?",
                                                     (export,)):
            keys.append(key)
            hashes.append(row_hash)
            targets.append(target)
        return pa.table({"key": pa.array(keys, pa.string()), "row_hash": pa.array(hashes, pa.int64()),
                         "target": pa.array(targets, pa.int32())})

    # -- targets -------------------------------------------------------------------------------

    def target_id(self, export: str, target: dict[str, Any], *, record: bool) -> int:
        """The id of the export's target (settings naming a list or segment); a new one gets the next
        id, recorded when ``record``. The first target recorded is 1: where earlier members are."""
        settings = orjson.dumps(target, option=orjson.OPT_SORT_KEYS).decode()
        found = self.db.execute("SELECT id FROM targets WHERE export = ? AND settings = ?",
                                (export, settings)).fetchone()
        if found:
            return found[0]
        new_id = self.db.execute("SELECT coalesce(max(id), 0) + 1 FROM targets WHERE export = ?",
                                 (export,)).fetchone()[0]
        if record:
            with self.transaction() as db:
                db.execute("INSERT INTO targets VALUES (?, ?, ?)", (export, new_id, settings))
        return new_id

    def targets(self, export: str) -> dict[int, dict[str, Any]]:
        """Every target the export has had: id -> its settings."""
        return {target_id: orjson.loads(settings) for target_id, settings in self.db.execute(
            "SELECT id, settings FROM targets WHERE export = ?", (export,))}

    def members_by_target(self, export: str, keys: Sequence[str]) -> dict[int, list[Member]]:
        """The members with the given keys, by the target they were acknowledged in."""
        by_target: dict[int, list[Member]] = {}
        for chunk in chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, identity, target in self.db.execute(
                    f"SELECT key, identity, target FROM members WHERE export = ? AND key IN ({marks}) ORDER BY key",
                    (export, *chunk)):
                by_target.setdefault(target, []).append(Member(key, identity))
        return by_target

    def reconcile_settings(self, export: str, fingerprint: str, columns: Sequence[str],
                           earlier_fingerprint: str | None = None) -> bool:
        """Record the settings a run uses; if they changed, mark every member for a full re-send.

        Done in one transaction before sending, so a run killed afterwards still re-sends
        what it didn't reach. Returns True when the settings changed. ``earlier_fingerprint``
        is the same settings as an older segship fingerprinted them: found, it is replaced.
        """
        recorded = self._recorded_settings(export)
        columns_json = orjson.dumps(list(columns)).decode()
        if recorded == (fingerprint, columns_json):
            return False
        if recorded is not None and recorded == (earlier_fingerprint, columns_json):
            with self.transaction() as db:
                db.execute("UPDATE exports SET fingerprint = ? WHERE export = ?", (fingerprint, export))
            return False
        with self.transaction() as db:
            # no hash is left to convert: every member is marked unknown
            db.execute("INSERT INTO exports (export, fingerprint, columns, hash_version) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (export) DO UPDATE SET fingerprint = excluded.fingerprint, "
                       "columns = excluded.columns, hash_version = excluded.hash_version",
                       (export, fingerprint, columns_json, HASH_VERSION))
            db.execute("UPDATE members SET row_hash = 0, column_hashes = NULL WHERE export = ?", (export,))
        return recorded is not None

    def settings_changed(self, export: str, fingerprint: str, columns: Sequence[str],
                         earlier_fingerprint: str | None = None) -> bool:
        """Whether a run would re-send everyone for changed settings (read only: plan, dry run)."""
        recorded = self._recorded_settings(export)
        columns_json = orjson.dumps(list(columns)).decode()
        return recorded is not None and recorded not in ((fingerprint, columns_json),
                                                         (earlier_fingerprint, columns_json))

    def _recorded_settings(self, export: str) -> tuple[str, str] | None:
        return self.db.execute("SELECT fingerprint, columns FROM exports WHERE export = ?", (export,)).fetchone()

    def has_members(self, export: str) -> bool:
        return self.db.execute("SELECT 1 FROM members WHERE export = ? LIMIT 1", (export,)).fetchone() is not None

    def hash_version(self, export: str) -> int:
        """The version of the hash functions that made the export's hashes (new exports: the current one)."""
        row = self.db.execute("SELECT hash_version FROM exports WHERE export = ?", (export,)).fetchone()
        return HASH_VERSION if row is None else row[0]

    def stored_hashes(self, export: str) -> pa.Table:
        """(key, row_hash, column_hashes) of every member, as stored, to convert them to another version."""
        rows = self.db.execute("SELECT key, row_hash, column_hashes FROM members WHERE export = ?",
                               (export,)).fetchall()
        keys, row_hashes, column_hashes = zip(*rows, strict=True) if rows else ((), (), ())
        return pa.table({"key": pa.array(keys, pa.string()), "row_hash": pa.array(row_hashes, pa.int64()),
                         "column_hashes": pa.array(column_hashes, pa.string())})

    def convert_hashes(self, export: str, converted: pa.Table, version: int) -> None:
        """Replace members' hashes with ``converted`` (key, row_hash, column_hashes) made by ``version``,
        in one transaction with the export's hash version."""
        with self.transaction() as db:
            db.executemany("UPDATE members SET row_hash = ?, column_hashes = ? WHERE export = ? AND key = ?",
                           ((row_hash, column_hashes, export, key) for key, row_hash, column_hashes in zip(
                               *(converted.column(name).to_pylist() for name in ("key", "row_hash",
                                                                                 "column_hashes")), strict=True)))
            db.execute("UPDATE exports SET hash_version = ? WHERE export = ?", (version, export))

    def details(self, export: str, keys: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        """key -> (column_hashes, identity) for the given keys."""
        found: dict[str, tuple[str | None, str]] = {}
        for chunk in chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, column_hashes, identity in self.db.execute(
                    f"SELECT key, column_hashes, identity FROM members WHERE export = ? AND key IN ({marks})",
                    (export, *chunk)):
                found[key] = (column_hashes, identity)
        return found

    def identities_held(self, export: str, identities: Iterable[str], target: int,
                        excluding: Iterable[str] = ()) -> set[str]:
        """Which of ``identities`` a member holds in ``target``, members with a key in ``excluding`` aside.

        A removal must not take out a profile that a staying member still maps to (two
        keys with one email, a swapped email): such identities are forgotten, not removed.
        """
        db = self.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS probe_identities (identity TEXT PRIMARY KEY)")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS probe_keys (key TEXT PRIMARY KEY)")
        db.execute("DELETE FROM probe_identities")
        db.execute("DELETE FROM probe_keys")
        db.executemany("INSERT OR IGNORE INTO probe_identities VALUES (?)", ((i,) for i in identities))
        db.executemany("INSERT OR IGNORE INTO probe_keys VALUES (?)", ((k,) for k in excluding))
        return {row[0] for row in db.execute(
            "SELECT DISTINCT m.identity FROM probe_identities p JOIN members m "
            "ON m.export = ? AND m.identity = p.identity WHERE m.target = ? "
            "AND m.key NOT IN (SELECT key FROM probe_keys)", (export, target))}

    def stale_identities(self, export: str) -> dict[int, list[Member]]:
        """target -> identities to remove from it."""
        by_target: dict[int, list[Member]] = {}
        for key, identity, target in self.db.execute(
                "SELECT key, identity, target FROM stale_identities WHERE export = ? ORDER BY target, key", (export,)):
            by_target.setdefault(target, []).append(Member(key, identity))
        return by_target

    def count_stale_identities(self, export: str) -> int:
        return self.db.execute("SELECT count(*) FROM stale_identities WHERE export = ?", (export,)).fetchone()[0]

    # -- committing what the destination answered ----------------------------------------

    def commit_upserts(self, export: str, acknowledged: Iterable[tuple[str, int, bytes | None, str]],
                       stale: Iterable[tuple[str, str]], rejected: Iterable[tuple[str, str]], *,
                       target: int = 1, moving: bool = False) -> None:
        """One transaction per answered batch: acknowledged rows (now in ``target``), identities they
        replaced there, rejects. When ``moving``, a member acknowledged before in another target
        leaves its identity there to remove (a stale identity of that target)."""
        acknowledged = list(acknowledged)
        with self.transaction() as db:
            if moving:
                db.executemany("INSERT OR IGNORE INTO stale_identities SELECT export, key, identity, target "
                               "FROM members WHERE export = ? AND key = ? AND target <> ?",
                               [(export, row[0], target) for row in acknowledged])
            db.executemany(
                "INSERT INTO members (export, key, row_hash, column_hashes, identity, target) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (export, key) DO UPDATE SET "
                "row_hash = excluded.row_hash, column_hashes = excluded.column_hashes, "
                "identity = excluded.identity, target = excluded.target",
                [(export, key, row_hash, hashes, identity, target)
                 for key, row_hash, hashes, identity in acknowledged])
            db.executemany("INSERT OR IGNORE INTO stale_identities VALUES (?, ?, ?, ?)",
                           [(export, key, identity, target) for key, identity in stale])
            self._settle_rejects(db, export, [row[0] for row in acknowledged], rejected)

    def commit_removals(self, export: str, removed: Iterable[Member], rejected: Iterable[tuple[str, str]],
                        stale: bool, target: int = 1) -> None:
        """Acknowledged removals: leavers leave ``members``; stale identities leave their table."""
        removed = list(removed)
        with self.transaction() as db:
            if stale:
                db.executemany("DELETE FROM stale_identities WHERE export = ? AND target = ? AND identity = ?",
                               [(export, target, member.identity) for member in removed])
            else:
                db.executemany("DELETE FROM members WHERE export = ? AND key = ?",
                               [(export, member.key) for member in removed])
            self._settle_rejects(db, export, [m.key for m in removed] if not stale else [], rejected)

    def _settle_rejects(self, db: sqlite3.Connection, export: str, accepted: Sequence[str],
                        rejected: Iterable[tuple[str, str]]) -> None:
        stamp = now()
        if accepted and db.execute("SELECT 1 FROM rejects WHERE export = ? LIMIT 1", (export,)).fetchone():
            db.executemany("DELETE FROM rejects WHERE export = ? AND key = ?", [(export, key) for key in accepted])
        db.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (export, key) DO UPDATE SET "
            "reason = excluded.reason, last_seen = excluded.last_seen, attempts = attempts + 1",
            [(export, key, reason, stamp, stamp) for key, reason in rejected])

    def forget_rejects(self, export: str, keys: Iterable[str]) -> None:
        """Drop rejects of rows that are no longer in the export (nothing left to retry)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM rejects WHERE export = ? AND key = ?", [(export, key) for key in keys])

    def rejected_keys(self, export: str) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT key FROM rejects WHERE export = ?", (export,))]

    # -- history ---------------------------------------------------------------------------

    def start_run(self, export: str, dry_run: bool) -> int:
        """Record a run; a run still 'running' here was killed, since we hold the export's lock."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET outcome = 'interrupted' WHERE export = ? AND outcome = 'running'",
                       (export,))
            cursor = db.execute("INSERT INTO runs (export, started_at, outcome, dry_run) VALUES (?, ?, 'running', ?)",
                                (export, now(), int(dry_run)))
        return int(cursor.lastrowid)

    def finish_run(self, run_id: int, outcome: str, report: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at = ?, outcome = ?, report = ? WHERE id = ?",
                       (now(), outcome, orjson.dumps(report).decode(), run_id))

    def runs(self, export: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE export = ?", (export,)) if export else ("", ())
        rows = self.db.execute(
            f"SELECT id, export, started_at, finished_at, outcome, dry_run, report FROM runs {where} "
            "ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        return [{"id": r[0], "export": r[1], "started_at": r[2], "finished_at": r[3], "outcome": r[4],
                 "dry_run": bool(r[5]), "report": orjson.loads(r[6]) if r[6] else None} for r in rows]

    def rejects(self, export: str, limit: int | None = None) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT key, reason, first_seen, last_seen, attempts FROM rejects WHERE export = ? "
            "ORDER BY last_seen DESC, key LIMIT ?", (export, limit if limit is not None else -1)).fetchall()
        return [{"key": r[0], "reason": r[1], "first_seen": r[2], "last_seen": r[3], "attempts": r[4]}
                for r in rows]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
