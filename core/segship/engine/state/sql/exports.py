"""Export ids: every table by export id (members, targets, digests) finds its export through these."""

from __future__ import annotations

from segship.engine.hashing import HASH_VERSION
from segship.engine.state.sql.caches import StateCache
from segship.engine.state.sql.connection import SqlConnection


class ExportIds(StateCache):
    """Export name -> id, as read or created.

    Forgotten: an export created in a transaction that rolled back (its id may go to another
    export next); an export whose run starts (another machine may have forgotten it since, and
    made it anew); a forgotten export; every export, once state is replaced by a copy.
    """

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.creating: set[str] = set()  # exports the open transaction created: forgotten if rolled back

    def committed(self) -> None:
        self.creating.clear()

    def rolled_back(self) -> None:
        for export in self.creating:  # its id may go to another export next
            self.ids.pop(export, None)
        self.creating.clear()

    def run_started(self, export: str) -> None:
        self.ids.pop(export, None)

    def export_forgotten(self, export: str) -> None:
        self.ids.pop(export, None)

    def replaced(self) -> None:
        self.ids.clear()


class SqlExports(SqlConnection):
    """The ``exports`` table's ids, cached (:class:`ExportIds`)."""

    def __init__(self) -> None:
        super().__init__()
        self.export_ids = self.cached(ExportIds())

    def export_id(self, export: str, *, create: bool = False) -> int | None:
        """The export's id; a new export is created (in the transaction open) when ``create``."""
        ids = self.export_ids.ids
        if export not in ids:
            row = self.one("SELECT id FROM exports WHERE name = ?", (export,))
            if row is None and create:
                row = self.one("INSERT INTO exports (name, hash_version) VALUES (?, ?) RETURNING id",
                               (export, HASH_VERSION))
                self.export_ids.creating.add(export)
            if row is None:
                return None
            ids[export] = int(row[0])
        return ids[export]
