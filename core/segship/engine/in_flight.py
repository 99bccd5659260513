"""Batches sent a group at a time: recorded in state as in flight before they are sent, and
committed, with their group's record cleared, in one transaction once the group is answered.

A destination may apply a batch whose answer a killed run never sees; the keys and
identities recorded here let the next plan fold such a batch into the members
(``StateStore.settle_in_flight``). Batches are grouped until the group holds
``GROUP_ROWS`` rows or ``GROUP_BATCHES`` batches (Braze: 11 batches of 750; Brevo: each
import of 25,000 alone): one state write records a group, one commits it, rather than one
per batch (each write is a transaction, its statements and a thread hop). What the destination acknowledged stays in state's
in-flight record until its group commits: a run killed meanwhile sends those rows again
(upserts are idempotent), and never believes a row was received that was not. A run that
stops (Ctrl-C, a failure) commits what its groups had answered (:meth:`InFlight.unfinished`);
a group one of whose records got no answer stays recorded. Groups are read and recorded a
little ahead of sending (``AHEAD_ROWS``), so a run killed with ``-9`` may leave records of groups
it never sent: their rows are sent on the next run, as those of a group in flight.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from segship.engine.mapping import MappedRows
from segship.engine.state import DroppedFields, Rejected, StateStore
from segship.engine.sync_log import BatchChanges
from segship.log import redact_text

log = structlog.get_logger("segship.engine")

#: Rows a group reaches before it is recorded: Braze, 11 batches of 750 (one Arrow batch read);
#: Brevo, each import of 25,000 alone (11 of them would hold 275,000 mapped rows back before the
#: first was sent).
GROUP_ROWS = 8_192
#: Batches a group holds at most: with small batches (a test's, a low ``batch_size``), a group
#: of 8,192 rows would commit nothing for many round trips.
GROUP_BATCHES = 16
#: Rows of the groups read, mapped and recorded ahead of the one being sent, at most (judged by the
#: largest group's size). At the default batch sizes, Braze reads two groups ahead; Brevo, whose
#: imports of 25,000 rows are larger, reads the next only when it is wanted, as before (each group
#: held back would add its 25,000 mapped rows to the run's peak memory).
AHEAD_ROWS = 20_000


@dataclass
class Answer:
    """One answered batch: what it commits (the rows acknowledged, as ``MappedRows.answered``
    gives them; the identities they replaced; the rows refused, by the destination or the mapping;
    the fields the acknowledged records left out; what it logs, None when the run keeps no sync log), and what is reported of it once committed (its
    rows, and the seconds from its sending to its answer)."""

    acknowledged: pa.RecordBatch
    replaced: list[tuple[str, str]]
    refused: list[Rejected | tuple[str, str]]
    size: int
    seconds: float
    dropped: DroppedFields = field(default_factory=DroppedFields)  # what the acknowledged records left out
    logged: BatchChanges | None = None


@dataclass
class Commit:
    """A group's answers (in the order the batches were sent), to commit in one transaction;
    ``in_flight`` is the group's record to clear with it (None: keep it, some record got no
    answer or was never sent)."""

    answers: list[Answer]
    in_flight: int | None

    @property
    def acknowledged(self) -> pa.RecordBatch:
        """Each key once: a key sent twice (its source changed while the run read it) as it was last
        sent (PostgreSQL refuses to upsert one row twice in a statement)."""
        rows = self.answers[0].acknowledged if len(self.answers) == 1 else \
            pa.concat_batches([answer.acknowledged for answer in self.answers])  # a copy
        keys = rows.column(0)
        if pc.count_distinct(keys).as_py() == len(keys):
            return rows
        last = {key: index for index, key in enumerate(keys.to_pylist())}
        return rows.take(pa.array(sorted(last.values()), pa.int64()))

    @property
    def replaced(self) -> list[tuple[str, str]]:
        return [pair for answer in self.answers for pair in answer.replaced]

    def changes(self) -> pa.RecordBatch | None:
        """The sync log's changes of the group's batches (None: the run keeps no log); built where the
        commit runs, off the event loop."""
        if any(answer.logged is None for answer in self.answers):
            return None
        batches = [answer.logged.changes(answer.acknowledged, answer.refused, answer.dropped.fields) for answer in self.answers]
        return batches[0] if len(batches) == 1 else pa.concat_batches(batches)

    @property
    def refused(self) -> list[Rejected | tuple[str, str]]:
        """Each key once, as it was last refused."""
        return list({refused[0]: refused for answer in self.answers for refused in answer.refused}.values())

    @property
    def dropped(self) -> DroppedFields:
        """The answers' dropped fields together."""
        if len(self.answers) == 1:
            return self.answers[0].dropped
        parts = [answer.dropped for answer in self.answers]
        if all(isinstance(part.whole, pa.Array) for part in parts):
            whole: pa.Array | list[str] = pa.concat_arrays([part.whole for part in parts])
        else:
            whole = [key for part in parts for key in (part.whole.to_pylist() if isinstance(part.whole, pa.Array)
                                                       else part.whole)]
        return DroppedFields(whole, [pair for part in parts for pair in part.remapped],
                             [dropped for part in parts for dropped in part.fields])


