"""The plan of an export whose source has a warehouse planner: the local :class:`~segship.engine.snapshot.Snapshot`'s
part in a run and in ``segship plan``, done in the warehouse (``engine/warehouse_members.py``).

``plan`` classifies in the warehouse and reads back counts and a few example keys; ``rows_to_send``
streams the plan's rows (only those) through an in-memory DuckDB, as the local planner streams a
warehouse segment, so the destination maps the same Arrow types either way; the leavers' identities
come out of the plan too. What each row to send had acknowledged before comes out with it and is
kept by :class:`~segship.engine.warehouse_state.WarehouseState` for the mapping (changed columns,
replaced identities) and the commit (a moved member's old target). Keys sharing an identity are
found in the warehouse too, with the destination's rule written in its SQL (``identity_conflicts``:
``first`` leaves them out before classifying; ``error`` checks once something is to be sent, as the
local planner does).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from segship.config import Config, ExportConfig, SegmentConfig
from segship.engine.digest import KEY_HASH, MIX, DigestTally, key_hash_sql, mix_sql
from segship.engine.report import ExportPlan
from segship.engine.snapshot import (
    COLUMN_HASHES,
    EXAMPLES,
    IS_NEW,
    KEY,
    ROW_HASH,
    WAREHOUSE_DIGEST,
    PlanError,
    _SegmentSource,
    identity_conflict_error,
    identity_rule,
)
from segship.engine.state import MembersDigest
from segship.engine.warehouse_members import DIGEST, PREVIOUS_HASHES, PREVIOUS_IDENTITY, PREVIOUS_TARGET
from segship.engine.warehouse_state import WarehouseState
from segship.plugins import Plugins
from segship.sql_text import quote


class WarehouseSnapshot:
    """One export's plan in its warehouse (the members are ``state``'s)."""

    def __init__(self, config: Config, export: ExportConfig, plugins: Plugins, columns: Sequence[str],
                 state: WarehouseState) -> None:
        self.config, self.export, self.columns, self.state = config, export, list(columns), state
        self.plugins = plugins
        self.members = state.members
        self.segments = [_SegmentSource(config.segments[name], index) for index, name in enumerate(export.segments)]
        self.identity = identity_rule(config, export, plugins, self.columns)
        self.left_out: list[str] = []  # keys left out for sharing an identity with a lower key (first)
        self.tally = DigestTally(0, 0)
        self.target = 1
        self._refusals: pa.Table | None = None  # the export's rejects (read_rejects)
        self._left_out_found = False  # the keys to leave out are (identity_conflicts: first)
        self._acknowledged: int | None = None  # the members' count, when their digest gave it
        self.db = duckdb.connect()

    def close(self) -> None:
        self.db.close()
        self.state.close()

    def error(self, segment: SegmentConfig, problem: str) -> PlanError:
        return PlanError(f"{self.config.where('segments', segment.name)}: segment {segment.name!r} {problem}")

    # -- the parts of the local planner's protocol that have nothing to do here -------------------------

    def reads_state_after(self, recorded: MembersDigest) -> bool:
        return True  # the warehouse reads the segment where it is, and diffs it against its members

    def build(self, *, row_hashes: bool = True, identities: bool = True, recorded: MembersDigest | None = None,
              target: int = 1) -> None:
        """Nothing to build: the warehouse hashes the segment as it classifies it (:meth:`plan`)."""

    def read_acknowledged(self, acknowledged: pa.RecordBatchReader) -> None:
        """Nothing to read: the warehouse diffs against the members it keeps."""

    def unchanged_plan(self, recorded: MembersDigest, target: int = 1) -> ExportPlan | None:
        """The plan, every member unchanged, when the segments' rows sum to ``recorded`` (the warehouse's
        digest of its members: one pass over the rows, no join, nothing read out); else None."""
        if recorded.kind != self.members.dialect.digest_kind:
            return None
        self.target = target
        segments, where = self._segments()
        self._leave_out(segments)
        if self.members.segments_digest(segments, self.columns, target, where=where) != recorded:
            self._acknowledged = recorded.members  # the plan needn't count them
            return None
        self.members.plan_unchanged(segments, self.columns, target, where=where)
        plan = ExportPlan(self.export.name)
        plan.members = plan.acknowledged = plan.unchanged = recorded.members
        self.tally = DigestTally(plan.unchanged, 0)
        return plan

    def read_rejects(self, refusals: pa.Table, mapping: str | None) -> None:
        """Keep the export's rejects for :meth:`plan`, as the local planner does: a row segship's mapping
        refused under the ``mapping`` fingerprint (None: under none) is still refused while its row hash
        is the one refused; every other reject is sent again (``retry``)."""
        if not refusals.num_rows:
            return
        by_mapping = pc.and_(pc.equal(refusals.column("origin"), "mapping"),
                             pc.equal(refusals.column("fingerprint"), mapping or ""))
        refused_hash = pc.if_else(pc.fill_null(by_mapping, False), refusals.column("row_hash"),
                                  pa.scalar(None, pa.int64()))
        self._refusals = pa.table({"key": refusals.column("key"), "refused_hash": refused_hash,
                                   "since_run": refusals.column("since_run")})

    # -- planning --------------------------------------------------------------------------------------

    def plan(self, *, full_resync: bool, target: int = 1) -> ExportPlan:
        self.target = target
        segments, where = self._segments()
        self._leave_out(segments)
        counts = self.members.classify(segments, self.columns, target, full_resync=full_resync, where=where,
                                       acknowledged=self._acknowledged)
        identity = self._identity()
        changes = counts.get("add", 0) + counts.get("update", 0) + counts.get("move", 0)
        # as the local planner: members all unchanged were acknowledged so, with no two keys on one identity
        if identity is not None and self.export.identity_conflicts == "error" and changes:
            self._check_identity_conflicts(identity, changes)
        plan = ExportPlan(self.export.name, full_resync=full_resync)
        if self._refusals is not None and (counts.get("add") or counts.get("update")):
            plan.refused, plan.retry = self.members.mark_rejects(self._refusals.select(["key", "refused_hash"]))
            plan.refused_since_run = self._refused_since_run() if plan.refused else None
            counts = {**self.members.counts(), "acknowledged": counts["acknowledged"]}
        plan.add, plan.update, plan.move, plan.remove = (counts.get(action, 0)
                                                         for action in ("add", "update", "move", "remove"))
        plan.acknowledged = counts["acknowledged"]
        plan.unchanged = plan.acknowledged - plan.update - plan.move - plan.remove - counts.get("refused_members", 0)
        plan.members = plan.add + plan.update + plan.unchanged + plan.move + plan.retry + plan.refused
        for action in ("add", "retry", "update", "move", "remove"):
            if getattr(plan, action):
                plan.examples[action] = self.members.examples(action, EXAMPLES)
        self.tally = DigestTally(plan.unchanged, 0, (plan.to_send, 0))  # no digest is kept of these members
        return plan

    def _segments(self) -> tuple[list[tuple[str, str]], list[str]]:
        """The segments' (sql, key column), and where each is in the config (for errors)."""
        return ([(part.segment.sql, part.segment.key) for part in self.segments],
                [f"{self.config.where('segments', part.segment.name)}: segment {part.segment.name!r}"
                 for part in self.segments])

    def _leave_out(self, segments: list[tuple[str, str]]) -> None:
        """``identity_conflicts: first``: leave out the keys whose identity a lower key shares (once a plan)."""
        identity = self._identity()
        if identity is not None and self.export.identity_conflicts == "first" and not self._left_out_found:
            self.left_out = self.members.leave_out_shared_identities(segments, identity)
            self._left_out_found = True

    def _refused_since_run(self) -> int | None:
        """The earliest run since which a row planned as still refused is refused."""
        held = self.members.keys_of("refused")
        since = [run for key, run in zip(self._refusals.column("key").to_pylist(),
                                         self._refusals.column("since_run").to_pylist(), strict=True)
                 if key in held and run is not None]
        return min(since, default=None)

    def _identity(self) -> str | None:
        """SQL of a segment row's (``s``) normalised identity, when the destination says how it compares them."""
        rule = self.identity
        return None if rule is None else self.members.dialect.identity(f"s.{quote(rule.column)}", rule)

    def _check_identity_conflicts(self, identity: str, planned: int) -> None:
        shared, groups = self.members.shared_identities(identity, EXAMPLES, planned)
        if shared:
            raise identity_conflict_error(self.config, self.export.name, self.identity, shared, groups)

    def counts_by_target(self, action: str) -> dict[int, int]:
        return self.members.counts_by_target(action)

    def keys_to_remove(self) -> list[str]:
        return [member.key for members in self.members.leavers().values() for member in members]

    def non_members(self, keys: Sequence[str]) -> list[str]:
        return self.members.non_members(keys)

    def settled(self, keys: Sequence[str]) -> list[str]:
        return self.members.settled(keys)

    # -- sending ---------------------------------------------------------------------------------------

    def rows_to_send(self, batch_rows: int = 8192, keys: Sequence[str] | None = None) -> Iterator[pa.RecordBatchReader]:
        """Readers over the rows to add, update or move (or just ``keys``), with the engine's columns: one per
        segment, as the local planner's, but the plan reads every segment at once, so every row comes in
        the first and the others are empty."""
        reader = self.members.read(self.members.send_query(self.columns, keys))
        mapped = ", ".join(quote(column) for column in self.columns)
        relation = self.db.from_arrow(reader).project(
            f"{mapped}, segship_key AS {KEY}, segship_column_hashes AS {COLUMN_HASHES}, segship_new AS {IS_NEW}, "
            f"segship_row_hash AS {ROW_HASH}, {mix_sql(KEY, ROW_HASH, str(int(self.target)))} AS {MIX}, "
            f"{key_hash_sql(KEY)} AS {KEY_HASH}, {DIGEST} AS {WAREHOUSE_DIGEST}, "
            f"{PREVIOUS_HASHES}, {PREVIOUS_IDENTITY}, {PREVIOUS_TARGET}")
        rows = relation.to_arrow_reader(batch_rows)
        previous = (PREVIOUS_HASHES, PREVIOUS_IDENTITY, PREVIOUS_TARGET)
        schema = pa.schema([field for field in rows.schema if field.name not in previous])

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in rows:
                self.state.remember_previous(batch, KEY, *previous)
                yield batch.select(schema.names)

        yield pa.RecordBatchReader.from_batches(schema, batches())
        for _ in self.segments[1:]:
            yield pa.RecordBatchReader.from_batches(schema, [])
