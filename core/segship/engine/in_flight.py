"""Batches recorded in state as in flight before they are sent, cleared once answered.

A destination may apply a batch whose answer a killed run never sees; the keys and
identities recorded here let the next plan fold such a batch into the members
(``StateStore.settle_in_flight``). Batches are recorded a group at a time, one state write
for at least ``GROUP_ROWS`` rows (one write per Braze batch of 750 cost 2 µs a profile); a
group is cleared by the commit of its last batch answered, unless one of its records got no
answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from segship.engine.mapping import MappedRows
from segship.engine.state import StateStore

#: Rows recorded in one state write, at least: Braze, 11 batches of 750 (one Arrow batch read);
#: Brevo, each import of 25,000 alone (11 of them held 275,000 mapped rows back before the first
#: was sent: 486 MB at the peak of a 1M-profile run).
GROUP_ROWS = 8_192


@dataclass
class _Group:
    id: int
    unanswered: int
    whole: bool = True  # every record sent so far was answered


class InFlight:
    """One run's record of its batches in flight: ``recorded`` before sending, ``answered`` after."""

    def __init__(self, state: StateStore, export: str, target: int) -> None:
        self.state, self.export, self.target = state, export, target
        self._groups: dict[int, _Group] = {}  # id(batch) -> its group

    async def recorded(self, batches: AsyncIterator[MappedRows]) -> AsyncIterator[MappedRows]:
        """The batches, each group recorded in state before the first of it is sent."""
        group: list[MappedRows] = []
        rows = 0
        async for batch in batches:
            group.append(batch)
            rows += batch.size
            if rows >= GROUP_ROWS:
                for each in await self._record(group):
                    yield each
                group, rows = [], 0
        for each in await self._record(group):
            yield each

    async def _record(self, group: list[MappedRows]) -> list[MappedRows]:
        sent = [batch for batch in group if batch.records]
        if sent:
            keys = [key for batch in sent for key in batch.records.keys]
            identities = [identity for batch in sent for identity in batch.records.identities]
            recorded = _Group(await asyncio.to_thread(self.state.record_in_flight, self.export, keys, identities,
                                                      self.target), len(sent))
            self._groups.update((id(batch), recorded) for batch in sent)
        return group

    def answered(self, batch: MappedRows, missing: int) -> int | None:
        """The batch was answered (``missing`` records without an answer): the id of its group for
        the batch's commit to clear, when it was the group's last and every record was answered."""
        group = self._groups.pop(id(batch), None)
        if group is None:
            return None
        group.unanswered -= 1
        group.whole = group.whole and not missing
        return group.id if group.unanswered == 0 and group.whole else None
