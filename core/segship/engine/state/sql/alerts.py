"""Alerts: each export's open conditions, by export name and event (see ``segship.alerts``)."""

from __future__ import annotations

import orjson

from segship.engine.state import AlertStore, OpenAlert
from segship.engine.state.sql.connection import SqlConnection, on_state_thread


class SqlAlerts(SqlConnection, AlertStore):
    def open_alerts(self, export: str) -> dict[str, OpenAlert]:
        rows = self.rows("SELECT event, opened_at, run_id, message, figures FROM alerts WHERE export = ?", (export,))
        return {row[0]: _alert(row) for row in rows}

    @on_state_thread
    def open_alert(self, export: str, alert: OpenAlert) -> bool:
        # the conflict is the answer: another process (a scheduler elsewhere) opened it first
        with self.transaction():
            opened = self.one(
                "INSERT INTO alerts (export, event, opened_at, run_id, message, figures) "
                "VALUES (?, ?, ?, CAST(? AS BIGINT), ?, ?) ON CONFLICT (export, event) DO NOTHING RETURNING event",
                (export, alert.event, alert.opened_at, alert.run_id, alert.message,
                 orjson.dumps(alert.figures).decode()))
        return opened is not None

    @on_state_thread
    def resolve_alert(self, export: str, event: str) -> OpenAlert | None:
        with self.transaction():
            row = self.one("DELETE FROM alerts WHERE export = ? AND event = ? "
                           "RETURNING event, opened_at, run_id, message, figures", (export, event))
        return _alert(row) if row is not None else None


def _alert(row: tuple) -> OpenAlert:
    event, opened_at, run_id, message, figures = row
    return OpenAlert(event, opened_at, int(run_id) if run_id is not None else None, message, orjson.loads(figures))
