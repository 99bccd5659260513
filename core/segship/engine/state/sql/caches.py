"""What a concern keeps of state between statements, and the events that make it stale.

A concern that caches (an export's id, whether an export has rejects, which exports' digest this
run already deleted...) keeps it in a :class:`StateCache` of its own, registered with the store
(``SqlConnection.cached``). The store tells every cache of each event below, and each cache says,
in its own module, what it forgets on which; no concern clears another's cache.

- ``committed`` / ``rolled_back``: a transaction ended (``SqlConnection.transaction``);
- ``run_started``: a run holds the export's lock now, and another process or machine may have
  changed the export's rows since this store last looked (``start_run``);
- ``export_forgotten``: every row of the export was deleted (``forget``);
- ``replaced``: every table was replaced by a copy (``replace_all``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


class StateCache:
    """A concern's cache; each event does nothing unless the cache says otherwise."""

    def committed(self) -> None:
        """The transaction open committed."""

    def rolled_back(self) -> None:
        """The transaction open failed: it is being rolled back."""

    def run_started(self, export: str) -> None:
        """A run of ``export`` started, under the export's lock."""

    def export_forgotten(self, export: str) -> None:
        """Every row of ``export`` was deleted."""

    def replaced(self) -> None:
        """Every table was replaced by a copy."""


class ExportPresence(StateCache):
    """Which exports have rows in ``table`` and which have none, as last asked or written: saves a
    query a batch where a commit would delete an export's rows of keys it acknowledged.

    Asked once a run: the run holds the export's lock, so no one else adds any; forgotten when
    the export's next run starts (another machine may have run it since).
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.with_rows: set[str] = set()
        self.without_rows: set[str] = set()

    def has_rows(self, one: Callable[[str, Sequence[Any]], tuple | None], export: str) -> bool:
        """Whether the export may have rows there (``one`` runs a query on the open connection)."""
        if export not in self.without_rows and export not in self.with_rows:
            found = one(f"SELECT 1 FROM {self.table} WHERE export = ? LIMIT 1", (export,))  # noqa: S608
            (self.with_rows if found else self.without_rows).add(export)
        return export in self.with_rows

    def written(self, export: str) -> None:
        self.with_rows.add(export)
        self.without_rows.discard(export)

    def run_started(self, export: str) -> None:
        self.with_rows.discard(export)
        self.without_rows.discard(export)


class CommittedIds(StateCache):
    """Ids (of exports, of runs) a concern did something for that state keeps, so as not to do it
    again: ``pending`` in the open transaction, ``done`` once it committed (forgotten if it rolled
    back); forgotten when a run starts (another process may have changed state since) and when
    state is replaced by a copy."""

    def __init__(self) -> None:
        self.done: set[int] = set()
        self.pending: set[int] = set()

    def committed(self) -> None:
        self.done |= self.pending
        self.pending.clear()

    def rolled_back(self) -> None:
        self.pending.clear()

    def run_started(self, export: str) -> None:
        self.done.clear()

    def replaced(self) -> None:
        self.done.clear()
