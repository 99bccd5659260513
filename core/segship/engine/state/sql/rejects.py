"""Rejects: rows the destination refused, by export name and key, until accepted or gone."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from segship.engine.state import RejectStore, now
from segship.engine.state.sql.caches import StateCache
from segship.engine.state.sql.connection import SqlConnection, on_state_thread


class RejectPresence(StateCache):
    """Which exports have rejects and which have none, as last asked or written.

    Asked once a run: the run holds the export's lock, so no one else adds any; forgotten when
    the export's next run starts (another machine may have run it since).
    """

    def __init__(self) -> None:
        self.with_rejects: set[str] = set()
        self.without_rejects: set[str] = set()

    def run_started(self, export: str) -> None:
        self.with_rejects.discard(export)
        self.without_rejects.discard(export)


class SqlRejects(SqlConnection, RejectStore):
    def __init__(self) -> None:
        super().__init__()
        self.reject_presence = self.cached(RejectPresence())

    def _settle_rejects(self, export: str, accepted: pa.Array, rejected: list[tuple[str, str]]) -> None:
        """Inside a commit's transaction (``members.py``): keys the destination accepted are no
        longer rejects; ``rejected`` (key, reason) are, once more."""
        stamp = now()
        if len(accepted) and self._has_rejects(export):
            self.many("DELETE FROM rejects WHERE export = ? AND key = ?",
                      [(export, key) for key in accepted.to_pylist()])
        if rejected:
            self.reject_presence.with_rejects.add(export)
            self.reject_presence.without_rejects.discard(export)
        self.many(
            "INSERT INTO rejects VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (export, key) DO UPDATE SET "
            "reason = excluded.reason, last_seen = excluded.last_seen, attempts = rejects.attempts + 1",
            [(export, key, reason, stamp, stamp) for key, reason in rejected])

    @on_state_thread
    def forget_rejects(self, export: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self.transaction():
            self.many("DELETE FROM rejects WHERE export = ? AND key = ?", [(export, key) for key in keys])

    def _has_rejects(self, export: str) -> bool:
        """Whether an export may have rejects (:class:`RejectPresence`); saves a query a batch."""
        presence = self.reject_presence
        if export not in presence.without_rejects and export not in presence.with_rejects:
            if self.one("SELECT 1 FROM rejects WHERE export = ? LIMIT 1", (export,)):
                presence.with_rejects.add(export)
            else:
                presence.without_rejects.add(export)
        return export in presence.with_rejects

    def rejected_keys(self, export: str) -> list[str]:
        return [row[0] for row in self.rows("SELECT key FROM rejects WHERE export = ?", (export,))]

    def rejects(self, export: str, limit: int | None = None) -> list[dict[str, Any]]:
        tail, params = (" LIMIT ?", (export, limit)) if limit is not None else ("", (export,))
        rows = self.rows("SELECT key, reason, first_seen, last_seen, attempts FROM rejects WHERE export = ? "
                         "ORDER BY last_seen DESC, key" + tail, params)
        return [{"key": r[0], "reason": r[1], "first_seen": r[2], "last_seen": r[3], "attempts": r[4]}
                for r in rows]
