"""The sync log: each change a run made to a member, by export id and run id (see ``SyncLogStore``).

Rows are appended by the commits, inside their transaction (``_log``, called by members.py), in
one statement a commit with the export, run, target and time written into it and the rest bound
as columns: nothing per member but its key, identity (none where it is the key), action code and,
for the few that have them, fields and reason. The table has no index but its ids' (SQLite: the
rowid), so a first run's log is appended as cheaply as a journal, whatever its keys' order: an
index by (export, run) would cost each logged member a b-tree insert of its own. Instead
``sync_log_runs`` notes, once a run, the log's largest id before the run's first row: each row
of the run has a larger id (ids only grow, and a run's rows are allocated after the note), and
each has an id no larger than the note of its export's next logged run (runs of an export follow
one another under its lock). A run's rows, and the rows of the runs a prune drops, are a range
of ids; a member's or an identity's history is a scan of the export's log.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from segship.engine.state import SYNC_LOG_ACTIONS, LoggedChanges, SyncLogStore, chunks
from segship.engine.state.sql.caches import CommittedIds
from segship.engine.state.sql.connection import on_state_thread
from segship.engine.state.sql.exports import SqlExports

ADD, MOVE = SYNC_LOG_ACTIONS.index("add"), SYNC_LOG_ACTIONS.index("move")
#: A commit's changes into the log: export, run, time and target written in, the rest bound.
INSERT_LOG = ("INSERT INTO sync_log (export_id, run_id, at, key, identity, action, target, fields, reason) "
              "VALUES ({export_id}, {run_id}, {at}, ?, ?, ?, {target}, ?, ?)")
SYNC_LOG_SELECT = "SELECT id, run_id, at, key, identity, action, target, fields, reason FROM sync_log"


class LoggedRuns(CommittedIds):
    """Runs whose start ``sync_log_runs`` notes, as this store noted them (noted again, nothing is
    written: its note stays)."""


class SqlSyncLog(SqlExports, SyncLogStore):
    def __init__(self) -> None:
        super().__init__()
        self.logged_runs = self.cached(LoggedRuns())

    def _log(self, export_id: int, log: LoggedChanges, target: int, moving: bool = False) -> None:
        """Write a commit's changes, inside its transaction; when ``moving``, before its members are
        written (an ``add`` of a member still in another target is a ``move``)."""
        changes = log.changes
        if not len(changes):
            return
        run_id = int(log.run_id)
        if run_id not in self.logged_runs.done and run_id not in self.logged_runs.pending:
            # (WHERE true: SQLite reads an upsert's ON after a SELECT's FROM as a join's without it)
            self.execute("INSERT INTO sync_log_runs SELECT ?, ?, coalesce(max(id), 0) FROM sync_log WHERE true "
                         "ON CONFLICT (run_id) DO NOTHING", (run_id, export_id))
            self.logged_runs.pending.add(run_id)
        key, identity, action, fields, reason = changes.columns
        if moving:
            action = self._moves(export_id, target, key, action)
        self.many_columns(INSERT_LOG.format(export_id=int(export_id), run_id=run_id, at=int(time.time()),
                                            target=int(target)),
                          [key, identity, action.cast(pa.int32()), fields, reason])

    def _moves(self, export_id: int, target: int, keys: pa.Array, actions: pa.Array) -> pa.Array:
        """``actions`` with each ``add`` of a key that is a member of another target than ``target`` as a ``move``."""
        added = keys.filter(pc.equal(actions, ADD)).to_pylist()
        moved: list[str] = []
        for chunk in chunks(added, 500):
            moved += [row[0] for row in self.rows(
                f"SELECT key FROM members WHERE export_id = ? AND target <> ? AND key IN ({','.join('?' * len(chunk))})",
                (export_id, target, *chunk))]
        if not moved:
            return actions
        is_move = pc.and_(pc.equal(actions, ADD), pc.is_in(keys, value_set=pa.array(moved, pa.string())))
        return pc.if_else(is_move, pa.scalar(MOVE, actions.type), actions)

    @on_state_thread
    def log_changes(self, export: str, log: LoggedChanges, target: int = 1) -> None:
        with self.transaction():
            self._log(self.export_id(export, create=True), log, target)

    @on_state_thread
    def prune_sync_log(self, export: str, retention_days: int, now: datetime | None = None) -> int:
        export_id = self.export_id(export)
        if export_id is None:
            return 0
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=retention_days)).isoformat(timespec="seconds")
        # runs start in the order of their ids: the first one to keep is the first that started since
        # the cutoff (0 days, a log turned off: none); the rows of the logged runs before it go
        first_kept = self.one("SELECT min(id) FROM runs WHERE export = ? AND started_at >= ?",
                              (export, cutoff))[0] if retention_days else None
        first_kept = int(first_kept) if first_kept is not None else 2**63 - 1
        dropped = self.one("SELECT min(first_id) FROM sync_log_runs WHERE export_id = ? AND run_id < ?",
                           (export_id, first_kept))[0]
        if dropped is None:
            return 0  # nothing old: the usual case, one lookup
        where, params = self._run_rows(export_id, int(dropped), first_kept)
        with self.transaction():
            gone = int(self.one(f"SELECT count(*) FROM sync_log WHERE {where}", params)[0])  # noqa: S608
            self.execute(f"DELETE FROM sync_log WHERE {where}", params)  # noqa: S608 - our own SQL
            self.execute("DELETE FROM sync_log_runs WHERE export_id = ? AND run_id < ?", (export_id, first_kept))
        return gone

    def _run_rows(self, export_id: int, first_id: int, before_run: int) -> tuple[str, list[Any]]:
        """The condition on ``sync_log`` of the export's rows from its logged run that starts after
        ``first_id`` to the last one before run ``before_run``: a range of ids (see above)."""
        next_first = self.one("SELECT min(first_id) FROM sync_log_runs WHERE export_id = ? AND run_id >= ?",
                              (export_id, before_run))[0]
        if next_first is None:
            return "id > ? AND export_id = ?", [first_id, export_id]
        return "id > ? AND id <= ? AND export_id = ?", [first_id, int(next_first), export_id]

    def sync_log(self, export: str, *, key: str | None = None, identity: str | None = None,
                 run_id: int | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        export_id = self.export_id(export)
        if export_id is None:
            return [], 0
        where, params = "export_id = ?", [export_id]
        if run_id is not None:
            started = self.one("SELECT first_id FROM sync_log_runs WHERE run_id = ? AND export_id = ?",
                               (run_id, export_id))
            if started is None:
                return [], 0
            where, params = self._run_rows(export_id, int(started[0]), run_id + 1)
            where, params = where + " AND run_id = ?", [*params, run_id]
        if key is not None:
            where, params = where + " AND key = ?", [*params, key]
        if identity is not None:
            where += " AND (identity = ? OR (identity IS NULL AND key = ?))"
            params += [identity, identity]
        total = int(self.one(f"SELECT count(*) FROM sync_log WHERE {where}", params)[0])  # noqa: S608
        rows = self.rows(f"{SYNC_LOG_SELECT} WHERE {where} ORDER BY id DESC LIMIT ?", [*params, limit])  # noqa: S608
        targets = self.targets(export) if rows else {}
        return [_change(row, targets) for row in rows], total


def _change(row: tuple, targets: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A row as the view reads it (docs/sync-log.md): action by name, identity NULL when not known."""
    id_, run_id, at, key, identity, action, target, fields, reason = row
    return {"id": int(id_), "run_id": int(run_id),
            "at": datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "key": key,
            "identity": key if identity is None else identity or None, "action": SYNC_LOG_ACTIONS[int(action)],
            "target": int(target) if target is not None else None,
            "target_settings": targets.get(int(target)) if target is not None else None,
            "fields": fields, "reason": reason}