@dataclass
class _Group:
    id: int | None  # its record in state; None when no batch of it has records to send
    unanswered: int
    whole: bool = True  # every record sent so far was answered
    answers: dict[int, Answer] = field(default_factory=dict)  # by the batch's place in the group

    def commit(self, *, done: bool) -> Commit:
        return Commit([self.answers[place] for place in sorted(self.answers)], self.id if done and self.whole else None)


class InFlight:
    """One run's groups of batches: ``recorded`` before sending, ``answered`` after, ``unfinished``
    when the run stops."""

    def __init__(self, state: StateStore, export: str, target: int) -> None:
        self.state, self.export, self.target = state, export, target
        # id(batch) -> its group, its place in it, and the batch (held, so that its id is not reused)
        self._groups: dict[int, tuple[_Group, int, MappedRows]] = {}

    async def recorded(self, batches: AsyncGenerator[MappedRows, None]) -> AsyncGenerator[MappedRows, None]:
        """The batches, each group recorded in state before the first of it is sent.

        Groups are read, mapped and recorded ahead of the one handed on, by a task of their own
        (``AHEAD_ROWS``), so that sending doesn't wait for a read of the source (DuckDB decoding
        and hashing the next Parquet row group) nor for a record queued on the state thread
        behind a commit that folds SQLite's journal. Mapping runs on the event
        loop; for changed rows it awaits state's previous hashes off it (``known_before``).
        Records are made one after the other, so their ids follow the order of sending
        (``settle_in_flight`` keeps a key's last). Groups read before the source failed are
        handed on, then its error is raised. A group recorded and never handed on
        has its record cleared when the iteration is closed (the run stopped); one that can't
        be cleared (a second Ctrl-C, state failing) stays, and the next run sends its rows
        again."""
        ahead = _ReadAhead(self, batches)
        try:
            while (following := await ahead.next()) is not None:
                group, recording = following
                recorded = await asyncio.shield(recording)  # cancelled, the record goes on: ``_clear`` settles it
                await ahead.handed_on()
                each = _Group(recorded, len(group))
                self._groups.update((id(batch), (each, place, batch)) for place, batch in enumerate(group))
                for batch in group:
                    yield batch
        finally:
            try:
                await ahead.stop()
            finally:
                await self._clear(ahead.waiting)

    async def _record(self, group: list[MappedRows], after: asyncio.Future[int | None] | None) -> int | None:
        """The group's record in state, made once the one before it was (None: no batch of it has
        records to send)."""
        if after is not None:
            await asyncio.wait([after])  # done, whatever its outcome (its failure is raised where it is awaited)
        sent = [batch for batch in group if batch.records]
        if not sent:
            return None
        keys = [key for batch in sent for key in batch.records.keys]
        identities = [identity for batch in sent for identity in batch.records.identities]
        return await asyncio.to_thread(self.state.record_in_flight, self.export, keys, identities, self.target)

    async def _clear(self, waiting: deque[tuple[list[MappedRows], asyncio.Future[int | None]]]) -> None:
        """Clear the records of groups never handed on: nothing of them was sent."""
        recordings = [recording for _, recording in waiting]
        waiting.clear()
        for recording in recordings:
            with suppress(Exception):
                recorded = await asyncio.shield(recording)
                if recorded is not None:
                    await asyncio.to_thread(self.state.commit_upserts, self.export, [], [], [],
                                            target=self.target, in_flight=recorded)

    def answered(self, batch: MappedRows, answer: Answer, missing: int) -> Commit | None:
        """The batch was answered (``missing`` records without an answer): its group's commit when it
        was the group's last batch answered, else None (the answer waits for the others). A batch
        not from :meth:`recorded` is committed alone, its keys in no record."""
        if id(batch) not in self._groups:
            return Commit([answer], None)
        group, place, _ = self._groups.pop(id(batch))
        group.answers[place] = answer
        group.unanswered -= 1
        group.whole = group.whole and not missing
        return group.commit(done=True) if group.unanswered == 0 else None

    def unfinished(self) -> list[Commit]:
        """The commits of the groups some of whose batches were answered and others not (the run
        stopped): what was answered is committed, the group's record stays."""
        groups = {id(group): group for group, _, _ in self._groups.values()}
        self._groups.clear()
        return [group.commit(done=False) for group in groups.values() if group.answers]


