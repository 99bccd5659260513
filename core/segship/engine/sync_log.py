"""What a run writes to the member-level sync log: the changes of each batch the destination answered,
as state takes them (``LoggedChanges``: a record batch of ``SYNC_LOG_COLUMNS``), written by the
commit that saves the batch (``StateStore.commit_upserts`` / ``commit_removals``).

A join is an ``add`` (state makes it a ``move`` when the member was in another target), a change an
``update`` with the columns whose value changed (none, in a full resync: an unchanged member sent
again writes nothing), a leaver a ``remove`` (an identity a member no longer has, a ``remove``
with the reason ``EARLIER_IDENTITY``), a row the mapping or the destination refused ``refused`` with
the reason, a field dropped from a row that was sent anyway ``dropped_field`` with the field and
the reason (``BatchChanges.changes``' ``dropped_fields``). A first run's batches are all joins: their changes are
the acknowledged key and identity columns as they are, with no Python object per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from segship.destination import Member
from segship.engine.state import SYNC_LOG_ACTIONS, SYNC_LOG_COLUMNS

ACTION = {name: code for code, name in enumerate(SYNC_LOG_ACTIONS)}
CHANGES = pa.schema(list(zip(SYNC_LOG_COLUMNS, (pa.string(), pa.string(), pa.int32(), pa.string(), pa.string()),
                              strict=True)))
#: The identity of a change the identity of which is not known (a row the mapping refused)
UNKNOWN_IDENTITY = ""
#: Why a member's identity is removed while the member stays: it replaced it, or moved from there
EARLIER_IDENTITY = "an earlier identity of the member (replaced, or left in an earlier target by a move)"


@dataclass
class BatchChanges:
    """What a batch sent to be upserted logs once it is answered, kept with its answer until its
    group commits: the rows that were changes (key -> the columns that changed; None: not known,
    every field was sent) and the identities of its refused records."""

    updates: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    identities: Mapping[str, str] = field(default_factory=dict)

    def changes(self, acknowledged: pa.RecordBatch, refused: Sequence[tuple[str, str]],
                dropped_fields: Sequence[tuple[str, str, str]] = ()) -> pa.RecordBatch:
        """The batch's changes: its acknowledged rows (key, identity as ``MappedRows.answered`` gives
        them), the fields their records left out ((key, field, reason): the answer's dropped
        fields), its refused ((key, reason, ...))."""
        parts = [self._joins_and_updates(acknowledged)]
        if dropped_fields:
            sent = dict(zip(acknowledged.column("key").to_pylist(), acknowledged.column("identity").to_pylist(),
                            strict=True))
            parts.append(rows([(key, sent[key], "dropped_field", name, reason)
                               for key, name, reason in dropped_fields if key in sent]))
        if refused:
            parts.append(rows([(each[0], self.identities.get(each[0], UNKNOWN_IDENTITY), "refused", None, each[1])
                               for each in refused]))
        return parts[0] if len(parts) == 1 else pa.concat_batches(parts)

    def _joins_and_updates(self, acknowledged: pa.RecordBatch) -> pa.RecordBatch:
        key, identity = acknowledged.column("key"), acknowledged.column("identity")
        if not self.updates:  # all joins (a first run): the columns as they are
            count = len(key)
            return pa.RecordBatch.from_arrays(
                [key.cast(pa.string()), _unless_key(key, identity), pa.repeat(pa.scalar(ACTION["add"], pa.int32()), count),
                 pa.nulls(count, pa.string()), pa.nulls(count, pa.string())], schema=CHANGES)
        logged = []
        for each_key, each_identity in zip(key.to_pylist(), identity.to_pylist(), strict=True):
            if each_key not in self.updates:
                logged.append((each_key, each_identity, "add", None, None))
                continue
            changed = self.updates[each_key]
            if changed is not None and not changed:
                continue  # sent again unchanged (a full resync)
            logged.append((each_key, each_identity, "update", ",".join(sorted(changed)) if changed else None, None))
        return rows(logged)


def removal_changes(removed: Sequence[Member], refused: Sequence[tuple[str, str]], identities: Mapping[str, str],
                    *, stale: bool) -> pa.RecordBatch:
    """A removal batch's changes: its removed members (identities a member no longer has, when
    ``stale``), its refused (key, reason), their identities from ``identities``."""
    reason = EARLIER_IDENTITY if stale else None
    return rows([(member.key, member.identity, "remove", None, reason) for member in removed]
                + [(key, identities.get(key, UNKNOWN_IDENTITY), "refused", None, why) for key, why in refused])


def rows(changes: Sequence[tuple[str, str | None, str, str | None, str | None]]) -> pa.RecordBatch:
    """(key, identity, action name, fields, reason) tuples as a record batch of ``CHANGES``; an
    identity equal to its key is kept as None (state's way to keep it in no byte)."""
    keys = [change[0] for change in changes]
    return pa.RecordBatch.from_arrays([
        pa.array(keys, pa.string()),
        pa.array([None if change[1] == change[0] else change[1] for change in changes], pa.string()),
        pa.array([ACTION[change[2]] for change in changes], pa.int32()),
        pa.array([change[3] for change in changes], pa.string()),
        pa.array([change[4] for change in changes], pa.string())], schema=CHANGES)


def _unless_key(key: pa.Array, identity: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(identity, key), pa.scalar(None, pa.string()), identity.cast(pa.string()))
