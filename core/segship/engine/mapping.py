"""The rows to send, mapped a batch at a time, and what state keeps once the destination answers.

Each Arrow batch of the send query is mapped whole by the destination's ``map_batch``
(column-wise where the plugin offers it, else ``map`` row by row), then cut into full
batches of the destination's size; the engine's own columns (key, hashes, is-new, mix,
key hash) are read column-wise: no Python object per row beyond what the destination
builds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from segship.destination import Destination, DroppedField, Records, RecordResult, RecordResults
from segship.engine.digest import KEY_HASH, MIX
from segship.engine.snapshot import COLUMN_HASHES, IS_NEW, KEY, ROW_HASH, WAREHOUSE_DIGEST, Snapshot, changed_columns
from segship.engine.state import ACKNOWLEDGED_COLUMNS, DroppedFields, Rejected
from segship.engine.sync_log import BatchChanges

ENGINE_COLUMNS = (KEY, ROW_HASH, COLUMN_HASHES, IS_NEW, MIX, KEY_HASH, WAREHOUSE_DIGEST)
#: The engine's columns state takes with an acknowledged row (and ``WAREHOUSE_DIGEST``, where the send query has it).
KEPT_COLUMNS = (KEY, ROW_HASH, COLUMN_HASHES, MIX, KEY_HASH)
#: What state knows of members: key -> (column hashes, identity) last acknowledged.
Known = Mapping[str, tuple[str | None, str]]
#: State's lookup of the keys given (blocking: it waits for the state thread).
Previous = Callable[[list[str]], Known]


@dataclass
class MappedRows:
    """Mapped records and what state needs when the destination acknowledges them.

    ``hashes`` holds the key, row hash, column hashes, mix and key hash (and a warehouse planner's row
    digest) of each record of ``records``, in order (Arrow, as the send query made them: state takes them
    without a Python object per row).
    """

    records: Records
    hashes: pa.RecordBatch                                   # KEPT_COLUMNS (and WAREHOUSE_DIGEST)
    previous_identity: dict[str, str] = field(default_factory=dict)  # key -> identity before this change
    refused: list[Rejected] = field(default_factory=list)    # rows the mapping refused, with their row hash
    dropped: dict[str, Sequence[DroppedField]] = field(default_factory=dict)  # key -> fields its record left out
    partial: dict[str, frozenset[str]] = field(default_factory=dict)  # key -> columns a change mapped (else all)
    #: key -> the columns whose value changed, of the rows that are changes (None: not known); for the sync log
    updates: dict[str, frozenset[str] | None] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.records) + len(self.refused)

    def dropped_fields(self, acknowledged: pa.RecordBatch) -> DroppedFields:
        """What the acknowledged records left out, and whose earlier dropped fields they replace."""
        keys = acknowledged.column(0)
        if not self.partial and len(keys) == len(self.records):  # every record mapped whole and acknowledged
            return DroppedFields(keys, (), [(key, column, reason) for key, fields in self.dropped.items()
                                            for column, reason in fields])
        whole: list[str] = []
        remapped: list[tuple[str, str]] = []
        fields: list[tuple[str, str, str]] = []
        for key in keys.to_pylist():
            columns = self.partial.get(key)
            if columns is None:
                whole.append(key)
            else:
                remapped += [(key, column) for column in columns]
            fields += [(key, column, reason) for column, reason in self.dropped.get(key, ())]
        return DroppedFields(whole, remapped, fields)

    def answered(self, results: Sequence[RecordResult]) -> tuple[pa.RecordBatch, list[tuple[str, str]], int]:
        """The destination's answer as state takes it: the acknowledged rows (a batch of
        :data:`~segship.engine.state.ACKNOWLEDGED_COLUMNS`, and ``MIX``, ``KEY_HASH``, and ``WAREHOUSE_DIGEST``
        where the rows have it), refused (key, reason), and how many records got no answer."""
        records = self.records
        if isinstance(results, RecordResults) and results.keys == records.keys:
            at = results.refused
            ok = None if not at else [index for index in range(len(records)) if index not in at]
            refused = [(records.keys[index], at[index]) for index in sorted(at)]
            missing = 0
        else:  # a result per record, any order: matched by key, an unknown key ignored rather than trusted
            position = {key: index for index, key in enumerate(records.keys)}
            ok, refused = [], []
            for result in results:
                index = position.pop(result.key, None)
                if index is None:
                    continue
                if result.error is None:
                    ok.append(index)
                else:
                    refused.append((result.key, result.error))
            missing = len(position)  # no answer: not committed, sent again next run
        key, row_hash, column_hashes, mix, key_hash, *digest = self.hashes.columns
        # usually each identity is its key (Braze's external id): the key column, not a million strings again
        identity = key.cast(pa.string()) if records.identities == records.keys else \
            pa.array(records.identities, pa.string())
        acknowledged = pa.RecordBatch.from_arrays(
            [key, row_hash, column_hashes, identity, mix, key_hash, *digest],
            names=[*ACKNOWLEDGED_COLUMNS, MIX, KEY_HASH, *self.hashes.schema.names[len(KEPT_COLUMNS):]])
        return (acknowledged if ok is None else acknowledged.take(pa.array(ok, pa.int64()))), refused, missing

    def replaced_identities(self, acknowledged: pa.RecordBatch) -> list[tuple[str, str]]:
        """(key, identity before) of acknowledged changes that moved the profile to another identity."""
        previous = self.previous_identity
        if not previous:
            return []
        keys, identities = acknowledged.column("key").to_pylist(), acknowledged.column("identity").to_pylist()
        return [(key, previous[key]) for key, identity in zip(keys, identities)
                if key in previous and previous[key] != identity]

    def changes(self, refused: Sequence[tuple[str, str]]) -> BatchChanges:
        """What the batch logs once answered (``refused``: the rows refused, (key, reason, ...), whose
        identity it keeps)."""
        identities = {}
        if refused:
            wanted = {each[0] for each in refused}
            identities = {key: identity for key, identity in zip(self.records.keys, self.records.identities)
                          if key in wanted}
        return BatchChanges(self.updates, identities)


def map_rows(rows: pa.RecordBatch, destination: Destination, columns: Sequence[str], before: Known,
             full_resync: bool, size: int | None = None, *, mapping: str | None = None,
             refuse_invalid_fields: bool = False) -> list[MappedRows]:
    """Map rows to send, cut into batches of ``size`` rows (all of them: one batch); ``columns`` are the
    source columns, in the column hashes' order, and ``before`` what state knows of the rows that
    are changes (:func:`known_before`). A row the mapping refuses is a reject of the ``mapping``
    fingerprint (``planning.mapping_fingerprint``); so is a row with a field to drop when
    ``refuse_invalid_fields`` (``on_invalid_field: reject``), for the first field's reason.

    The rows are mapped whole, then cut: a destination's ``map_batch`` costs the same per call
    whatever the rows' number (Arrow compute calls).
    """
    names = rows.schema.names

    def column(name: str) -> pa.Array:
        return rows.column(names.index(name))

    keys = column(KEY).to_pylist()
    hashes = rows.select([*KEPT_COLUMNS, *([WAREHOUSE_DIGEST] if WAREHOUSE_DIGEST in names else [])])
    is_new = column(IS_NEW)
    mapped = rows.select([index for index, name in enumerate(names) if name not in ENGINE_COLUMNS])
    previous_identity: dict[str, str] = {}
    updates: dict[str, frozenset[str] | None] = {}
    changed: list[frozenset[str] | None] | None = None
    if is_new.false_count:  # some rows are changes: what changed, and the identity they had
        news = is_new.to_pylist()
        changed = []
        for key, new, row_column_hashes in zip(keys, news, hashes.column(COLUMN_HASHES).to_pylist()):
            known = None if new else before.get(key)
            if known is not None:
                previous_identity[key] = known[1]
            # known even in a full resync (which sends every field): the sync log says what changed
            columns_changed = None if known is None else changed_columns(columns, known[0], row_column_hashes)
            if not new:
                updates[key] = columns_changed
            changed.append(None if full_resync else columns_changed)
        if changed.count(None) == len(changed):
            changed = None  # every row sends everything (a full resync): the destination's fastest path
    batch = destination.map_batch(mapped, changed)
    if len(batch.identities) != len(keys) or len(batch.payloads) != len(keys):
        raise TypeError(f"{type(destination).__name__}.map_batch answered {len(batch.identities)} identities and "
                        f"{len(batch.payloads)} payloads for {len(keys)} rows")
    if any(not 0 <= index < len(keys) for index in batch.rejects):
        raise TypeError(f"{type(destination).__name__}.map_batch refused rows it was not given "
                        f"({len(keys)} rows; refused {sorted(batch.rejects)[:5]}…)")
    rejects, dropped = batch.rejects, batch.dropped
    if dropped and refuse_invalid_fields:
        rejects = {**rejects, **{index: fields[0].reason for index, fields in dropped.items() if fields}}
        dropped = {}
    partial = {keys[index]: columns for index, columns in enumerate(changed) if columns is not None} \
        if changed is not None else {}
    mapped_rows = _MappedWhole(keys, batch.identities, batch.payloads, rejects, dropped, partial, hashes,
                               previous_identity, mapping, updates)
    size = size or len(keys)
    return [mapped_rows.cut(start, min(start + size, len(keys))) for start in range(0, len(keys), size)]


@dataclass(frozen=True)
class _MappedWhole:
    """The rows of an Arrow batch as ``map_batch`` mapped them, to cut into the destination's batches."""

    keys: list[str]
    identities: Sequence[str | None]
    payloads: Sequence[Any]
    rejects: Mapping[int, str]
    dropped: Mapping[int, Sequence[DroppedField]]
    partial: dict[str, frozenset[str]]   # key -> the columns a change's record mapped
    hashes: pa.RecordBatch
    previous_identity: dict[str, str]
    mapping: str | None
    updates: dict[str, frozenset[str] | None]  # key -> a change's changed columns, for the sync log

    def cut(self, start: int, stop: int) -> MappedRows:
        """Rows ``start`` to ``stop``, without the rows the mapping refused."""
        keys, rejects = self.keys, self.rejects
        dropped = {keys[index]: fields for index, fields in self.dropped.items()
                   if start <= index < stop and index not in rejects}
        partial = self.partial if not self.partial else {
            keys[index]: self.partial[keys[index]] for index in range(start, stop) if keys[index] in self.partial}
        refused_at = [index for index in sorted(rejects) if start <= index < stop]
        if not refused_at:
            return MappedRows(Records(keys[start:stop], self.identities[start:stop], self.payloads[start:stop]),
                              self.hashes.slice(start, stop - start), self.previous_identity, [], dropped, partial,
                              self.updates)
        row_hashes = self.hashes.column(ROW_HASH)
        refused = [Rejected(keys[index], rejects[index], row_hashes[index].as_py(), self.mapping)
                   for index in refused_at]
        kept = [index for index in range(start, stop) if index not in rejects]
        return MappedRows(Records([keys[index] for index in kept], [self.identities[index] for index in kept],
                                  [self.payloads[index] for index in kept]),
                          self.hashes.take(pa.array(kept, pa.int64())), self.previous_identity, refused, dropped,
                          partial, self.updates)


