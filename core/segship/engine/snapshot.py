"""An export's members, hashed in bulk in DuckDB, and their diff against state.

The segments' rows stream from their sources (Arrow) into an in-memory DuckDB that
keeps only (key, segment, row hash): memory grows with the number of members, not
with the width of their rows. A source that can attach itself to that DuckDB (the
built-in ``duckdb`` one: :meth:`segship.source.Source.attach`) is queried in it instead,
with no stream in between. Key checks, the union of segments and the diff against
what the destination acknowledged are set operations there, never Python loops. The
rows to send are read again from the segments, joined to the diff, and streamed.

A segment streamed from a source that doesn't attach (a warehouse) is read once: the
first time its rows are needed, the columns the export uses are staged in a table of the
engine's DuckDB (which spills, within its memory cap, to the snapshot's private scratch
folder: ``engine/scratch.py``), and everything after (hashing, the send, a lookup) reads
that copy. So the send sees exactly the rows the plan saw, the warehouse runs the query
once, and its connection is closed once its segments are staged.

Where the destination declares how it compares identities (``Destination.identity_rule``),
a hash of each member's normalised identity is kept too, and keys sharing one (two customer
IDs, one email: one profile at the destination) are found with a GROUP BY: they stop the
plan (``identity_conflicts: error``), or all but the lowest key are left out (``first``).
With ``error`` a plan that finds every member unchanged (the digest, or state holding
exactly the members) skips the check: those members and rows are the ones the destination
acknowledged, and a run acknowledges no two keys with one identity; any change has the
identities of the rows it changes looked for among every member's. So a plan the digest may
spare doesn't compute identities while it reads the segments (:meth:`Snapshot.build`), and
reads them again, alone, only if the digest doesn't hold.

An export of a single streamed segment keeps its digest by bucket of keys (:mod:`segship.engine.buckets`):
its staged rows are counted by bucket, and only the buckets that differ from state's record are
hashed and diffed against state's rows of those buckets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import duckdb
import orjson
import pyarrow as pa

from segship import embedded_duckdb
from segship.config import Config, ExportConfig, SegmentConfig
from segship.destination import IdentityRule
from segship.engine import buckets, hashing
from segship.engine.buckets import DIFFERING, RECORDED_BUCKETS, SEGMENT_BUCKETS, bucket_sql
from segship.engine.digest import (
    DIGEST_KIND,
    KEY_HASH,
    MIX,
    DigestTally,
    key_hash_sql,
    mix_sql,
    mix_sum_sql,
    signed_64,
)
from segship.engine.report import ExportPlan
from segship.engine.scratch import ScratchFolder
from segship.engine.state import MembersDigest
from segship.errors import SegshipError
from segship.plugins import Plugins
from segship.source import Source, SourceError
from segship.sql_text import literal, quote

#: DuckDB's own memory for the snapshot, the diff and the send join (beyond it, it spills).
SNAPSHOT_MEMORY_MB = 128
#: DuckDB's memory while staged rows are sent: it would keep the blocks it reads back cached up to
#: its cap, beside the batches being mapped and sent, and the send only scans them and joins the
#: rows to send.
SEND_MEMORY_MB = 48
EXAMPLES = 5
#: The catalog of the in-memory DuckDB, with the engine's own tables. A segment's query over an
#: attached source runs with the source's catalog as the default, so it names the engine's tables.
ENGINE = "memory.main"
# columns the send query adds to each row, beside the mapped ones and the digest's (``MIX``, ``KEY_HASH``)
KEY, ROW_HASH, COLUMN_HASHES, IS_NEW = "__segship_key", "__segship_row_hash", "__segship_column_hashes", "__segship_new"
#: The column a warehouse planner's send query adds too: the row's digest in the warehouse's own hashing,
#: which its member keeps once acknowledged with the row's column hashes (``WarehouseDialect.row_digest``).
WAREHOUSE_DIGEST = "__segship_warehouse_digest"
#: What Python's ``str.strip()`` strips (destinations trim identities so): ignored around an identity.
WHITESPACE = "".join(character for character in map(chr, range(0x110000)) if character.isspace())
#: Identities (the hashes of the normalised ones) two or more members share, with the lowest key of each.
#: min <> max: a duplicated key's rows are one member, not a conflict, and it is as cheap as a plain
#: aggregate (count(DISTINCT) is not).
SHARED_IDENTITIES = ("SELECT ident, min(key) AS first_key FROM {table} WHERE ident IS NOT NULL GROUP BY ident "
                     "HAVING min(key) <> max(key)")
#: The same identities in a table whose keys are unique (the members): counting rows tells them, at half
#: the cost of comparing each identity's least and greatest key.
SHARED_AMONG_MEMBERS = "SELECT ident FROM {table} WHERE ident IS NOT NULL GROUP BY ident HAVING count(*) > 1"
#: The hash of a normalised identity (``identity``, from :func:`identity_sql`): DuckDB's, the plan's own, never kept.
IDENT = "CASE WHEN identity IS NOT NULL THEN hash(identity) END"
#: How each normalisation of ``IdentityRule`` reads in messages.
COMPARED = {"exact": "", "trim": " (surrounding whitespace ignored)",
            "lower": " (compared case-insensitively, surrounding whitespace ignored)"}
#: The actions whose rows a run sends, as SQL.
SENT_ACTIONS = "('add', 'update', 'move', 'retry')"


class PlanError(SegshipError):
    """The export's rows can't be planned (bad keys, missing columns, failing SQL); nothing was sent."""


def export_fingerprint(type_name: str, export: ExportConfig, columns: Sequence[str],
                       target_settings: Sequence[str] = ()) -> str:
    """What the acknowledged hashes (and the rows segship's mapping refused) depend on besides the
    rows: a change re-sends everyone.

    ``target_settings`` are left out: changing one moves the members instead. (Without
    them this is the fingerprint segship recorded before moves existed.)
    """
    settings = {name: value for name, value in export.settings.items() if name not in target_settings}
    material = [type_name, settings, export.mapping, list(columns)]
    if export.on_invalid_field != "drop":  # a rule of the mapping; the default leaves earlier fingerprints as they were
        material.append({"on_invalid_field": export.on_invalid_field})
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


def identity_sql(rule: IdentityRule, value: str) -> str:
    """SQL of the normalised identity of the SQL ``value`` under ``rule``: NULL where it is none the
    mapping accepts (NULL, empty, too long, or not matching the rule's pattern)."""
    text = f"CAST({value} AS VARCHAR)"
    if rule.normalisation in ("trim", "lower"):
        # DuckDB trims by a set of characters slowly (benchmarks/RESULTS.md, identity conflicts): only
        # what starts or ends with one of them is trimmed
        whitespace = literal(WHITESPACE)
        text = (f"(CASE WHEN contains({whitespace}, left({text}, 1)) OR contains({whitespace}, right({text}, 1)) "
                f"THEN trim({text}, {whitespace}) ELSE {text} END)")
    if rule.normalisation == "lower":
        text = f"lower({text})"
    accepted = f"{text} <> ''"
    if rule.max_length is not None:
        accepted += f" AND length({text}) <= {int(rule.max_length)}"
    if rule.pattern is not None:
        accepted += f" AND regexp_full_match({text}, {literal(rule.pattern)})"
    return f"CASE WHEN {accepted} THEN {text} END"


def identity_rule(config: Config, export: ExportConfig, plugins: Plugins, columns: Sequence[str]) -> IdentityRule | None:
    """How the export's destination compares identities, when it says and the mapping reads the column."""
    destination = plugins.destination(config.connections[export.connection].type)
    rule = destination.identity_rule(export.mapping) if destination is not None else None
    return rule if rule is not None and rule.column in columns else None


def identity_conflict_error(config: Config, name: str, rule: IdentityRule, shared: int,
                            groups: Sequence[tuple[str, Sequence[str]]]) -> PlanError:
    """``identity_conflicts: error``: ``shared`` identities held by more than one key; ``groups``, a few
    of them (identity, its keys)."""
    examples = ", ".join(f"{identity!r} (keys {', '.join(map(repr, keys))})" for identity, keys in groups)
    return PlanError(
        f"{config.where('exports', name)}: export {name!r}: {shared} {rule.name}(s) are shared by more "
        f"than one key, e.g. {examples}; keys with one {rule.name}{COMPARED[rule.normalisation]} would become "
        f"one profile at the destination; nothing was sent. Give each {rule.name} one key in the segment's "
        f"source, or set exports.{name}.identity_conflicts: first (the lowest key of each is sent, the "
        "others left out)")


def normalised_identity(rule: IdentityRule, value: object) -> str | None:
    """The identity the plan makes of one value under ``rule`` (None: one the mapping refuses), for a
    destination's tests: it must be the identity ``map`` makes of the value, or ``map`` refuses it."""
    with duckdb.connect() as db:
        return db.execute(f"SELECT {identity_sql(rule, '$value')}", {"value": value}).fetchone()[0]


def changed_columns(columns: Sequence[str], old_hashes: bytes | None, new_hashes: bytes) -> frozenset[str] | None:
    """Columns whose hash differs; None when the old hashes are unknown or of another kind (send everything)."""
    if not isinstance(old_hashes, bytes) or len(old_hashes) != len(new_hashes):
        return None
    size = hashing.COLUMN_HASH_BYTES
    return frozenset(column for index, column in enumerate(columns)
                     if old_hashes[index * size:(index + 1) * size] != new_hashes[index * size:(index + 1) * size])


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
        #: how the destination compares identities, when it says (and the mapping reads the column)
        self.identity = identity_rule(config, export, plugins, self.columns)
        self.left_out: list[str] = []  # keys left out for sharing an identity with a lower key (first)
        # the table of the members' identity hashes (``ident``): the members' own, unless build skipped them
        self._identity_table: str | None = "members"
        self._on_every_core = False
        # where the DuckDB spills, a staged segment included: private, and removed when closed
        self.scratch = ScratchFolder()
        try:
            self.db = embedded_duckdb.connect(SNAPSHOT_MEMORY_MB, self.scratch.path / "spill")
        except BaseException:
            self.scratch.remove()
            raise
        self._staged: set[int] = set()  # the segments (by index) whose rows are staged (_staged_rows)
        self._sources: dict[str, Source] = {}
        # per source, a connection whose default catalog is the source's attached one (None: read())
        self._attached: dict[str, duckdb.DuckDBPyConnection | None] = {}
        self._locked = False  # every source opened, then the DuckDB locked (_open_sources)
        self.target = 1  # the export's target's id, once planned
        self.tally: DigestTally | None = None  # the digest a run leaves, from what the plan leaves as it is
        self._members_sums: dict[int, int] = {}  # target -> the members' sum of mixes (see _digest_sum)
        self._rejects = False  # the export's rejects are loaded (read_rejects)
        # a bucketed snapshot's digest kind (engine/buckets.py); then, with a record of that kind, the members
        # (and acknowledged rows) are only those of the buckets that differ from it, and the others' number
        self._buckets_kind: str | None = None
        self._narrowed = False
        self._clean_members = 0

    def close(self) -> None:
        try:
            for connection in self._attached.values():
                if connection is not None:
                    connection.close()
            for source in self._sources.values():
                source.close()
            self.db.close()
        finally:
            self.scratch.remove()

    def error(self, segment: SegmentConfig, problem: str) -> PlanError:
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

    def _connection(self, name: str) -> duckdb.DuckDBPyConnection | None:
        """The connection a source's segments are queried in when it attaches to the engine's DuckDB."""
        if name not in self._attached:
            catalog = f"segship_source_{len(self._attached)}"
            connection = None
            if self._source(name).attach(self.db, catalog):
                connection = self.db.cursor()  # its own default catalog; the engine's tables are named
                connection.execute(f"USE {quote(catalog)}")
            self._attached[name] = connection
        return self._attached[name]

    def _rows(self, part: _SegmentSource) -> tuple[duckdb.DuckDBPyRelation, dict[str, duckdb.DuckDBPyType]]:
        """A segment's rows (a relation, not yet read) and its columns' DuckDB types."""
        segment = part.segment
        self._open_sources()
        try:
            connection = self._connection(segment.source)
            if connection is None:  # a warehouse fails here: placed too
                rows = self._staged_rows(part)
            else:
                try:
                    # one query, nothing else: it runs in the engine's DuckDB, whose settings and tables
                    # a SET or CREATE would change
                    if [s.type for s in connection.extract_statements(segment.sql)] != [duckdb.StatementType.SELECT]:
                        raise SourceError(f"source {segment.source!r}: a segment's SQL must be one query "
                                          "(SELECT … or FROM …)")
                    rows = connection.sql(segment.sql)
                except duckdb.Error as exc:
                    raise SourceError(f"source {segment.source!r}: {exc}") from None
        except SourceError as exc:
            raise self.error(segment, f"failed: {exc}") from None
        self._check_columns(segment, rows.columns)
        return rows, dict(zip(rows.columns, rows.types, strict=True))

    def _check_columns(self, segment: SegmentConfig, columns: Sequence[str]) -> None:
        missing = [c for c in [segment.key, *self.columns] if c not in columns]
        if missing:
            raise self.error(segment, f"has no column {missing[0]!r}, which export {self.export.name!r} needs "
                                       f"(columns: {', '.join(columns)})")

    def _staged_rows(self, part: _SegmentSource) -> duckdb.DuckDBPyRelation:
        """A streamed segment's rows, staged in the engine's DuckDB the first time they are asked for:
        its source runs the segment's query once per snapshot, whatever reads the rows after (the
        plan, the send, a lookup), and each of them reads the same rows. Only the key and the
        columns the export maps are kept, and read out of the source where it can select them
        (``Source.read_columns``). Raises SourceError (the query fails to start)."""
        table = f"staged_{part.index}"
        if part.index not in self._staged:
            segment = part.segment
            used = list(dict.fromkeys([segment.key, *self.columns]))
            streamed = self.db.from_arrow(self._source(segment.source).read_columns(segment.sql, used))
            self._check_columns(segment, streamed.columns)
            kept = ", ".join(map(quote, used))
            if self._bucketed():
                key = f"CAST({quote(segment.key)} AS VARCHAR)"
                values = [(column, quote(column)) for column in self.columns]
                row_mix = buckets.row_mix_sql(key, values, dict(zip(streamed.columns, streamed.types, strict=True)))
                kept += f", {bucket_sql(key)} AS {buckets.BUCKET}, {row_mix} AS {buckets.ROW_MIX}"
            try:
                with self._every_core():
                    streamed.project(kept).create(f"{ENGINE}.{table}")
            except (duckdb.Error, pa.ArrowException) as exc:  # e.g. a warehouse that went away mid-stream
                raise self.error(segment, f"stopped while its rows were read: {exc}") from None
            self._staged.add(part.index)
            if all(other.index in self._staged for other in self.segments
                   if other.segment.source == segment.source):
                self._sources.pop(segment.source).close()  # read for good: no connection idles through the send
        return self.db.table(table)

    def _query(self, part: _SegmentSource, select: Callable[[list[str]], str], tail: str = "") \
            -> duckdb.DuckDBPyRelation:
        """Run ``SELECT select(encodings) FROM`` a segment's rows, aliased ``s``; ``encodings`` are the
        SQL of the mapped columns' canonical encodings (:mod:`segship.engine.hashing`). ``tail`` names
        the engine's tables in full (``ENGINE``)."""
        rows, types = self._rows(part)
        try:
            return rows.query("segment_rows", f"SELECT {select(hashing.encodings('s', self.columns, types))} "
                                              f"FROM segment_rows AS s {tail}")
        except (duckdb.Error, SourceError) as exc:
            raise self.error(part.segment, f"failed: {exc}") from None

    def reads_state_after(self, recorded: MembersDigest) -> bool:
        """Whether state is best read after the segments, given its digest ``recorded``: when they are read on
        every core (their members may sum to it), or counted by bucket against a bucketed one (state's rows
        of the buckets that differ are read, if any)."""
        return self.reads_in_place() or \
            (recorded.buckets is not None and recorded.kind.startswith(buckets.kind_prefix()) and self._bucketed())

    def reads_in_place(self) -> bool:
        """Whether every segment's source attaches to the engine's DuckDB (its rows are then read on
        every core while it plans; streamed, on one)."""
        self._open_sources()
        return all(self._attached[part.segment.source] is not None for part in self.segments)

    def _open_sources(self) -> None:
        """Open every segment's source, attaching those that can, then lock the engine's DuckDB: a
        segment's SQL runs only after, and reads no file but its sources' (:func:`embedded_duckdb.lock`)."""
        if self._locked:
            return
        for part in self.segments:
            try:
                self._connection(part.segment.source)
            except SourceError as exc:
                raise self.error(part.segment, f"failed: {exc}") from None
        embedded_duckdb.lock(self.db)
        self._locked = True

    @contextmanager
    def _every_core(self) -> Iterator[None]:
        """DuckDB on every core while the plan is made (nothing else of segship runs then), one after."""
        if self._on_every_core:  # within a step on every core already
            yield
            return
        self.db.execute(f"SET threads TO {embedded_duckdb.available_cores()}")
        self._on_every_core = True
        try:
            yield
        finally:
            self._on_every_core = False
            self.db.execute("SET threads TO 1")

    def _row_identity(self) -> str:
        """SQL of a segment row's normalised identity (its row aliased ``s``)."""
        return identity_sql(self.identity, "s." + quote(self.identity.column))

    def _row_hash(self, column_hashes: str) -> str:
        """SQL for the row hash from the list column ``column_hashes`` (computed once, read per column)."""
        return hashing.row_hash_sql([f"{column_hashes}[{index + 1}]" for index in range(len(self.columns))])

    # -- planning -------------------------------------------------------------------------------

    def build(self, *, row_hashes: bool = True, identities: bool = True, recorded: MembersDigest | None = None,
              target: int = 1) -> None:
        """Load (key, segment, row hash, and with ``identities`` the hash of the normalised identity when
        the destination declares how it compares them) of every segment row and check the keys.

        Without ``row_hashes`` (nothing to diff against: a first run, a full re-send) a
        single segment's rows are not hashed here (0): their MD5s would serve no diff, and the
        rows sent are hashed as they are read again. Without ``identities`` (a plan the digest
        may spare, ``identity_conflicts: error``), the diff reads them if it needs them.

        A single streamed segment is bucketed (:mod:`segship.engine.buckets`, members in ``target``):
        when state's digest ``recorded`` is a bucketed one of its kind, only the members of the
        buckets that differ from it are loaded (and the diff reads identities if it needs them).
        """
        row_hashes = row_hashes or len(self.segments) > 1  # segments' rows must agree
        tail = ""
        if self._bucketed():  # counted for the record a run leaves, and to narrow the plan to where it differs
            self._count_buckets(target)
            tail = self._narrow(recorded) if row_hashes and recorded is not None else ""
        identity = ident = ""
        if self.identity is not None and (identities or self.export.identity_conflicts == "first"):
            identity = f", {self._row_identity()} AS identity"
            ident = f", {IDENT} AS ident"
        else:
            self._identity_table = None
        self.db.execute("CREATE TABLE snapshot (key VARCHAR, seg INTEGER, row_hash BIGINT"
                        f"{', ident UBIGINT' if ident else ''})")
        for part in self.segments:
            key = f"CAST(s.{quote(part.segment.key)} AS VARCHAR)"

            def select(encodings: list[str], key: str = key, seg: int = part.index) -> str:
                hashes = f", {hashing.column_hashes_sql(encodings)} AS column_hashes" if row_hashes else ""
                return f"{key} AS key, {seg} AS seg{hashes}{identity}"

            row_hash = self._row_hash("column_hashes") if row_hashes else "0::BIGINT"
            relation = self._query(part, select, tail).project(f"key, seg, {row_hash} AS row_hash{ident}")
            self._load(part, relation, "snapshot")
        self._check_null_keys()
        # one segment's duplicate keys are looked for only when the plan can't rule them out (its
        # members are state's, key for key: see plan)
        self._duplicates_unchecked = len(self.segments) == 1
        if not self._duplicates_unchecked:
            self._check_duplicate_keys()
        if len(self.segments) == 1:  # the snapshot is the members (no second copy)
            self.db.execute("ALTER TABLE snapshot RENAME TO members")
        else:
            self._check_segments_agree()
            self.db.execute("CREATE TABLE members AS SELECT key, min(seg) AS seg, any_value(row_hash) AS row_hash"
                            f"{', any_value(ident) AS ident' if ident else ''} FROM snapshot GROUP BY key")
            self.db.execute("DROP TABLE snapshot")
        if ident and self.export.identity_conflicts == "first":
            self._leave_out_identity_conflicts()

    def _bucketed(self) -> bool:
        """Whether the members are counted by bucket: one segment, streamed (its staged rows are the ones
        sent), and each of its rows a member (no identity conflicts left out)."""
        return len(self.segments) == 1 and not self.reads_in_place() and \
            (self.identity is None or self.export.identity_conflicts != "first")

    def _count_buckets(self, target: int) -> None:
        """Count the single segment's members (in ``target``) by bucket, and name the kind of their digest."""
        part = self.segments[0]
        rows, types = self._rows(part)
        self._buckets_kind = buckets.buckets_kind([types[c] for c in [part.segment.key, *self.columns]])
        counted = buckets.segment_buckets_sql("segment_rows", str(int(target)))
        self._load(part, rows.query("segment_rows", counted), SEGMENT_BUCKETS, create=True)

    def _narrow(self, recorded: MembersDigest) -> str:
        """When state's ``recorded`` digest is a bucketed one of the counted buckets' kind, find the buckets
        that differ from it and return the ``_query`` tail that keeps only their rows; else ''."""
        if recorded.kind != self._buckets_kind or recorded.buckets is None:
            return ""
        self.db.from_arrow(buckets.decode(recorded.buckets)).create(f"{ENGINE}.{RECORDED_BUCKETS}")
        with self._every_core():
            self.db.execute(f"CREATE TABLE {DIFFERING} AS {buckets.DIFFERING_SQL}")
            self._clean_members = int(self.db.execute(
                f"SELECT coalesce(sum(members), 0) FROM {SEGMENT_BUCKETS} ANTI JOIN {DIFFERING} USING (bucket)"
            ).fetchall()[0][0])
        self._narrowed = True
        return f"SEMI JOIN {ENGINE}.{DIFFERING} d ON d.bucket = s.{buckets.BUCKET}"

    def _bucket_record(self) -> tuple[str, Callable[[], bytes]] | None:
        """The kind of the bucketed digest a run leaves when it completes as planned, and how to make it
        (from the diff's ``actions``; only a run that records it needs it)."""
        if self._buckets_kind is None:
            return None

        def record() -> bytes:
            with self.db.cursor() as cursor:  # (a connection of its own: the snapshot's may hold a result)
                return buckets.encode(cursor.sql(buckets.record_sql("actions")).to_arrow_table())

        return self._buckets_kind, record

    def _load(self, part: _SegmentSource, relation: duckdb.DuckDBPyRelation, table: str, *,
              create: bool = False) -> None:
        """Insert a segment's relation into (or ``create``) the engine's ``table``."""
        try:
            with self._every_core():  # an attached source's rows are read on every core
                if create:
                    relation.create(f"{ENGINE}.{table}")
                else:
                    relation.insert_into(f"{ENGINE}.{table}")
        except (duckdb.Error, pa.ArrowException, SourceError) as exc:
            raise self.error(part.segment, f"failed: {exc}") from None

    def load_member_rows(self, table: str, select: Callable[[list[str], list[str]], str]) -> None:
        """Create ``table`` in the engine's DuckDB: each member's ``key`` and ``select(values, encodings)``
        of its row, read again from the segment it was taken from (after :meth:`build`).

        ``values`` are the SQL of the mapped columns, ``encodings`` of their canonical encodings
        (:mod:`segship.engine.hashing`). The members' keys are checked unique first, so that each
        member has one row.
        """
        if self._duplicates_unchecked:
            self._check_duplicate_keys()
        values = [f"s.{quote(c)}" for c in self.columns]
        for position, part in enumerate(self.segments):
            key = f"CAST(s.{quote(part.segment.key)} AS VARCHAR)"
            relation = self._query(part, lambda encodings, key=key: f"{key} AS key, {select(values, encodings)}",
                                   f"SEMI JOIN {ENGINE}.members m ON m.key = {key} AND m.seg = {part.index}")
            self._load(part, relation, table, create=position == 0)

    def _check_null_keys(self) -> None:
        for seg, nulls in self.db.execute("SELECT seg, count(*) FROM snapshot WHERE key IS NULL GROUP BY seg "
                                          "ORDER BY seg").fetchall():
            segment = self.segments[seg].segment
            raise self.error(segment, f"has null keys: {nulls} row(s) have no {segment.key!r} (the key must "
                            "not be null); nothing was sent")

    def _check_duplicate_keys(self) -> None:
        table = "members" if self._duplicates_unchecked else "snapshot"  # (before or after the rename)
        self._duplicates_unchecked = False
        duplicates = self.db.execute(
            f"SELECT seg, key, count(*) AS n FROM {table} "
            "GROUP BY seg, key HAVING count(*) > 1 ORDER BY seg, key LIMIT ?", (EXAMPLES,)).fetchall()
        if duplicates:
            segment = self.segments[duplicates[0][0]].segment
            total = self.db.execute(f"SELECT count(*) FROM (SELECT key FROM {table} WHERE seg = ? GROUP BY key "
                                    "HAVING count(*) > 1)", (duplicates[0][0],)).fetchone()[0]
            examples = ", ".join(f"{key} ({n} rows)" for seg, key, n in duplicates if seg == duplicates[0][0])
            raise self.error(segment, f"key {segment.key!r} is not unique: {total} key(s) appear "
                            f"more than once, e.g. {examples}; nothing was sent")

    def _leave_out_identity_conflicts(self) -> None:
        """``identity_conflicts: first``: of the keys sharing an identity, only the lowest stays a member."""
        self.db.execute(f"CREATE TABLE left_out AS SELECT m.key FROM members m JOIN "
                        f"({SHARED_IDENTITIES.format(table='members')}) g ON g.ident = m.ident WHERE m.key <> g.first_key")
        if self._count("left_out"):
            self.left_out = [row[0] for row in self.db.execute("SELECT DISTINCT key FROM left_out ORDER BY key")
                             .fetchall()]
            self.db.execute("DELETE FROM members WHERE key IN (SELECT key FROM left_out)")
        self.db.execute("DROP TABLE left_out")

    def _check_identity_conflicts(self) -> None:
        """``identity_conflicts: error``: keys sharing an identity stop the plan, named with it."""
        if self.identity is None or self.export.identity_conflicts != "error":
            return
        table = self._identity_table or self._load_identities()
        # the members' keys are checked unique by now; the segments' rows may repeat a key
        counted = SHARED_AMONG_MEMBERS if table == "members" else SHARED_IDENTITIES
        shared = self.db.execute(f"SELECT count(*) FROM ({counted.format(table=table)})").fetchone()[0]
        if not shared:
            return
        shared_identities = SHARED_IDENTITIES.format(table=table)
        groups = self.db.execute(
            f"SELECT list(DISTINCT m.key ORDER BY m.key) FROM {table} m JOIN ({shared_identities}) g "
            "ON g.ident = m.ident GROUP BY m.ident ORDER BY min(m.key) LIMIT ?", (EXAMPLES,)).fetchall()
        identities = self._identities_of([keys[0] for (keys,) in groups])
        raise identity_conflict_error(self.config, self.export.name, self.identity, shared,
                                      [(identities.get(keys[0], "?"), keys) for (keys,) in groups])

    def _load_identities(self) -> str:
        """Read (key, identity hash) of the segment rows whose identity a row the diff doesn't leave
        unchanged has into a table of its own, which it names (for a plan whose build skipped them).

        Only such an identity can be shared: the unchanged members' rows are those the destination
        acknowledged, and a run acknowledges no two keys with one identity (its plan checked them).
        When the identity is the key's, only the keys state doesn't hold are such rows.
        """
        self._identity_table = "member_identities"
        value = self._row_identity()
        # an identity made of the key: a key state holds keeps the identity it was acknowledged with
        keyed = all(part.segment.key == self.identity.column for part in self.segments)
        self.db.execute("CREATE TABLE changed_keys AS SELECT DISTINCT key FROM actions "
                        f"WHERE action NOT IN ('unchanged', 'remove'){' AND target IS NULL' if keyed else ''}")
        if not self._count("changed_keys"):
            self.db.execute(f"CREATE TABLE {self._identity_table} (key VARCHAR, ident UBIGINT)")
            return self._identity_table
        for position, part in enumerate(self.segments):
            key = f"CAST(s.{quote(part.segment.key)} AS VARCHAR)"
            relation = self._query(part, lambda _, key=key: f"{value} AS identity",
                                   f"SEMI JOIN {ENGINE}.changed_keys c ON c.key = {key}")
            # (no filter of NULLs here: DuckDB would push it below the join, normalising every row's identity)
            self._load(part, relation.project(f"{IDENT} AS ident"), "changed_identities", create=position == 0)
        for position, part in enumerate(self.segments):
            key = f"CAST(s.{quote(part.segment.key)} AS VARCHAR)"
            relation = self._query(part, lambda _, key=key: f"{key} AS key, {value} AS identity")
            self._load(part, relation.project(f"key, {IDENT} AS ident")
                       .filter(f"ident IN (SELECT ident FROM {ENGINE}.changed_identities)"),
                       self._identity_table, create=position == 0)
        self.db.execute("DROP TABLE changed_keys")
        self.db.execute("DROP TABLE changed_identities")
        return self._identity_table

    def _identities_of(self, keys: Sequence[str]) -> dict[str, str]:
        """The normalised identity of each of a few members, read again from its segment."""
        self.db.execute("DROP TABLE IF EXISTS identity_keys")
        self.db.from_arrow(pa.table({"key": pa.array(list(keys), pa.string())})).create("identity_keys")
        value = self._row_identity()
        found: dict[str, str] = {}
        for part in self.segments:
            key = f"CAST(s.{quote(part.segment.key)} AS VARCHAR)"
            found.update(self._query(part, lambda _, key=key: f"{key} AS key, {value} AS identity",
                                     f"SEMI JOIN {ENGINE}.identity_keys k ON k.key = {key}").fetchall())
        return found

    def keys_of_identities(self, identities: Sequence[str]) -> list[tuple[str, str | None]]:
        """Each of ``identities`` (as the destination holds them) with the lowest key whose row has it,
        compared as the destination compares them, or None (``segship state rebuild``; the segments'
        rows are read here, not built)."""
        self.db.from_arrow(pa.table({"identity": pa.array(list(identities), pa.string())})).create("listed")
        value = self._row_identity()
        for position, part in enumerate(self.segments):
            key = f"CAST(s.{quote(part.segment.key)} AS VARCHAR)"
            self._load(part, self._query(part, lambda _, key=key: f"{key} AS key, {value} AS identity"),
                       "row_identities", create=position == 0)
        return self.db.execute(
            f"SELECT l.identity, min(r.key) FROM listed l LEFT JOIN row_identities r "
            f"ON r.identity = {identity_sql(self.identity, 'l.identity')} GROUP BY l.identity ORDER BY l.identity"
        ).fetchall()

    def _check_segments_agree(self) -> None:
        # min <> max: two different row hashes, as cheap as a plain aggregate (count(DISTINCT) is
        # not); the segments of the first such key are looked up afterwards
        conflict = self.db.execute(
            "SELECT key FROM snapshot GROUP BY key HAVING min(row_hash) <> max(row_hash) ORDER BY key LIMIT 1"
        ).fetchone()
        if conflict:
            key = conflict[0]
            segs = [row[0] for row in self.db.execute(
                "SELECT DISTINCT seg FROM snapshot WHERE key = ? ORDER BY seg", (key,)).fetchall()]
            both = " and ".join(repr(self.segments[s].segment.name) for s in segs)
            raise PlanError(f"key {key!r} is in segments {both} with different rows; an export's segments must "
                            "agree on the row of a shared key; nothing was sent")

    def read_acknowledged(self, acknowledged: pa.RecordBatchReader) -> None:
        """Load what the destination acknowledged (key, row_hash, target) for :meth:`plan`: state is read once.

        Through a DuckDB cursor of its own, so it may run on another thread while :meth:`build`
        hashes the segments (the two take about as long: reading state overlaps with hashing).
        """
        # only the buckets that differ from state's record, when build counted the members by bucket against it
        narrowed = f" a SEMI JOIN {DIFFERING} d ON d.bucket = {bucket_sql('a.key')}" if self._narrowed else ""
        cursor = self.db.cursor()
        try:
            cursor.register("acknowledged_rows", acknowledged)
            cursor.execute(f"CREATE TABLE acknowledged AS SELECT key, row_hash, target FROM acknowledged_rows"
                           f"{narrowed}")
            cursor.unregister("acknowledged_rows")
        finally:
            cursor.close()

    def read_rejects(self, refusals: pa.Table, mapping: str | None) -> None:
        """Load the export's rejects (``StateStore.refusals``) for :meth:`plan`: a row segship's mapping
        refused under the ``mapping`` fingerprint (None: under none, e.g. a full resync) is still
        refused while its row hash is the one refused; every other reject is sent again (``retry``)."""
        if not refusals.num_rows:
            return
        self.db.register("refusals", refusals)
        try:
            self.db.execute("CREATE OR REPLACE TABLE rejected AS SELECT key, since_run, "
                            "CASE WHEN origin = 'mapping' AND fingerprint = ? THEN row_hash END AS refused_hash "
                            "FROM refusals", (mapping,))
        finally:
            self.db.unregister("refusals")
        self._rejects = True

    def plan(self, *, full_resync: bool, target: int = 1) -> ExportPlan:
        """Diff the members (:meth:`build`) against what the destination acknowledged (:meth:`read_acknowledged`).

        A member acknowledged in another target than ``target`` (the export's now) moves.
        When state holds exactly the members (the same keys, row hashes and target:
        :meth:`_same_as_members`), every member is unchanged and the join doesn't run, most of
        an unchanged plan's time; otherwise the members are joined, then their keys checked
        (:meth:`_diffed_a_key_twice`) and their identities.
        """
        self.target = target
        with self._every_core():
            return self._diff(full_resync=full_resync, target=target)

    def unchanged_plan(self, recorded: MembersDigest, target: int = 1) -> ExportPlan | None:
        """The plan, every member unchanged, when the members sum to ``recorded`` (state's digest, a
        record of exactly what state holds: :meth:`_same_as_members` without reading state), or when
        no bucket differs from a bucketed one (:meth:`build`); else None."""
        self.target = target
        if self._narrowed:
            return None if self._count(DIFFERING) else self._all_unchanged(ExportPlan(self.export.name), 0)
        with self._every_core():
            if recorded.kind != DIGEST_KIND or self._count("members") != recorded.members or \
                    signed_64(self._members_sum(target)) != recorded.digest:
                return None
            return self._all_unchanged(ExportPlan(self.export.name), recorded.digest)

    def _diff(self, *, full_resync: bool, target: int) -> ExportPlan:
        plan = ExportPlan(self.export.name, full_resync=full_resync)
        if not full_resync and self._same_as_members(target):
            return self._all_unchanged(plan, self._members_sum(target))
        # the members state keeps as the destination acknowledged them (unchanged, or their change still
        # refused) are summed up for the digest a completed run leaves: their acknowledged rows' mixes
        kept = (f"CASE WHEN action IN ('unchanged', 'refused') AND target IS NOT NULL "
                f"THEN {mix_sql('key', 'acknowledged_hash', 'target')} END")
        self.db.execute(f"CREATE OR REPLACE TABLE actions AS SELECT key, seg, action, target, {kept} AS kept_mix "
                        f"FROM ({self._actions_sql(full_resync, target)})")
        if self._duplicates_unchecked and self._diffed_a_key_twice():
            self._check_duplicate_keys()  # stops the plan, naming them
        self._duplicates_unchecked = False
        self._check_identity_conflicts()  # (its count relies on the keys being unique)
        self.db.execute("DROP TABLE acknowledged")
        self.db.execute("DROP TABLE members")  # actions has every member: one copy of the keys at a time
        count, total = self.db.execute("SELECT count(kept_mix), coalesce(sum(kept_mix::HUGEINT), 0) FROM actions"
                                       ).fetchone()
        planned = self.db.execute(f"SELECT count(*), coalesce(sum({key_hash_sql('key')})::HUGEINT, 0) FROM actions "
                                  f"WHERE action IN {SENT_ACTIONS}").fetchone()
        # the members of buckets that agree with state's record are unchanged, and not in actions
        self.tally = DigestTally(count + self._clean_members, int(total), (planned[0], int(planned[1])),
                                 buckets=self._bucket_record())
        for action, count in self.db.execute("SELECT action, count(*) FROM actions GROUP BY action").fetchall():
            setattr(plan, action, count)
        plan.unchanged += self._clean_members
        plan.members = plan.add + plan.update + plan.unchanged + plan.move + plan.retry + plan.refused
        plan.acknowledged = plan.update + plan.unchanged + plan.remove + plan.move
        if plan.refused:
            held, plan.refused_since_run = self.db.execute(
                "SELECT count(a.target), min(r.since_run) FROM actions a JOIN rejected r USING (key) "
                "WHERE a.action = 'refused'").fetchone()
            plan.acknowledged += held
        for action in ("add", "retry", "update", "move", "remove", "refused"):
            if getattr(plan, action):  # a top-N per action: never a list of every key
                plan.examples[action] = [row[0] for row in self.db.execute(
                    "SELECT key FROM actions WHERE action = ? ORDER BY key LIMIT ?", (action, EXAMPLES)).fetchall()]
        return plan

    def _diffed_a_key_twice(self) -> bool:
        """Whether a key is twice in the diff (``actions``), i.e. in the segment (state's keys are unique).

        A key state knows brings its acknowledged target along each time it is joined: twice in the
        segment, it is there once more than state has rows. The others (new ones, a few, unless it is
        a first run) are grouped. Cheaper than grouping every member's key."""
        if self.db.execute("SELECT count(target) FROM actions").fetchone()[0] != self._count("acknowledged"):
            return True
        return bool(self.db.execute("SELECT 1 FROM actions WHERE target IS NULL GROUP BY key HAVING count(*) > 1 "
                                    "LIMIT 1").fetchall())

    def _actions_sql(self, full_resync: bool, target: int) -> str:
        """Each member's and each leaver's action. With rejects loaded, a row refused before is sent
        again (``retry``, or ``update`` when the member was acknowledged) unless segship's mapping
        refused it as it is now (``refused``): an acknowledged member stays as it was."""
        changed = "TRUE" if full_resync else "a.row_hash <> m.row_hash"
        if not self._rejects:  # (the usual plan: no join with rejects)
            return f"""
                SELECT coalesce(m.key, a.key) AS key, m.seg AS seg,
                       CASE WHEN a.key IS NULL THEN 'add'
                            WHEN m.key IS NULL THEN 'remove'
                            WHEN a.target <> {int(target)} THEN 'move'
                            WHEN {changed} THEN 'update'
                            ELSE 'unchanged' END AS action,
                       a.target AS target, a.row_hash AS acknowledged_hash
                FROM members m FULL OUTER JOIN acknowledged a ON m.key = a.key"""
        return f"""
            SELECT coalesce(m.key, a.key) AS key, m.seg AS seg,
                   CASE WHEN m.key IS NULL THEN 'remove'
                        WHEN a.key IS NOT NULL AND a.target <> {int(target)} THEN 'move'
                        WHEN a.key IS NOT NULL AND NOT ({changed}) THEN 'unchanged'
                        WHEN r.refused_hash = m.row_hash THEN 'refused'
                        WHEN a.key IS NULL AND r.key IS NOT NULL THEN 'retry'
                        WHEN a.key IS NULL THEN 'add'
                        ELSE 'update' END AS action,
                   a.target AS target, a.row_hash AS acknowledged_hash
            FROM members m FULL OUTER JOIN acknowledged a ON m.key = a.key LEFT JOIN rejected r ON r.key = m.key"""

    def _all_unchanged(self, plan: ExportPlan, total: int) -> ExportPlan:
        self.db.execute("DROP TABLE IF EXISTS acknowledged")  # if state was read, it is not needed
        plan.members = plan.acknowledged = plan.unchanged = self._count("members") + self._clean_members
        self.db.execute("CREATE VIEW actions AS SELECT key, seg, 'unchanged' AS action, NULL::INTEGER AS target "
                        "FROM members")
        self.tally = DigestTally(plan.members, total, buckets=self._bucket_record())
        return plan

    def _count(self, table: str) -> int:
        # (fetched to the end: a result left open on the connection would refuse a later register())
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]

    def _members_sum(self, target: int) -> int:
        if target not in self._members_sums:
            self._members_sums[target] = self._digest_sum("members", str(int(target)))
        return self._members_sums[target]

    def _digest_sum(self, table: str, target_sql: str) -> int:
        """The exact sum over a table of (key, row_hash) of each row's mix with ``target_sql``."""
        return int(self.db.execute(f"SELECT {mix_sum_sql('key', 'row_hash', target_sql)} FROM {table}")
                   .fetchone()[0])

    def _same_as_members(self, target: int) -> bool:
        """Whether the acknowledged rows are exactly the members, each with its row hash, in ``target``.

        Compared as multisets by count and by the exact sum over rows of a 64-bit mix of
        (key, row hash, target) (:func:`mix_sql`). Any difference (a member added, left,
        changed, moved, or a key twice in the segment) leaves the sums equal only by a 64-bit
        coincidence. State's keys are unique (its primary key), so equal multisets also mean
        the segment's keys are: that check is implied. DuckDB's ``hash`` is not stable across
        its releases: a digest state keeps names the DuckDB that made it (``DIGEST_KIND``),
        and one of another is not used.
        """
        # counts first: free (table metadata), and enough whenever members joined or left
        return self._count("members") == self._count("acknowledged") and \
            self._members_sum(target) == self._digest_sum("acknowledged", "target")

    def counts_by_target(self, action: str) -> dict[int, int]:
        """How many members the plan moves (``move``) or removes (``remove``), by the target they
        were acknowledged in."""
        return dict(self.db.execute("SELECT target, count(*) FROM actions WHERE action = ? GROUP BY target "
                                    "ORDER BY target", (action,)).fetchall())

    def keys_to_remove(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT key FROM actions WHERE action = 'remove' ORDER BY key")
                .fetchall()]

    def settled(self, keys: Sequence[str]) -> list[str]:
        """The given keys that are not members of the export now, or are acknowledged as they are."""
        self.db.register("probe", pa.table({"key": pa.array(list(keys), pa.string())}))
        try:
            return [row[0] for row in self.db.execute(
                "SELECT key FROM probe ANTI JOIN (SELECT key FROM actions WHERE action NOT IN ('remove', 'unchanged')) "
                "USING (key)").fetchall()]
        finally:
            self.db.unregister("probe")

    # -- sending -----------------------------------------------------------------------------------

    def rows_to_send(self, batch_rows: int = 8192, keys: Sequence[str] | None = None) -> Iterator[pa.RecordBatchReader]:
        """Readers over the rows to add or update (or just ``keys``: ``plan --verbose``), each row once,
        with its hashes, ``MIX`` and ``KEY_HASH`` (after :meth:`plan`)."""
        if self._staged:
            self.db.execute(f"SET memory_limit = '{SEND_MEMORY_MB}MB'")
        mapped = ", ".join(f"s.{quote(c)}" for c in self.columns)
        if keys is not None:
            # a table of the engine's: a view registered here would not be seen from an attached source's cursor
            self.db.execute("DROP TABLE IF EXISTS wanted")
            self.db.from_arrow(pa.table({"key": pa.array(list(keys), pa.string())})).create("wanted")
            filter_ = f"JOIN {ENGINE}.wanted w ON w.key = a.key"
        else:
            filter_ = f"WHERE a.action IN {SENT_ACTIONS}"
        uniform = self._uniform_action() if keys is None else None
        for part in self.segments:
            key = f"CAST(s.{quote(part.segment.key)} AS VARCHAR)"

            # a member moving to a new target joins it: sent whole, as a new one is (and a row sent again
            # that was never acknowledged)
            def select(encodings: list[str], key: str = key, is_new: str = "a.action IN ('add', 'move', 'retry')"
                       ) -> str:
                return (f"{mapped}, {key} AS {KEY}, {hashing.column_hashes_sql(encodings)} AS {COLUMN_HASHES}, "
                        f"{is_new} AS {IS_NEW}")

            if uniform is not None:
                # every row is sent, all as joins or all as changes: no join with the plan (whose hash
                # table of every key is the largest allocation of a first run)
                relation = self._query(part, partial(select, is_new=str(uniform != "update")))
            else:
                relation = self._query(part, select, f"JOIN {ENGINE}.actions a ON a.key = {key} AND a.seg = {part.index} "
                                                     f"{filter_}")
            relation = relation.project(f"*, {self._row_hash(COLUMN_HASHES)} AS {ROW_HASH}")
            relation = relation.project(f"*, {mix_sql(KEY, ROW_HASH, str(self.target))} AS {MIX}, "
                                        f"{key_hash_sql(KEY)} AS {KEY_HASH}")
            yield self._with_column_hash_bytes(relation.to_arrow_reader(batch_rows))

    def _with_column_hash_bytes(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        """The reader with its column hashes as bytes (8 a column), as state keeps them."""
        index = reader.schema.get_field_index(COLUMN_HASHES)
        width = pa.binary(hashing.COLUMN_HASH_BYTES * len(self.columns))
        schema = reader.schema.set(index, pa.field(COLUMN_HASHES, width))
        count = len(self.columns)

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                hashes = hashing.column_hash_bytes(batch.column(index), count)
                yield batch.set_column(index, schema.field(index), hashes)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def _uniform_action(self) -> str | None:
        """'add', 'update', 'move' or 'retry' when a single segment's every row is sent with that action,
        else None."""
        # rows left out are in the segment, not in the plan; nor are the members of buckets that agree
        if len(self.segments) != 1 or self.left_out or self._clean_members:
            return None
        sent = self.db.execute("SELECT DISTINCT action FROM actions WHERE action <> 'remove'").fetchall()
        return sent[0][0] if len(sent) == 1 and sent[0][0] in ("add", "update", "move", "retry") else None
