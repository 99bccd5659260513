"""Rejects: rows refused, by export name and key, until accepted or gone.

A reject keeps who refused it (``origin``: the destination, or segship's mapping rules), for the
mapping's the refused row's hash and the mapping's fingerprint then (a plan finds in bulk
which rows are still refused as they were), its kind of reason (``reason_kind``: the reason
without the row's values) and the run since which it is refused for that kind of reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from segship.engine.report import reason_kind
from segship.engine.state import Rejected, RejectStore, now
from segship.engine.state.sql.caches import ExportPresence
from segship.engine.state.sql.connection import SqlConnection, on_state_thread

#: A reject recorded, or recorded again: its kind of reason unchanged, it is refused since the run it was.
UPSERT_REJECT = (
    "INSERT INTO rejects VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (export, key) DO UPDATE SET "
    "reason = excluded.reason, last_seen = excluded.last_seen, attempts = rejects.attempts + 1, "
    "origin = excluded.origin, row_hash = excluded.row_hash, fingerprint = excluded.fingerprint, "
    "kind = excluded.kind, since_run = CASE WHEN rejects.kind IS NULL OR rejects.kind = excluded.kind "
    "THEN rejects.since_run ELSE excluded.since_run END")
REJECT_TYPES = (pa.string(), pa.string(), pa.string(), pa.string(), pa.string(), pa.string(), pa.int64(),
                pa.string(), pa.string(), pa.int64())
REFUSALS = pa.schema([("key", pa.string()), ("origin", pa.string()), ("row_hash", pa.int64()),
                      ("fingerprint", pa.string()), ("since_run", pa.int64())])


def contains(text: str) -> str:
    """A LIKE pattern (escape character ``\\``) for text anywhere in a value, lower-cased."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlRejects(SqlConnection, RejectStore):
    def __init__(self) -> None:
        super().__init__()
        self.reject_presence = self.cached(ExportPresence("rejects"))

    def _settle_rejects(self, export: str, accepted: pa.Array,
                        rejected: list[Rejected | tuple[str, str]]) -> None:
        """Inside a commit's transaction (``members.py``): keys the destination accepted are no
        longer rejects; ``rejected`` are, once more, in the run under way (the export's latest)."""
        if len(accepted) and self.reject_presence.has_rows(self.one, export):
            self.many("DELETE FROM rejects WHERE export = ? AND key = ?",
                      [(export, key) for key in accepted.to_pylist()])
        if not rejected:
            return
        self.reject_presence.written(export)
        stamp = now()
        run = self.one("SELECT max(id) FROM runs WHERE export = ?", (export,))[0]
        rows = []
        for item in rejected:
            reject = Rejected(*item)
            # (a reason of None is the database's to refuse, NOT NULL, failing the commit whole)
            rows.append((export, reject.key, reject.reason, stamp, stamp,
                         "destination" if reject.row_hash is None else "mapping", reject.row_hash, reject.mapping,
                         reason_kind(reject.reason or ""), run))
        self.many(UPSERT_REJECT, rows, REJECT_TYPES)

    @on_state_thread
    def forget_rejects(self, export: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self.transaction():
            self.many("DELETE FROM rejects WHERE export = ? AND key = ?", [(export, key) for key in keys])

    def rejected_keys(self, export: str) -> list[str]:
        return [row[0] for row in self.rows("SELECT key FROM rejects WHERE export = ?", (export,))]

    def refusals(self, export: str) -> pa.Table:
        rows = self.rows("SELECT key, origin, row_hash, fingerprint, since_run FROM rejects WHERE export = ?",
                         (export,))
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(REFUSALS)
        return pa.table([pa.array(values, field.type) for values, field in zip(columns, REFUSALS, strict=True)],
                        schema=REFUSALS)

    def new_rejects(self, export: str, run_id: int) -> int:
        return int(self.one("SELECT count(*) FROM rejects WHERE export = ? AND since_run = ?", (export, run_id))[0])

    @staticmethod
    def _filter(export: str, reason: str | None) -> tuple[str, tuple[Any, ...]]:
        if reason is None:
            return "export = ?", (export,)
        return "export = ? AND lower(reason) LIKE ? ESCAPE '\\'", (export, contains(reason))

    def rejects(self, export: str, limit: int | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        where, params = self._filter(export, reason)
        tail, params = (" LIMIT ?", (*params, limit)) if limit is not None else ("", params)
        rows = self.rows("SELECT key, reason, first_seen, last_seen, attempts, origin, since_run FROM rejects "
                         f"WHERE {where} ORDER BY last_seen DESC, key" + tail, params)  # noqa: S608
        return [{"key": r[0], "reason": r[1], "first_seen": r[2], "last_seen": r[3], "attempts": r[4],
                 "origin": r[5], "since_run": r[6]} for r in rows]

    def count_rejects(self, export: str, reason: str | None = None) -> int:
        where, params = self._filter(export, reason)
        return int(self.one(f"SELECT count(*) FROM rejects WHERE {where}", params)[0])  # noqa: S608

    def rejects_by_kind(self, export: str, examples: int = 3) -> list[dict[str, Any]]:
        # rejects recorded before kinds were kept group by their reason
        kinds = self.rows("SELECT coalesce(kind, reason), origin, count(*), min(since_run) FROM rejects "
                          "WHERE export = ? GROUP BY coalesce(kind, reason), origin "
                          "ORDER BY count(*) DESC, coalesce(kind, reason)", (export,))
        return [{"reason": kind, "origin": origin, "count": int(count), "since_run": since,
                 "examples": [row[0] for row in self.rows(
                     "SELECT key FROM rejects WHERE export = ? AND coalesce(kind, reason) = ? AND origin = ? "
                     "ORDER BY key LIMIT ?", (export, kind, origin, examples))]}
                for kind, origin, count, since in kinds]