async def known_before(rows: pa.RecordBatch, previous: Previous) -> Known:
    """What state knows of the rows that are changes, looked up off the event loop (none: no lookup).

    The lookup waits for the state thread, behind the commits queued there, and on SQLite
    folds what they journaled: the loop sends and takes answers meanwhile.
    """
    is_new = rows.column(IS_NEW)
    if not is_new.false_count:
        return {}
    changed = rows.column(KEY).filter(pc.invert(is_new.fill_null(False)))
    return await asyncio.to_thread(previous, changed.to_pylist())


MapSlice = Callable[[pa.RecordBatch, Known, int], list[MappedRows]]


async def mapped_batches(snapshot: Snapshot, size: int, previous: Previous, map_slice: MapSlice) \
        -> AsyncGenerator[MappedRows, None]:
    """Mapped batches of the rows to add or update, read as the sending keeps up.

    Every batch but a segment's last is full: rows left over at the end of one Arrow
    batch wait for the next, so no request goes out part-empty (Braze: 75 users each).
    The rows of an Arrow batch are mapped at once (``map_slice(rows, before, size)``, ``before``
    from :func:`known_before`) and cut.
    """
    readers = snapshot.rows_to_send(batch_rows=size * -(-8192 // size))  # one per segment, in order
    for part, reader in zip(snapshot.segments, readers, strict=True):
        leftover: pa.RecordBatch | None = None
        while True:
            try:
                record_batch = await asyncio.to_thread(_next_batch, reader)
            except (pa.ArrowException, OSError) as exc:  # e.g. a warehouse that went away mid-stream
                raise snapshot.error(part.segment, f"stopped while its rows were read: {exc}") from None
            if record_batch is None:
                break
            if leftover is not None:
                record_batch, leftover = pa.concat_batches([leftover, record_batch]), None
            whole = record_batch.num_rows - record_batch.num_rows % size
            if whole < record_batch.num_rows:
                leftover = record_batch.slice(whole)
            if whole:
                rows = record_batch.slice(0, whole)
                for mapped in map_slice(rows, await known_before(rows, previous), size):
                    yield mapped
                    await asyncio.sleep(0)  # let answers in
        if leftover is not None:
            for mapped in map_slice(leftover, await known_before(leftover, previous), size):
                yield mapped


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    """The next batch, or None at the end (StopIteration can't cross a thread's future)."""
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None
