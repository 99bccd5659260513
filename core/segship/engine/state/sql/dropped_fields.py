"""Dropped fields: per export, key and column, the reason an acknowledged member's record left a
field out, and since which run it does for that kind of reason; replaced as the commits say
(``DroppedFields``), gone with the member."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from segship.engine.report import reason_kind
from segship.engine.state import DroppedFields, DroppedFieldStore
from segship.engine.state.sql.caches import ExportPresence
from segship.engine.state.sql.connection import SqlConnection

UPSERT_DROPPED_FIELD = (
    "INSERT INTO dropped_fields VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (export, key, field) DO UPDATE SET "
    "reason = excluded.reason, kind = excluded.kind, since_run = CASE WHEN dropped_fields.kind = excluded.kind "
    "THEN dropped_fields.since_run ELSE excluded.since_run END")
DROPPED_FIELD_TYPES = (pa.string(), pa.string(), pa.string(), pa.string(), pa.string(), pa.int64())


class SqlDroppedFields(SqlConnection, DroppedFieldStore):
    def __init__(self) -> None:
        super().__init__()
        self.dropped_presence = self.cached(ExportPresence("dropped_fields"))

    def _settle_dropped_fields(self, export: str, dropped: DroppedFields) -> None:
        """Inside a commit's transaction (``members.py``): the fields the acknowledged records left out
        replace those their members had (of every column for a record mapped whole, of the columns
        it mapped for a change)."""
        if self.dropped_presence.has_rows(self.one, export):
            whole = dropped.whole.to_pylist() if isinstance(dropped.whole, pa.Array) else dropped.whole
            self.many("DELETE FROM dropped_fields WHERE export = ? AND key = ?", [(export, key) for key in whole])
            self.many("DELETE FROM dropped_fields WHERE export = ? AND key = ? AND field = ?",
                      [(export, key, column) for key, column in dropped.remapped])
        if not dropped.fields:
            return
        self.dropped_presence.written(export)
        run = self.one("SELECT max(id) FROM runs WHERE export = ?", (export,))[0]
        # one row a member's field: the last a commit names (a key sent twice while the source changed)
        fields = {(key, column): reason for key, column, reason in dropped.fields}
        self.many(UPSERT_DROPPED_FIELD, [(export, key, column, reason, reason_kind(reason), run)
                                         for (key, column), reason in fields.items()], DROPPED_FIELD_TYPES)

    def _forget_dropped_fields(self, export: str, keys: Sequence[str]) -> None:
        """Inside a removal's transaction: members who left have no record any more."""
        if keys and self.dropped_presence.has_rows(self.one, export):
            self.many("DELETE FROM dropped_fields WHERE export = ? AND key = ?", [(export, key) for key in keys])

    def dropped_fields_by_kind(self, export: str, examples: int = 3) -> list[dict[str, Any]]:
        kinds = self.rows("SELECT field, kind, count(*), min(since_run) FROM dropped_fields WHERE export = ? "
                          "GROUP BY field, kind ORDER BY count(*) DESC, field, kind", (export,))
        return [{"field": field, "reason": kind, "count": int(count), "since_run": since,
                 "examples": [row[0] for row in self.rows(
                     "SELECT key FROM dropped_fields WHERE export = ? AND field = ? AND kind = ? ORDER BY key LIMIT ?",
                     (export, field, kind, examples))]}
                for field, kind, count, since in kinds]
