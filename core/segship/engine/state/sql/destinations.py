"""The destination each export was last sent through (``export_destinations``): what ``segship retire``
rebuilds it from once the export is gone from the config."""

from __future__ import annotations

import orjson

from segship.engine.state import DestinationStore, RecordedDestination
from segship.engine.state.sql.connection import on_state_thread
from segship.engine.state.sql.exports import SqlExports


class SqlDestinations(SqlExports, DestinationStore):
    @on_state_thread
    def record_destination(self, export: str, destination: RecordedDestination) -> None:
        if self.recorded_destination(export) == destination:
            return  # every run of an unchanged export: no write
        row = (destination.connection, destination.type, orjson.dumps(destination.settings).decode(),
               orjson.dumps(destination.mapping).decode())
        with self.transaction():
            self.execute("INSERT INTO export_destinations VALUES (?, ?, ?, ?, ?) ON CONFLICT (export_id) DO UPDATE "
                         "SET connection = excluded.connection, type = excluded.type, settings = excluded.settings, "
                         "mapping = excluded.mapping", (self.export_id(export, create=True), *row))

    def recorded_destination(self, export: str) -> RecordedDestination | None:
        row = self.one("SELECT d.connection, d.type, d.settings, d.mapping FROM export_destinations d "
                       "JOIN exports e ON e.id = d.export_id WHERE e.name = ?", (export,))
        return RecordedDestination(row[0], row[1], orjson.loads(row[2]), orjson.loads(row[3])) if row else None