class _ReadAhead:
    """Groups read from the batches by a task of their own, each with its record, for
    :meth:`InFlight.recorded` to hand on in order. A group is read while those waiting, with
    one more of the largest one's size, hold at most ``AHEAD_ROWS``, or when one is wanted."""

    def __init__(self, in_flight: InFlight, batches: AsyncGenerator[MappedRows, None]) -> None:
        self.waiting: deque[tuple[list[MappedRows], asyncio.Future[int | None]]] = deque()
        self._changed = asyncio.Condition()
        self._wanted = False  # a group is awaited and none is waiting
        self._stopping = False
        self._ended = False
        self._raised = False  # the reading's outcome was handed to the consumer
        self._reading = asyncio.create_task(self._read(in_flight, batches), name="segship-read-ahead")

    async def _read(self, in_flight: InFlight, batches: AsyncGenerator[MappedRows, None]) -> None:
        last: asyncio.Future[int | None] | None = None
        largest = 0  # rows of the largest group read (a segment's last may be smaller)
        try:
            async with aclosing(_groups(batches)) as groups:
                while True:
                    async with self._changed:
                        await self._changed.wait_for(lambda: self._stopping or self._wanted or (
                            sum(_rows(group) for group, _ in self.waiting) + largest <= AHEAD_ROWS))
                        if self._stopping:
                            return
                    group = await anext(groups, None)
                    if group is None or self._stopping:  # stopped while reading: not recorded, nothing to clear
                        return
                    last = asyncio.ensure_future(in_flight._record(group, after=last))
                    # a record failing after the run stopped is not reported as never retrieved
                    last.add_done_callback(_outcome_seen)
                    largest = max(largest, _rows(group))
                    self.waiting.append((group, last))
                    self._wanted = False  # served: the next read waits for room, or to be wanted again
                    async with self._changed:
                        self._changed.notify_all()
        finally:
            self._ended = True
            async with self._changed:
                self._changed.notify_all()

    async def next(self) -> tuple[list[MappedRows], asyncio.Future[int | None]] | None:
        """The first group waiting (it stays there until :meth:`handed_on`), None once the batches
        ended; raises what reading them raised."""
        async with self._changed:
            if not self.waiting and not self._ended:
                self._wanted = True
                self._changed.notify_all()
                try:
                    await self._changed.wait_for(lambda: self.waiting or self._ended)
                finally:
                    self._wanted = False
        if self.waiting:
            return self.waiting[0]
        self._raised = True
        await self._reading  # ended: raises its failure, if any
        return None

    async def handed_on(self) -> None:
        async with self._changed:
            self.waiting.popleft()
            self._changed.notify_all()

    async def stop(self) -> None:
        """Read no more; once the read under way is done, ``waiting`` holds the groups never handed on."""
        async with self._changed:
            self._stopping = True
            self._changed.notify_all()
        await asyncio.wait([self._reading])  # cancelled, this wait ends, not the read under way
        failure = None if self._reading.cancelled() else self._reading.exception()
        if failure is not None and not self._raised:  # lost to the run's own stop: said, at least
            log.warning("export.read_ahead_failed", error=redact_text(f"{type(failure).__name__}: {failure}"))


async def _groups(batches: AsyncGenerator[MappedRows, None]) -> AsyncGenerator[list[MappedRows], None]:
    """The batches in groups of ``GROUP_ROWS`` rows or ``GROUP_BATCHES`` batches (the last may be
    smaller); closed, it closes ``batches`` (the source's reader)."""
    group: list[MappedRows] = []
    async with aclosing(batches):
        async for batch in batches:
            group.append(batch)
            if _rows(group) >= GROUP_ROWS or len(group) >= GROUP_BATCHES:
                yield group
                group = []
    if group:
        yield group


def _rows(group: list[MappedRows]) -> int:
    return sum(batch.size for batch in group)


def _outcome_seen(future: asyncio.Future[int | None]) -> None:
    if not future.cancelled():
        future.exception()
