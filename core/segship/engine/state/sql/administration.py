"""What ``segship state show`` and ``state forget`` ask of every concern's tables."""

from __future__ import annotations

from typing import Any

from segship.engine.state import AdministrationStore
from segship.engine.state.sql.connection import on_state_thread
from segship.engine.state.sql.exports import SqlExports
from segship.engine.state.sql.schema import EXPORT_COLUMNS


class SqlAdministration(SqlExports, AdministrationStore):
    """Counts members where they are settled (``_settled_export_id``, members.py) and stale identities
    as targets.py does (``count_stale_identities``)."""

    @on_state_thread
    def summary(self, export: str | None = None) -> list[dict[str, Any]]:
        names = [row[0] for row in self.rows(
            "SELECT name FROM exports UNION SELECT export FROM runs UNION SELECT export FROM rejects "
            "UNION SELECT export FROM stale_identities")]
        found = []
        for name in sorted(n for n in names if export is None or n == export):
            export_id = self._settled_export_id(name)
            last = self.one("SELECT id, started_at, finished_at, outcome, dry_run FROM runs WHERE export = ? "
                            "ORDER BY id DESC LIMIT 1", (name,))
            found.append({
                "export": name,
                "members": int(self.one("SELECT count(*) FROM members WHERE export_id = ?", (export_id,))[0])
                if export_id is not None else 0,
                "rejects": int(self.one("SELECT count(*) FROM rejects WHERE export = ?", (name,))[0]),
                "stale_identities": self.count_stale_identities(name),
                "last_run": {"id": last[0], "started_at": last[1], "finished_at": last[2], "outcome": last[3],
                             "dry_run": bool(last[4])} if last else None,
            })
        return found

    @on_state_thread
    def forget(self, export: str) -> bool:
        existed = bool(self.summary(export))
        with self.transaction():
            export_id = self.export_id(export)
            for table, column in EXPORT_COLUMNS.items():
                if column == "export":
                    self.execute(f"DELETE FROM {table} WHERE export = ?", (export,))  # noqa: S608 - our own names
                elif export_id is not None:
                    self.execute(f"DELETE FROM {table} WHERE {column} = ?", (export_id,))  # noqa: S608
        for cache in self.caches:
            cache.export_forgotten(export)
        return existed
