"""The in-flight journal: groups of batches sent and not yet answered (``in_flight``, by export name).

A group is recorded before it is sent; its commit (``commit_upserts``, members.py) deletes the
record in its transaction. A record left (a run killed in flight) is folded into the members
by the export's next run (``settle_in_flight``).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from segship.engine.state import InFlightStore
from segship.engine.state.sql.connection import on_state_thread
from segship.engine.state.sql.exports import SqlExports


class SqlInFlight(SqlExports, InFlightStore):
    """Folding a group in writes members (``_add_unknown_members``, members.py) and stale identities
    (``_leave_identities``, targets.py) in one transaction."""

    @on_state_thread
    def record_in_flight(self, export: str, keys: Sequence[str], identities: Sequence[str], target: int) -> int:
        members = orjson.dumps([list(keys), list(identities)]).decode()
        with self.transaction():
            # the run holds the export's lock: no one else numbers its batches
            flight = int(self.one("SELECT coalesce(max(id), 0) + 1 FROM in_flight WHERE export = ?", (export,))[0])
            self.execute("INSERT INTO in_flight VALUES (?, ?, ?, ?)", (export, flight, target, members))
        return flight

    def in_flight_records(self, export: str) -> list[tuple[int, int, list[str], list[str]]]:
        records = []
        for flight, target, members in self.rows("SELECT id, target, members FROM in_flight WHERE export = ? "
                                                 "ORDER BY id", (export,)):
            keys, identities = orjson.loads(members)
            records.append((int(flight), int(target), keys, identities))
        return records

    def _landed(self, export: str, flight: int) -> None:
        """The group ``flight`` was answered: its commit (the transaction open) no longer needs its record."""
        self.execute("DELETE FROM in_flight WHERE export = ? AND id = ?", (export, flight))

    @on_state_thread
    def settle_in_flight(self, export: str) -> int:
        flights = self.rows("SELECT target, members FROM in_flight WHERE export = ? ORDER BY id", (export,))
        if not flights:
            return 0
        sent = {}  # key -> (identity, target), the last batch's
        for target, members in flights:
            keys, identities = orjson.loads(members)
            sent.update((key, (identity, int(target))) for key, identity in zip(keys, identities, strict=True))
        known = {member.key: (member.identity, target)
                 for target, members in self.members_by_target(export, list(sent)).items() for member in members}
        with self.transaction():
            export_id = self.export_id(export, create=True)
            self._add_unknown_members(export_id, [(key, identity, target) for key, (identity, target) in sent.items()
                                                  if key not in known])
            self._leave_identities([(export, key, identity, target) for key, (identity, target) in sent.items()
                                    if key in known and known[key] != (identity, target)])
            self.execute("DELETE FROM in_flight WHERE export = ?", (export,))
        return len(sent)
