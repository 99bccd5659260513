"""Runs: each run of an export, its outcome and report (the run lock is each backend's)."""

from __future__ import annotations

from typing import Any

import orjson

from segship.engine.report import DELIVERED_OUTCOMES
from segship.engine.state import RunStore, now
from segship.engine.state.sql.connection import SqlConnection, on_state_thread


class SqlRuns(SqlConnection, RunStore):
    @on_state_thread
    def start_run(self, export: str, dry_run: bool) -> int:
        # under the export's lock now: every concern forgets what it cached of the export (another
        # machine may have run it)
        for cache in self.caches:
            cache.run_started(export)
        with self.transaction():
            self.execute("UPDATE runs SET outcome = 'interrupted' WHERE export = ? AND outcome = 'running'",
                         (export,))
            row = self.one("INSERT INTO runs (export, started_at, outcome, dry_run) VALUES (?, ?, 'running', ?) "
                           "RETURNING id", (export, now(), int(dry_run)))
        return int(row[0])

    @on_state_thread
    def finish_run(self, run_id: int, outcome: str, report: dict[str, Any]) -> None:
        with self.transaction():
            self.execute("UPDATE runs SET finished_at = ?, outcome = ?, report = ? WHERE id = ?",
                         (now(), outcome, orjson.dumps(report).decode(), run_id))

    def runs(self, export: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE export = ?", (export,)) if export else ("", ())
        rows = self.rows(f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_run(row) for row in rows]

    def last_success(self, export: str, before: int | None = None) -> dict[str, Any] | None:
        delivered = ", ".join("?" * len(DELIVERED_OUTCOMES))
        row = self.one(f"SELECT {RUN_COLUMNS} FROM runs WHERE export = ? AND id < ? AND dry_run = 0 "
                       f"AND outcome IN ({delivered}) ORDER BY id DESC LIMIT 1",
                       (export, before if before is not None else 2**63 - 1, *DELIVERED_OUTCOMES))
        return _run(row) if row is not None else None

    def count_runs(self, export: str | None = None) -> int:
        where, params = ("WHERE export = ?", (export,)) if export else ("", ())
        return int(self.one(f"SELECT count(*) FROM runs {where}", params)[0])  # noqa: S608


RUN_COLUMNS = "id, export, started_at, finished_at, outcome, dry_run, report"


def _run(row: tuple) -> dict[str, Any]:
    return {"id": row[0], "export": row[1], "started_at": row[2], "finished_at": row[3], "outcome": row[4],
            "dry_run": bool(row[5]), "report": orjson.loads(row[6]) if row[6] else None}
