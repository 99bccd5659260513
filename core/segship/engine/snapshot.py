"""An export's members, hashed in bulk in DuckDB, and their diff against state.

The segments' rows stream from their sources (Arrow) into an in-memory DuckDB that
keeps only (key, segment, row hash): memory grows with the number of members, not
with the width of their rows. Key checks, the union of segments and the diff against
what the destination acknowledged are set operations there, never Python loops. The
rows to send are read again from the sources, joined to the diff, and streamed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import orjson
import pyarrow as pa

from segship import embedded_duckdb
from segship.config import Config, ExportConfig, SegmentConfig
from segship.embedded_duckdb import quote_identifier
from segship.engine.report import ExportPlan
from segship.plugins import Plugins
from segship.source import Source, SourceError

#: DuckDB's own memory for the snapshot, the diff and the send join (beyond it, it spills).
SNAPSHOT_MEMORY_MB = 160
HASH_MASK = 0x7FFFFFFFFFFFFFFF  # DuckDB hashes are unsigned 64-bit; SQLite integers are signed
EXAMPLES = 5
# columns the send query adds to each row, beside the mapped ones
KEY, ROW_HASH, COLUMN_HASHES, IS_NEW = "__segship_key", "__segship_row_hash", "__segship_column_hashes", "__segship_new"


class PlanError(Exception):
    """The export's rows can't be planned (bad keys, missing columns, failing SQL); nothing was sent."""


def export_fingerprint(type_name: str, export: ExportConfig, columns: Sequence[str]) -> str:
    """What the acknowledged hashes depend on besides the rows: a change re-sends everyone."""
    material = orjson.dumps([type_name, export.settings, export.mapping, list(columns)],
                            option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(material).hexdigest()


def changed_columns(columns: Sequence[str], old_hashes: str | None, new_hashes: str) -> frozenset[str] | None:
    """Columns whose hash differs; None when the old hashes are unknown (send everything)."""
    if old_hashes is None:
        return None
    old, new = old_hashes.split(","), new_hashes.split(",")
    if len(old) != len(new):
        return None
    return frozenset(column for column, before, after in zip(columns, old, new, strict=True) if before != after)


@dataclass
class _SegmentSource:
    segment: SegmentConfig
    index: int


class Snapshot:
    """One export's members in DuckDB; ``plan`` diffs them, ``rows_to_send`` streams what changed."""

    def __init__(self, config: Config, export: ExportConfig, plugins: Plugins, columns: Sequence[str]) -> None:
        self.config = config
        self.export = export
        self.plugins = plugins
        self.columns = list(columns)
        self.segments = [_SegmentSource(config.segments[name], index) for index, name in enumerate(export.segments)]
        self.db = embedded_duckdb.connect(SNAPSHOT_MEMORY_MB)
        self._sources: dict[str, Source] = {}

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self.db.close()

    def _error(self, segment: SegmentConfig, problem: str) -> PlanError:
        """A problem with a segment's rows, placed at the segment in the config."""
        return PlanError(f"{self.config.where('segments', segment.name)}: segment {segment.name!r} {problem}")

    # -- reading segments ----------------------------------------------------------------------

    def _source(self, name: str) -> Source:
        if name not in self._sources:
            source_config = self.config.sources[name]
            cls = self.plugins.source(source_config.type)
            if cls is None:
                raise PlanError(f"source {name!r} has type {source_config.type!r}, which no installed plugin provides")
            self._sources[name] = cls(source_config.context())  # resolves the source's secrets
        return self._sources[name]

    def _hashes(self, alias: str = "s") -> tuple[str, str]:
        """SQL for the row hash and the comma-joined per-column hashes of the mapped columns."""
        cols = [f"{alias}.{quote_identifier(c)}" for c in self.columns]
        row_hash = f"(hash({', '.join(cols)}) & {HASH_MASK})::BIGINT"
        per_column = ", ".join(f"((hash({c}) & {HASH_MASK})::BIGINT)::VARCHAR" for c in cols)
        return row_hash, f"concat_ws(',', {per_column})"

    def _query(self, part: _SegmentSource, select: str, tail: str = "") -> duckdb.DuckDBPyRelation:
        """Run ``select`` over a segment's rows, registered as ``s``; explain a missing column."""
        segment = part.segment
        view = f"segment_rows_{part.index}"
        try:
            reader = self._source(segment.source).read(segment.sql)  # a warehouse fails here: placed too
            self.db.register(view, reader)
            return self.db.sql(f"SELECT {select} FROM {view} AS s {tail}")
        except duckdb.BinderException as exc:
            missing = [c for c in [segment.key, *self.columns] if c not in reader.schema.names]
            if missing:
                raise self._error(segment, f"has no column {missing[0]!r}, which export "
                                f"{self.export.name!r} needs (columns: {', '.join(reader.schema.names)})") from None
            raise self._error(segment, f"failed: {exc}") from None
        except (duckdb.Error, SourceError) as exc:
            raise self._error(segment, f"failed: {exc}") from None

    # -- planning -------------------------------------------------------------------------------

    def build(self) -> None:
        """Load (key, segment, row hash) of every segment row and check the keys."""
        row_hash, _ = self._hashes()
        self.db.execute("CREATE TABLE snapshot (key VARCHAR, seg INTEGER, row_hash BIGINT)")
        for part in self.segments:
            key = f"CAST(s.{quote_identifier(part.segment.key)} AS VARCHAR)"
            relation = self._query(part, f"{key} AS key, {part.index} AS seg, {row_hash} AS row_hash")
            try:
                relation.insert_into("snapshot")
            except (duckdb.Error, pa.ArrowException, SourceError) as exc:
                raise self._error(part.segment, f"failed: {exc}") from None
        self._check_keys()
        if len(self.segments) == 1:  # the keys are unique: the snapshot is the members (no second copy)
            self.db.execute("ALTER TABLE snapshot RENAME TO members")
        else:
            self.db.execute("CREATE TABLE members AS SELECT key, min(seg) AS seg, any_value(row_hash) AS row_hash "
                            "FROM snapshot GROUP BY key")
            self.db.execute("DROP TABLE snapshot")

    def _check_keys(self) -> None:
        names = {part.index: part.segment for part in self.segments}
        for seg, nulls in self.db.execute("SELECT seg, count(*) FROM snapshot WHERE key IS NULL GROUP BY seg "
                                          "ORDER BY seg").fetchall():
            segment = names[seg]
            raise self._error(segment, f"has null keys: {nulls} row(s) have no {segment.key!r} (the key must "
                            "not be null); nothing was sent")
        duplicates = self.db.execute(
            "SELECT seg, key, count(*) AS n FROM snapshot "
            "GROUP BY seg, key HAVING count(*) > 1 ORDER BY seg, key LIMIT ?", (EXAMPLES,)).fetchall()
        if duplicates:
            segment = names[duplicates[0][0]]
            total = self.db.execute("SELECT count(*) FROM (SELECT key FROM snapshot WHERE seg = ? GROUP BY key "
                                    "HAVING count(*) > 1)", (duplicates[0][0],)).fetchone()[0]
            examples = ", ".join(f"{key} ({n} rows)" for seg, key, n in duplicates if seg == duplicates[0][0])
            raise self._error(segment, f"key {segment.key!r} is not unique: {total} key(s) appear "
                            f"more than once, e.g. {examples}; nothing was sent")
        if len(self.segments) == 1:
            return  # a key in one segment only: nothing to disagree with
        # min <> max: two different row hashes, as cheap as a plain aggregate (count(DISTINCT) took
        # 0.4 s of a 1M-row plan); the segments of the first such key are looked up afterwards
        conflict = self.db.execute(
            "SELECT key FROM snapshot GROUP BY key HAVING min(row_hash) <> max(row_hash) ORDER BY key LIMIT 1"
        ).fetchone()
        if conflict:
            key = conflict[0]
            segs = [row[0] for row in self.db.execute(
                "SELECT DISTINCT seg FROM snapshot WHERE key = ? ORDER BY seg", (key,)).fetchall()]
            both = " and ".join(repr(names[s].name) for s in segs)
            raise PlanError(f"key {key!r} is in segments {both} with different rows; an export's segments must "
                            "agree on the row of a shared key; nothing was sent")

    def plan(self, acknowledged: pa.Table, *, full_resync: bool) -> ExportPlan:
        """Diff the members against what the destination acknowledged (key, row_hash)."""
        self.db.register("acknowledged", acknowledged)
        changed = "TRUE" if full_resync else "a.row_hash <> m.row_hash"
        self.db.execute(f"""
            CREATE OR REPLACE TABLE actions AS
            SELECT coalesce(m.key, a.key) AS key, m.seg AS seg,
                   CASE WHEN a.key IS NULL THEN 'add'
                        WHEN m.key IS NULL THEN 'remove'
                        WHEN {changed} THEN 'update'
                        ELSE 'unchanged' END AS action
            FROM members m FULL OUTER JOIN acknowledged a ON m.key = a.key""")
        self.db.unregister("acknowledged")
        self.db.execute("DROP TABLE members")  # actions has every member: one copy of the keys at a time
        plan = ExportPlan(self.export.name, full_resync=full_resync)
        for action, count in self.db.execute("SELECT action, count(*) FROM actions GROUP BY action").fetchall():
            setattr(plan, action, count)
        plan.members = plan.add + plan.update + plan.unchanged
        plan.acknowledged = plan.update + plan.unchanged + plan.remove
        for action in ("add", "update", "remove"):
            if getattr(plan, action):  # a top-N per action: never a list of every key
                plan.examples[action] = [row[0] for row in self.db.execute(
                    "SELECT key FROM actions WHERE action = ? ORDER BY key LIMIT ?", (action, EXAMPLES)).fetchall()]
        return plan

    def keys_to_remove(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT key FROM actions WHERE action = 'remove' ORDER BY key")
                .fetchall()]

    def non_members(self, keys: Sequence[str]) -> list[str]:
        """The given keys that are not members of the export now."""
        self.db.register("probe", pa.table({"key": pa.array(list(keys), pa.string())}))
        try:
            return [row[0] for row in self.db.execute(
                "SELECT key FROM probe ANTI JOIN (SELECT key FROM actions WHERE action <> 'remove') USING (key)")
                .fetchall()]
        finally:
            self.db.unregister("probe")

    # -- sending -----------------------------------------------------------------------------------

    def rows_to_send(self, batch_rows: int = 8192, keys: Sequence[str] | None = None) -> Iterator[pa.RecordBatchReader]:
        """Readers over the rows to add or update (or just ``keys``), each row once, with its hashes."""
        row_hash, column_hashes = self._hashes()
        mapped = ", ".join(f"s.{quote_identifier(c)}" for c in self.columns)
        if keys is not None:
            self.db.register("wanted", pa.table({"key": pa.array(list(keys), pa.string())}))
            filter_ = "JOIN wanted w ON w.key = a.key"
        else:
            filter_ = "WHERE a.action IN ('add', 'update')"
        uniform = self._uniform_action() if keys is None else None
        for part in self.segments:
            key = f"CAST(s.{quote_identifier(part.segment.key)} AS VARCHAR)"
            columns = f"{mapped}, {key} AS {KEY}, {row_hash} AS {ROW_HASH}, {column_hashes} AS {COLUMN_HASHES}"
            if uniform is not None:
                # every row is sent, all as joins or all as changes: no join with the plan (whose hash
                # table of every key is the largest allocation of a first run)
                yield self._query(part, f"{columns}, {uniform == 'add'} AS {IS_NEW}").to_arrow_reader(batch_rows)
                continue
            select = f"{columns}, a.action = 'add' AS {IS_NEW}"
            tail = f"JOIN actions a ON a.key = {key} AND a.seg = {part.index} {filter_}"
            yield self._query(part, select, tail).to_arrow_reader(batch_rows)

    def _uniform_action(self) -> str | None:
        """'add' or 'update' when a single segment's every row is sent with that action, else None."""
        if len(self.segments) != 1:
            return None
        sent = self.db.execute("SELECT DISTINCT action FROM actions WHERE action <> 'remove'").fetchall()
        return sent[0][0] if len(sent) == 1 and sent[0][0] in ("add", "update") else None
