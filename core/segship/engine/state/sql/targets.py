"""Targets and moves: each export's targets (settings, and the destination instance they are in), which
members are in which, the identities left in a target to remove from it (``stale_identities``: a
member's previous identity, a moved member's), and the instance each export last ran against
(``exports.instance``, ``exports.credentials``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from segship.destination import Member
from segship.engine.state import RecordedInstance, TargetInstance, TargetStore, chunks
from segship.engine.state.sql.connection import on_state_thread
from segship.engine.state.sql.exports import SqlExports
from segship.engine.state.sql.schema import TABLES


class SqlTargets(SqlExports, TargetStore):
    """Members are read where they are settled (``_settled_export_id``, members.py), and a forgotten
    target's deleted as members.py writes them (``_members_written``); the helpers below write stale
    identities inside the commits' transactions (members.py, in_flight.py)."""

    @on_state_thread
    def target_id(self, export: str, target: dict[str, Any], *, record: bool, instance: dict[str, Any] | None = None,
                  connection: str | None = None) -> int:
        settings = _json(target)
        export_id = self.export_id(export, create=record)
        if export_id is None:
            return 1
        if instance is None:  # only targets recorded before instances are in "no instance"
            found = self.one("SELECT id, connection FROM targets WHERE export_id = ? AND settings = ? "
                             "AND instance IS NULL", (export_id, settings))
        else:
            if record:
                self._adopt_instance(export_id, _json(instance), connection)
            found = self.one("SELECT id, connection FROM targets WHERE export_id = ? AND settings = ? "
                             "AND (instance = ? OR instance IS NULL) ORDER BY instance IS NULL LIMIT 1",
                             (export_id, settings, _json(instance)))
        if found:
            if record and connection is not None and found[1] != connection:
                with self.transaction():  # the same instance through another connection (a renamed one)
                    self.execute("UPDATE targets SET connection = ? WHERE export_id = ? AND id = ?",
                                  (connection, export_id, found[0]))
            return int(found[0])
        new_id = int(self.one("SELECT coalesce(max(id), 0) + 1 FROM targets WHERE export_id = ?", (export_id,))[0])
        if record:
            with self.transaction():
                if instance is None:
                    self.execute("INSERT INTO targets (export_id, id, settings) VALUES (?, ?, ?)",
                                 (export_id, new_id, settings))
                else:
                    self.execute("INSERT INTO targets (export_id, id, settings, instance, connection) "
                                 "VALUES (?, ?, ?, ?, ?)", (export_id, new_id, settings, _json(instance), connection))
        return new_id

    def _adopt_instance(self, export_id: int, instance: str, connection: str | None) -> None:
        """Targets recorded before instances take the instance a run records (see ``target_id``)."""
        if self.one("SELECT 1 FROM targets WHERE export_id = ? AND instance IS NULL LIMIT 1", (export_id,)):
            with self.transaction():
                self.execute("UPDATE targets SET instance = ?, connection = ? "
                             "WHERE export_id = ? AND instance IS NULL", (instance, connection, export_id))

    def targets(self, export: str) -> dict[int, dict[str, Any]]:
        return {int(target_id): orjson.loads(settings) for target_id, settings in self.rows(
            "SELECT t.id, t.settings FROM targets t JOIN exports e ON e.id = t.export_id WHERE e.name = ?",
            (export,))}

    def target_instances(self, export: str) -> dict[int, TargetInstance]:
        return {int(target_id): TargetInstance(orjson.loads(instance) if instance is not None else None, connection)
                for target_id, instance, connection in self.rows(
                    "SELECT t.id, t.instance, t.connection FROM targets t JOIN exports e ON e.id = t.export_id "
                    "WHERE e.name = ?", (export,))}

    # -- the instance each export last ran against -----------------------------------------------------

    def recorded_instance(self, export: str) -> RecordedInstance | None:
        row = self.one("SELECT instance, credentials FROM exports WHERE name = ? AND instance IS NOT NULL", (export,))
        return RecordedInstance(orjson.loads(row[0]), row[1]) if row else None

    @on_state_thread
    def record_instance(self, export: str, instance: dict[str, Any], credentials: str | None) -> None:
        with self.transaction():
            export_id = self.export_id(export, create=True)
            if credentials is None:
                self.execute("UPDATE exports SET instance = ?, credentials = NULL WHERE id = ?",
                             (_json(instance), export_id))
            else:
                self.execute("UPDATE exports SET instance = ?, credentials = ? WHERE id = ?",
                             (_json(instance), credentials, export_id))

    @on_state_thread
    def members_by_target(self, export: str, keys: Sequence[str]) -> dict[int, list[Member]]:
        by_target: dict[int, list[Member]] = {}
        export_id = self._settled_export_id(export) if keys else None
        if export_id is None:
            return by_target
        for chunk in chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, identity, target in self.rows(
                    "SELECT key, coalesce(identity, key), target FROM members "
                    f"WHERE export_id = ? AND key IN ({marks}) ORDER BY key", (export_id, *chunk)):
                by_target.setdefault(int(target), []).append(Member(key, identity))
        return by_target

    # -- identities left to remove ---------------------------------------------------------------------

    def stale_identities(self, export: str) -> dict[int, list[Member]]:
        by_target: dict[int, list[Member]] = {}
        for key, identity, target in self.rows(
                "SELECT key, identity, target FROM stale_identities WHERE export = ? ORDER BY target, key", (export,)):
            by_target.setdefault(int(target), []).append(Member(key, identity))
        return by_target

    def count_stale_identities(self, export: str, target: int | None = None) -> int:
        if target is None:
            return int(self.one("SELECT count(*) FROM stale_identities WHERE export = ?", (export,))[0])
        return int(self.one("SELECT count(*) FROM stale_identities WHERE export = ? AND target = ?",
                            (export, target))[0])

    @on_state_thread
    def forget_target(self, export: str, target: int) -> int:
        export_id = self._settled_export_id(export)
        with self.transaction():
            forgotten = self.count_stale_identities(export, target)
            self.execute("DELETE FROM stale_identities WHERE export = ? AND target = ?", (export, target))
            if export_id is not None:
                forgotten += int(self.one("SELECT count(*) FROM members WHERE export_id = ? AND target = ?",
                                          (export_id, target))[0])
                self.execute("DELETE FROM members WHERE export_id = ? AND target = ?", (export_id, target))
                self._members_written(export_id)
        return forgotten

    def _leave_identities(self, rows: Sequence[tuple[str, str, str, int]]) -> None:
        """(export, key, identity, target): identities to remove from their target, inside the transaction open."""
        self.many("INSERT INTO stale_identities VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", rows,
                  TABLES["stale_identities"].types)

    def _leave_other_targets(self, export: str, export_id: int, target: int, keys: pa.Array) -> None:
        """Members with ``keys`` moving to ``target`` leave their identity in the target they are in,
        to remove from it; inside the transaction open, before the members are written."""
        for chunk in chunks(keys.to_pylist(), 500):
            self.execute(
                "INSERT INTO stale_identities SELECT ?, key, coalesce(identity, key), target FROM members "
                f"WHERE export_id = ? AND target <> ? AND key IN ({','.join('?' * len(chunk))}) "
                "ON CONFLICT DO NOTHING", (export, export_id, target, *chunk))

    def _remove_stale_identities(self, export: str, target: int, removed: list[Member]) -> None:
        """Stale identities the destination removed from ``target``, inside the transaction open."""
        self.many("DELETE FROM stale_identities WHERE export = ? AND target = ? AND identity = ?",
                  [(export, target, member.identity) for member in removed],
                  (pa.string(), pa.int32(), pa.string()))


def _json(value: dict[str, Any]) -> str:
    """Settings or an instance as state compares them: JSON with sorted keys (one text per value)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
