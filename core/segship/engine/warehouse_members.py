"""An export's members kept in a warehouse's planner schema, and its diff computed there.

With ``planner: {schema: …}`` on a warehouse source, the table ``<schema>.segship_members`` holds
what the local planner's state would (key, row hash, column hashes, identity, target), and one
statement in the warehouse classifies the segment's rows against it (:meth:`WarehouseMembers.classify`):
the rows to add, update or move and the members that left go into a temporary table of the
planning session, with the rows' mapped columns, hashes and what was acknowledged before; the
unchanged stay where they are. Only that table's rows leave the warehouse: the rows to send
(:meth:`rows_to_send`) and the leavers' identities (:meth:`leavers`), once: what is sent is what
was planned. Before that statement, the segment's rows are summed up in one pass with no join
(:meth:`segments_digest`); when they sum to the members' digest (``segship_member_digests``, which
every write to the members deletes), every member is unchanged and nothing is joined.

Acknowledgements go back in bulk (:meth:`acknowledge`: a bulk load and an upsert, one transaction
per group of answered batches) on a connection of their own, so sending streams on while they
commit. The SQL here is what every warehouse shares; what differs is the dialect's
(:mod:`segship.engine.planners`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from segship.destination import Member
from segship.engine.digest import signed_64
from segship.engine.planners import (
    MEMBER_COLUMNS,
    MEMBER_DIGESTS,
    MEMBERS,
    ROW_DIGEST,
    WarehouseDialect,
)
from segship.engine.snapshot import PlanError
from segship.engine.state import MembersDigest
from segship.log import redact_text
from segship.sql_text import literal, quote, segment_subquery

if TYPE_CHECKING:
    from adbc_driver_manager.dbapi import Connection, Cursor

    from segship.sources.adbc_database import AdbcDatabaseSource

#: The planning session's temporary tables: the plan, and members staged from segship's state (a plan
#: made before they moved to the warehouse: ``segship plan`` writes nothing).
PLAN, STAGED_MEMBERS, PROBE = "segship_plan", "segship_staged_members", "segship_probe"
#: Rows segship's mapping refused (key, the refused row's hash), to plan those unchanged as still refused.
REFUSED = "segship_refused"
#: Temporary tables of keys and identities asked about (planning session) or deleted (writing one), of
#: keys left out for sharing an identity with a lower key, and of the keys holding a planned row's identity.
IDENTITIES, LEAVING, LEFT_OUT = "segship_identities", "segship_leaving", "segship_left_out"
HOLDERS = "segship_identity_holders"
#: The statement an ADBC driver quotes in its errors (``Failed to execute query '…': ERROR: …``, or
#: ``… Query was: …``), left out of the planner's: it may hold rows' values (the identity check's)
#: and runs to megabytes. The warehouse's own message stays.
STATEMENT_QUOTED = (re.compile(r"(?<=query) '.*?'(?=: (?:ERROR|FATAL|PANIC|WARNING):)", re.DOTALL),
                    re.compile(r"\s*Query was: .*?(?=\. SQLSTATE: |\Z)", re.DOTALL))
#: Up to how many planned rows the identity check writes their identities into its statement (more: a
#: first run, whose identities stay in the warehouse; see ``shared_identities``).
IDENTITIES_WRITTEN_OUT = 100_000
#: Identities that two or more keys share (of ``rows``: key, identity), with the lowest key of each.
SHARED = ("SELECT identity, min(key) AS first_key FROM ({rows}) AS i WHERE identity IS NOT NULL GROUP BY identity "
          "HAVING min(key) <> max(key)")
#: The columns the plan table adds to the mapped ones (prefixed: a segment's column may be named ``key``).
KEY, ACTION, HASHES, DIGEST = "segship_key", "segship_action", "segship_column_hashes", "segship_row_digest"
#: The plan's action for an unchanged member whose digest is not its row's (not known yet, or of another
#: row with the same hashes): not sent, nor counted; the run records the row's digest (record_digests).
REDIGEST = "redigest"
PREVIOUS_HASHES, PREVIOUS_IDENTITY, PREVIOUS_TARGET = ("segship_previous_hashes", "segship_previous_identity",
                                                       "segship_previous_target")
PREVIOUS_DIGEST = "segship_previous_digest"
ACKNOWLEDGED = pa.schema([("key", pa.string()), ("row_hash", pa.int64()), ("target", pa.int32())])
MEMBER_SCHEMA = pa.schema([("key", pa.string()), ("row_hash", pa.int64()), ("column_hashes", pa.binary()),
                           ("identity", pa.string()), ("target", pa.int32())])


class WarehouseMembers:
    """One export's members in one planner schema, over two connections: the planning session
    (classification, the plan's temporary table, streams out of it) and the writing one (commits)."""

    def __init__(self, dialect: WarehouseDialect, source: AdbcDatabaseSource, schema: str, export: str) -> None:
        self.dialect, self.source, self.schema, self.export = dialect, source, schema, export
        self.table = f"{quote(schema)}.{MEMBERS}"
        self.digests_table = f"{quote(schema)}.{MEMBER_DIGESTS}"
        self._writing: Connection | None = None
        self._writes = threading.Lock()  # commits come from several threads; one transaction at a time
        self._staged = False  # members are read from the session's copy of segship's state, not the schema
        self._exists: bool | None = None
        self._session_ready = False
        self._left_out = False  # the session holds keys left out of the plan
        self._digests: bool | None = None  # the members table has the row_digest column
        self._planned = False  # the session holds the plan's table
        self._member_digests: bool | None = None  # the schema has the members' digests table
        # the members' digest stored, as this session knows it (read, or recorded, and nothing written since)
        self._recorded: MembersDigest | None = None
        self._digest_dropped = False  # this session deleted the members' digest and recorded none since
        self._base: MembersDigest | None = None  # the members' digest as the plan found them, when it held
        self._written_beside_plan = False  # members not among the plan's keys were written since it was made

    # -- connections ------------------------------------------------------------------------------------

    def where(self) -> str:
        return f"planner schema {self.schema!r} of source {self.source.context.name!r}"

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """The warehouse's errors as PlanError, naming the planner schema (the driver's message redacted)."""
        try:
            yield
        except PlanError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is the warehouse's own message
            text = str(exc)
            for quoted in STATEMENT_QUOTED:
                text = quoted.sub("", text)
            message = " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__
            grant = self.dialect.missing_grant(message)
            message = f"{message} ({grant})" if grant else message
            raise PlanError(redact_text(f"{self.where()}: {doing} failed: {message}")) from None

    def _cursor(self) -> Cursor:
        """A cursor of the planning session: the source's own connection, whose reads (``read``) see
        the session's temporary tables. One statement at a time: nothing is asked of it while a
        stream of the plan's rows is open."""
        session = self.source.session()
        if not self._session_ready:
            with self.errors("preparing the session"), closing(session.cursor()) as cursor:
                self.dialect.prepare_session(cursor)
            self._session_ready = True
        return session.cursor()

    def read(self, sql: str) -> pa.RecordBatchReader:
        """Stream ``sql``'s rows out of the planning session, as the source streams a segment's."""
        self._cursor().close()  # the session's functions are there
        return self.source.read(sql)

    def _temp(self, name: str) -> str:
        return self.dialect.temporary(name)

    def _writer(self) -> Connection:
        if self._writing is None:
            with self.errors("connecting"):
                self._writing = self.dialect.connect(dict(self.source.context.options), autocommit=False)
        return self._writing

    def close(self) -> None:
        """Close both sessions (the planning one's temporary tables go with it)."""
        if self._writing is not None:
            try:
                self._writing.close()
            except Exception:  # noqa: BLE001, S110 - a connection the server dropped is closed enough
                pass
            self._writing = None
        self.source.close()
        self._session_ready = self._left_out = self._planned = False
        self._base = None

    # -- the schema -------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the grants and make the schema's table where missing (a run; a plan makes nothing)."""
        with self.errors("preparing"), closing(self._cursor()) as cursor:
            self.dialect.check_grants(cursor, self.schema)
            self.dialect.prepare(cursor, self.schema)
        self._exists = self._digests = self._member_digests = True

    def exists(self) -> bool:
        """Whether the schema holds the members table (a plan before any run: not yet)."""
        if self._exists is None:
            with self.errors("reading"), closing(self._cursor()) as cursor:
                self._exists = self.dialect.table_exists(cursor, self.schema, MEMBERS)
        return self._exists

    def _members(self) -> str:
        """SQL of the export's members (key, row_hash, column_hashes, identity, target, row_digest)."""
        if self._staged:
            return (f"(SELECT key, row_hash, column_hashes, identity, target, CAST(NULL AS bigint) AS {ROW_DIGEST} "
                    f"FROM {self._temp(STAGED_MEMBERS)})")
        if not self.exists():
            return ("(SELECT CAST(NULL AS text) AS key, CAST(0 AS bigint) AS row_hash, CAST(NULL AS bytea) AS "
                    f"column_hashes, CAST(NULL AS text) AS identity, 0 AS target, CAST(NULL AS bigint) AS {ROW_DIGEST} "
                    "WHERE false)")
        digest = ROW_DIGEST if self._has_digests() else f"CAST(NULL AS bigint) AS {ROW_DIGEST}"
        return (f"(SELECT key, row_hash, column_hashes, identity, target, {digest} FROM {self.table} "
                f"WHERE export = {literal(self.export)})")

    def _has_digests(self) -> bool:
        """Whether the members table keeps digests (one made by an older segship gets the column in a
        run's :meth:`prepare`; a plan before it reads none)."""
        if self._digests is None:
            with self.errors("reading"), closing(self._cursor()) as cursor:
                self._digests = self.dialect.column_exists(cursor, self.schema, MEMBERS, ROW_DIGEST)
        return self._digests

    def stage(self, members: Iterable[pa.RecordBatch]) -> None:
        """Plan against ``members`` (segship's state's, ``MEMBER_SCHEMA``) copied into the session, not the schema's."""
        with self.errors("staging members"), closing(self._cursor()) as cursor:
            self.dialect.load(cursor, STAGED_MEMBERS, pa.RecordBatchReader.from_batches(
                MEMBER_SCHEMA, (_identity_or_null(batch) for batch in members)))
        self._staged = True

    # -- planning --------------------------------------------------------------------------------------

    def leave_out_shared_identities(self, segments: Sequence[tuple[str, str]], identity: str) -> list[str]:
        """``identity_conflicts: first``: the keys whose identity (``identity``: SQL over a segment row
        ``s``) a lower key shares, left out of the plan (:meth:`classify`); returns them."""
        with self.errors("planning"), closing(self._cursor()) as cursor:
            rows = self._identities(segments, identity)
            cursor.execute(f"DROP TABLE IF EXISTS {self._temp(LEFT_OUT)}")
            cursor.execute(self.dialect.temporary_table(LEFT_OUT, f"""
                SELECT DISTINCT r.key FROM ({rows}) AS r JOIN ({SHARED.format(rows=rows)}) AS g
                ON g.identity = r.identity WHERE r.key <> g.first_key"""))
            cursor.execute(f"SELECT key FROM {self._temp(LEFT_OUT)} ORDER BY key")
            self._left_out = True
            return [row[0] for row in cursor.fetchall()]

    def shared_identities(self, identity: str, limit: int, planned: int) -> tuple[int, list[tuple[str, list[str]]]]:
        """How many identities keys share, and the first few with their keys (after :meth:`classify`;
        ``identity``: SQL of a segment row's, ``s``, normalised identity; ``planned``: how many rows
        are to be sent).

        Only the identities of the rows planned to be sent are looked for: among themselves, and
        among the identities the members unchanged since acknowledged were acknowledged with (a
        destination's mapping acknowledges a row under the identity the rule makes of it:
        ``snapshot.normalised_identity``), found in the members table by one pass over it. Those
        members share none with each other, as every run that sent one of them found (an unchanged
        plan is not checked at all, as the local planner's)."""
        sent = f"{ACTION} IN ('add', 'update', 'move')"
        identities = f"SELECT DISTINCT {identity} FROM {self._temp(PLAN)} AS s WHERE s.{sent} AND {identity} IS NOT NULL"
        with self.errors("planning"), closing(self._cursor()) as cursor:
            # a few identities are written into the statement, so that the members are scanned by the
            # parallel workers (which can't read the session's temporary tables); many (a first run)
            # are looked up in the plan's table, on the session's own process
            if planned <= IDENTITIES_WRITTEN_OUT:
                cursor.execute(identities)
                few = [row[0] for row in cursor.fetchall()]
                if not few:
                    return 0, []
                wanted = f"= ANY(ARRAY[{', '.join(literal(value) for value in few)}]::text[])"
            else:
                wanted = f"IN ({identities})"
            rows = (f"SELECT s.{KEY} AS key, {identity} AS identity FROM {self._temp(PLAN)} AS s WHERE s.{sent} "
                    f"UNION ALL SELECT h.key, h.identity FROM (SELECT m.key, coalesce(m.identity, m.key) AS identity "
                    f"FROM {self._members()} AS m WHERE coalesce(m.identity, m.key) {wanted} OFFSET 0) AS h "
                    f"WHERE h.key NOT IN (SELECT {KEY} FROM {self._temp(PLAN)} WHERE {sent} OR {ACTION} = 'remove')")
            cursor.execute(f"DROP TABLE IF EXISTS {self._temp(HOLDERS)}")
            cursor.execute(self.dialect.temporary_table(HOLDERS, rows))
            rows = f"SELECT key, identity FROM {self._temp(HOLDERS)}"
            cursor.execute(f"SELECT count(*) FROM ({SHARED.format(rows=rows)}) AS g")
            count = int(cursor.fetchone()[0])
            if not count:
                return 0, []
            cursor.execute(f"SELECT g.identity, array_agg(DISTINCT r.key ORDER BY r.key) FROM ({rows}) AS r "
                           f"JOIN ({SHARED.format(rows=rows)}) AS g ON g.identity = r.identity "
                           f"GROUP BY g.identity ORDER BY min(r.key) LIMIT {int(limit)}")
            return count, [(shared, list(keys)) for shared, keys in cursor.fetchall()]

    @staticmethod
    def _identities(segments: Sequence[tuple[str, str]], identity: str) -> str:
        return " UNION ".join(f"SELECT CAST(s.{quote(key)} AS text) AS key, {identity} AS identity "
                              f"FROM {segment_subquery(sql)} AS s"
                              for sql, key in segments)

    def classify(self, segments: Sequence[tuple[str, str]], columns: Sequence[str], target: int, *,
                 full_resync: bool, where: Sequence[str], acknowledged: int | None = None) -> dict[str, int]:
        """Classify the segments' rows ((sql, key column) each; ``where`` places each in the config for
        errors) against the members into the plan's temporary table; returns its counts by action
        and ``acknowledged`` (the members before: counted unless given). Keys left out
        (:meth:`leave_out_shared_identities`) are not members.

        A member whose row's digest is the one it was acknowledged with is unchanged, without its
        column hashes being computed; the others (new, moving, of another digest, or to be sent
        again) are hashed, and those whose hashes are the acknowledged ones are planned ``redigest``."""
        with self.errors("planning"), closing(self._cursor()) as cursor:
            plain = self._create_plan(cursor, segments, columns, target, full_resync=full_resync, where=where)
            self.dialect.gather_statistics(cursor, PLAN)  # the statements joining it to the members know its size
            cursor.execute(f"SELECT {ACTION}, count(*) FROM {self._temp(PLAN)} GROUP BY {ACTION}")
            counts = {action: int(count) for action, count in cursor.fetchall()}
            if acknowledged is None:
                cursor.execute(f"SELECT count(*) FROM {self._members()} AS m")
                acknowledged = int(cursor.fetchone()[0])
            counts["acknowledged"] = acknowledged
            self._check_keys(cursor, segments[0][1], where[0], counts, plain)
        return counts

    def plan_unchanged(self, segments: Sequence[tuple[str, str]], columns: Sequence[str], target: int, *,
                       where: Sequence[str]) -> None:
        """Make the plan's temporary table empty, every member unchanged (the segments' rows sum to the
        members' digest: :meth:`segments_digest`), so that what reads a plan reads one."""
        with self.errors("planning"), closing(self._cursor()) as cursor:
            self._create_plan(cursor, segments, columns, target, full_resync=False, where=where, empty=True)

    def _create_plan(self, cursor: Cursor, segments: Sequence[tuple[str, str]], columns: Sequence[str], target: int,
                     *, full_resync: bool, where: Sequence[str], empty: bool = False) -> str:
        """Create the plan's temporary table (``empty``: with no row, nothing read); returns SQL of the
        segments' rows, keys and mapped columns only (to count them)."""
        digested, selects, encodings = self._segment_rows(cursor, segments, columns, where)
        hashes = self.dialect.column_hashes(encodings) if digested else f"s.{HASHES}"
        unchanged = f"m.{ROW_DIGEST} = s.{DIGEST}" if digested else f"m.column_hashes = s.{HASHES}"
        # an export's segments are one member per key: the same row in two is one (a key with two
        # different rows is found below, as a key with two rows)
        rows = " UNION ".join(select for select, _ in selects)
        mapped = ", ".join(quote(column) for column in columns)
        target = int(target)
        hashed = "s.present" if full_resync else (
            f"s.present AND (m.key IS NULL OR m.target <> {target} OR m.row_hash = 0 OR ({unchanged}) IS NOT TRUE)")
        changed = "TRUE" if full_resync else f"c.member_row_hash = 0 OR c.{PREVIOUS_HASHES} IS DISTINCT FROM c.{HASHES}"
        cursor.execute(f"DROP TABLE IF EXISTS {self._temp(PLAN)}")
        # the members' digest as the plan finds them, to record the run's by what the plan holds
        self._base = self._recorded if not self._staged else None
        self._written_beside_plan = False
        # OFFSET 0 keeps the join a subquery: each row's hashes are computed once, and only the rows
        # to hash or remove leave the join (its parallel workers); LIMIT 0 reads no row
        cursor.execute(self.dialect.temporary_table(PLAN, f"""
                SELECT c.{KEY},
                       CASE WHEN c.member IS NULL THEN 'add' WHEN c.present IS NULL THEN 'remove'
                            WHEN c.{PREVIOUS_TARGET} <> {target} THEN 'move' WHEN {changed} THEN 'update'
                            ELSE '{REDIGEST}' END AS {ACTION},
                       c.{HASHES}, c.{PREVIOUS_HASHES}, c.{PREVIOUS_IDENTITY}, c.{PREVIOUS_TARGET}, c.{PREVIOUS_DIGEST},
                       c.{DIGEST}, {mapped}
                FROM (SELECT coalesce(s.{KEY}, m.key) AS {KEY}, s.present, m.key AS member,
                             m.row_hash AS member_row_hash, m.column_hashes AS {PREVIOUS_HASHES},
                             coalesce(m.identity, m.key) AS {PREVIOUS_IDENTITY}, m.target AS {PREVIOUS_TARGET},
                             m.{ROW_DIGEST} AS {PREVIOUS_DIGEST},
                             s.{DIGEST}, CASE WHEN {hashed} THEN {hashes} END AS {HASHES},
                             {", ".join(f"s.{quote(column)}" for column in columns)}
                      FROM ({rows}) AS s FULL OUTER JOIN {self._members()} AS m ON m.key = s.{KEY}
                      WHERE s.present IS NULL OR ({hashed}) OFFSET 0) AS c{" LIMIT 0" if empty else ""}"""))
        self._planned = True
        return " UNION ".join(plain for _, plain in selects)

    def _segment_rows(self, cursor: Cursor, segments: Sequence[tuple[str, str]], columns: Sequence[str],
                      where: Sequence[str]) -> tuple[bool, list[tuple[str, str]], list[str]]:
        """Whether the segments' rows are digested (every segment digests and encodes its columns
        alike), each segment's SELECTs (:meth:`_segment_select`), and the first one's encodings.

        Digested, each row's hashes are computed after the join, for the rows whose digest is not
        their member's; else in each segment, for every row (a digest is kept of no row then)."""
        encodings = [self._encodings(cursor, sql, key, columns, place)
                     for (sql, key), place in zip(segments, where, strict=True)]
        digested = all(other == encodings[0] for other in encodings[1:])
        selects = [self._segment_select(sql, key, columns, digest if digested else None, None if digested else encoded)
                   for (sql, key), (digest, encoded) in zip(segments, encodings, strict=True)]
        return digested, selects, encodings[0][1]

    # -- the members' digest ---------------------------------------------------------------------------

    def members_digest(self) -> MembersDigest | None:
        """The digest recorded of the export's members (their count, and the sum of each one's
        ``member_mix`` modulo 2**64), if one is: every write to them deletes it, in its transaction."""
        if self._staged or not self.exists() or not self._keeps_digests():
            return None
        rows = self._rows(f"SELECT kind, members, digest FROM {self.digests_table} WHERE export = {literal(self.export)}")
        self._recorded = MembersDigest(rows[0][0], int(rows[0][1]), int(rows[0][2])) if rows else None
        return self._recorded

    def segments_digest(self, segments: Sequence[tuple[str, str]], columns: Sequence[str], target: int, *,
                        where: Sequence[str]) -> MembersDigest | None:
        """The digest the members would have if the segments' rows were acknowledged in ``target`` as they
        are (one pass over the rows, no join); None when the segments digest their rows differently."""
        with self.errors("planning"), closing(self._cursor()) as cursor:
            digested, selects, _ = self._segment_rows(cursor, segments, columns, where)
            if not digested:
                return None
            mix = self.dialect.member_mix(f"s.{KEY}", f"s.{DIGEST}", str(int(target)))
            cursor.execute(f"SELECT count(*), CAST(coalesce(sum({mix}), 0) AS text) "
                           f"FROM ({' UNION '.join(select for select, _ in selects)}) AS s")
            count, total = cursor.fetchone()
        return MembersDigest(self.dialect.digest_kind, int(count), signed_64(int(total)))

    def record_members_digest(self) -> None:
        """Record the members' digest, when every member's row digest is known and none is recorded
        that still holds (a run's end, after :meth:`record_digests`).

        When the plan found a digest that held and this session wrote no member but the plan's, it
        is that digest less the planned keys' members as the plan found them, plus theirs now (a
        lookup of the plan's keys); else a pass over every member."""
        if self._recorded is not None or self._staged or not self.exists() or not self._keeps_digests() \
                or not self._has_digests():
            return
        mix = self.dialect.member_mix("m.key", f"m.{ROW_DIGEST}", "m.target")
        counted = (f"count(*), count(*) FILTER (WHERE m.{ROW_DIGEST} IS NULL OR m.row_hash = 0), "
                   f"CAST(coalesce(sum({mix}), 0) AS text)")
        with self.errors("recording the members' digest"), closing(self._cursor()) as cursor:
            if self._planned and self._base is not None and not self._written_beside_plan:
                count, total = self._base.members, self._base.digest
                before = self.dialect.member_mix(KEY, PREVIOUS_DIGEST, PREVIOUS_TARGET)
                cursor.execute(f"SELECT count(*), CAST(coalesce(sum({before}), 0) AS text) FROM {self._temp(PLAN)} "
                               f"WHERE {PREVIOUS_TARGET} IS NOT NULL")
                left, taken = cursor.fetchone()
                cursor.execute(f"SELECT {counted} FROM {self._members()} AS m "
                               f"WHERE m.key IN (SELECT {KEY} FROM {self._temp(PLAN)})")
                now, unknown, added = cursor.fetchone()
                count, total = count - int(left) + int(now), total - int(taken) + int(added)
            else:
                cursor.execute(f"SELECT {counted} FROM {self._members()} AS m")
                count, unknown, total = cursor.fetchone()
            if unknown or not count:  # (an export with no members plans without reading them anyway)
                return
            digest = MembersDigest(self.dialect.digest_kind, int(count), signed_64(int(total)))
        self._write("recording the members' digest", planned=True, work=lambda cursor: cursor.execute(
            f"INSERT INTO {self.digests_table} (export, kind, members, digest) VALUES ({literal(self.export)}, "
            f"{literal(digest.kind)}, {digest.members}, {digest.digest})"))
        self._digest_dropped, self._recorded = False, digest

    def _drop_members_digest(self, cursor: Cursor) -> None:
        """Delete the export's members' digest, unless this session did and recorded none since."""
        if not self._digest_dropped and self._keeps_digests(cursor):
            cursor.execute(f"DELETE FROM {self.digests_table} WHERE export = {literal(self.export)}")

    def _keeps_digests(self, cursor: Cursor | None = None) -> bool:
        """Whether the schema has the members' digests table (one made by an older segship gets it in
        a run's :meth:`prepare`)."""
        if self._member_digests is None:
            if cursor is not None:
                self._member_digests = self.dialect.table_exists(cursor, self.schema, MEMBER_DIGESTS)
            else:
                with self.errors("reading"), closing(self._cursor()) as asking:
                    self._member_digests = self.dialect.table_exists(asking, self.schema, MEMBER_DIGESTS)
        return self._member_digests

    def _encodings(self, cursor: Cursor, sql: str, key: str, columns: Sequence[str],
                   where: str) -> tuple[str, list[str]]:
        """SQL of a segment row's (``s``) digest, and of its mapped columns' canonical encodings."""
        types = {column.column: column for column in self.dialect.column_types(cursor, sql)}
        missing = [name for name in (key, *columns) if name not in types]
        if missing:
            raise PlanError(f"{where}: the segment's rows have no column {missing[0]!r} "
                            f"(columns: {', '.join(sorted(types)) or 'none'})")
        values = [(f"s.{quote(column)}", types[column]) for column in columns]
        return (self.dialect.row_digest(values), [self.dialect.encoding(value, type_) for value, type_ in values])

    def _segment_select(self, sql: str, key: str, columns: Sequence[str], digest: str | None,
                        encodings: list[str] | None) -> tuple[str, str]:
        """SELECTs of a segment's key and mapped columns: with the rows' ``digest`` (or none) and column
        hashes (given their ``encodings``), computed in the warehouse; and without (to count the rows)."""
        mapped = ", ".join(f"s.{quote(column)}" for column in columns)
        digest = digest or "CAST(NULL AS bigint)"
        hashes = "" if encodings is None else f"{self.dialect.column_hashes(encodings)} AS {HASHES}, "
        kept = (f" WHERE CAST(s.{quote(key)} AS text) NOT IN (SELECT key FROM {self._temp(LEFT_OUT)})"
                if self._left_out else "")
        return (f"SELECT CAST(s.{quote(key)} AS text) AS {KEY}, TRUE AS present, {digest} AS {DIGEST}, {hashes}"
                f"{mapped} FROM {segment_subquery(sql)} AS s{kept}",
                f"SELECT CAST(s.{quote(key)} AS text) AS {KEY}, {mapped} FROM {segment_subquery(sql)} AS s{kept}")

    def _check_keys(self, cursor: Cursor, key: str, where: str, counts: dict[str, int], keys_only: str) -> None:
        """Stop the plan when a segment row has no key, or a key has two rows (``keys_only``: the segments'
        rows, their keys and mapped columns, no hashes).

        A key twice is found without grouping every row: the plan's rows (the changes) are grouped, and
        the segments' rows counted (no hash computed) and compared with what the plan accounts for: a
        key with two rows makes one row more than its one member. Only then are they grouped, for the
        message.
        """
        cursor.execute(f"SELECT count(*) FROM {self._temp(PLAN)} WHERE {KEY} IS NULL")
        nulls = int(cursor.fetchone()[0])
        if nulls:
            raise PlanError(f"{where} has null keys: {nulls} row(s) have no {key!r} (the key must not be null); "
                            "nothing was sent")
        # a key planned twice (its rows both new or changed), found among the plan's rows only; then one
        # whose other row is unchanged, by counting
        cursor.execute(f"SELECT 1 FROM {self._temp(PLAN)} GROUP BY {KEY} HAVING count(*) > 1 LIMIT 1")
        if not cursor.fetchall():
            cursor.execute(f"SELECT count(*) FROM ({keys_only}) AS s")
            rows = int(cursor.fetchone()[0])
            planned = counts.get("add", 0) + counts.get("update", 0) + counts.get("move", 0)
            unchanged = counts["acknowledged"] - planned + counts.get("add", 0) - counts.get("remove", 0)
            if rows == planned + unchanged:
                return
        cursor.execute(f"SELECT {KEY}, count(*) FROM ({keys_only}) AS s GROUP BY {KEY} HAVING count(*) > 1 "
                       f"ORDER BY {KEY}")
        duplicates = cursor.fetchall()
        examples = ", ".join(f"{twice} ({count} rows)" for twice, count in duplicates[:5])
        raise PlanError(f"{where} key {key!r} is not unique: {len(duplicates)} key(s) appear more than once, "
                        f"e.g. {examples}; nothing was sent")

    def keys_of(self, action: str) -> set[str]:
        """Every key the plan gives ``action`` (for the few still refused rows)."""
        return {row[0] for row in self._rows(f"SELECT {KEY} FROM {self._temp(PLAN)} WHERE {ACTION} = {literal(action)}")}

    def examples(self, action: str, limit: int) -> list[str]:
        return [row[0] for row in self._rows(f"SELECT {KEY} FROM {self._temp(PLAN)} WHERE {ACTION} = "
                                             f"{literal(action)} ORDER BY {KEY} LIMIT {int(limit)}")]

    def counts_by_target(self, action: str) -> dict[int, int]:
        return {int(target): int(count) for target, count in self._rows(
            f"SELECT {PREVIOUS_TARGET}, count(*) FROM {self._temp(PLAN)} WHERE {ACTION} = {literal(action)} "
            f"GROUP BY {PREVIOUS_TARGET} ORDER BY {PREVIOUS_TARGET}")}

    def send_query(self, columns: Sequence[str], keys: Sequence[str] | None = None) -> str:
        """SQL of the rows to send (or of ``keys`` only), with their column hashes, row hash, digest and
        what was acknowledged of them before; a member moving to a new target joins it, sent whole."""
        mapped = ", ".join(quote(column) for column in columns)
        if keys is not None:
            self._probe(keys)
            where = f"{KEY} IN (SELECT key FROM {self._temp(PROBE)}) AND {ACTION} <> '{REDIGEST}'"
        else:
            where = f"{ACTION} IN ('add', 'update', 'move', 'retry')"  # not 'remove', nor 'refused' (still)
        return (f"SELECT {mapped}, {KEY}, {HASHES}, {ACTION} IN ('add', 'move', 'retry') AS segship_new, "
                f"{self.dialect.row_hash(HASHES)} AS segship_row_hash, {PREVIOUS_HASHES}, "
                f"{PREVIOUS_IDENTITY}, {PREVIOUS_TARGET}, {DIGEST} FROM {self._temp(PLAN)} WHERE {where}")

    def leavers(self) -> dict[int, list[Member]]:
        """The members who left, by the target they are in (identities only leave the warehouse)."""
        found: dict[int, list[Member]] = {}
        for key, identity, target in self._rows(
                f"SELECT {KEY}, {PREVIOUS_IDENTITY}, {PREVIOUS_TARGET} FROM {self._temp(PLAN)} WHERE {ACTION} = 'remove' "
                f"ORDER BY {KEY}"):
            found.setdefault(int(target), []).append(Member(key, identity))
        return found

    def counts(self) -> dict[str, int]:
        """The plan's rows by action, and ``refused_members``: the still refused rows of members (their
        acknowledged record stays as it was)."""
        counts = {"refused_members": 0}
        for action, count, members in self._rows(f"SELECT {ACTION}, count(*), count({PREVIOUS_TARGET}) FROM "
                                                 f"{self._temp(PLAN)} GROUP BY {ACTION}"):
            counts[action] = int(count)
            if action == "refused":
                counts["refused_members"] = int(members)
        return counts

    def mark_rejects(self, refusals: pa.Table) -> tuple[int, int]:
        """Plan the rows refused before (``refusals``: key, and the row hash segship's mapping refused, or
        null): those whose row is the one the mapping refused as ``refused`` (not sent: still refused, as
        the local planner plans them), then the other rows to add as ``retry``. Returns both counts."""
        with self.errors("planning"), closing(self._cursor()) as cursor:
            self.dialect.load(cursor, REFUSED, refusals)
            cursor.execute(f"UPDATE {self._temp(PLAN)} SET {ACTION} = 'refused' WHERE {ACTION} IN ('add', 'update') "
                           f"AND EXISTS (SELECT 1 FROM {self._temp(REFUSED)} r WHERE r.key = {KEY} AND "
                           f"r.refused_hash = {self.dialect.row_hash(HASHES)})")
            refused = max(cursor.rowcount, 0)
            cursor.execute(f"UPDATE {self._temp(PLAN)} SET {ACTION} = 'retry' WHERE {ACTION} = 'add' AND "
                           f"{KEY} IN (SELECT key FROM {self._temp(REFUSED)})")
            return refused, max(cursor.rowcount, 0)

    def settled(self, keys: Sequence[str]) -> list[str]:
        """The given keys that are not members now, or are acknowledged as they are (nothing to send)."""
        self._probe(keys)
        return [row[0] for row in self._rows(
            f"SELECT p.key FROM {self._temp(PROBE)} p WHERE p.key NOT IN (SELECT {KEY} FROM {self._temp(PLAN)} "
            f"WHERE {ACTION} NOT IN ('remove', '{REDIGEST}')) ORDER BY p.key")]

    def non_members(self, keys: Sequence[str]) -> list[str]:
        """The given keys that are not members now (neither unchanged nor planned, or leaving)."""
        self._probe(keys)
        return [row[0] for row in self._rows(
            f"SELECT p.key FROM {self._temp(PROBE)} p WHERE p.key IN (SELECT {KEY} FROM {self._temp(PLAN)} WHERE "
            f"{ACTION} = 'remove') OR (p.key NOT IN (SELECT {KEY} FROM {self._temp(PLAN)}) AND "
            f"p.key NOT IN (SELECT m.key FROM {self._members()} AS m)) ORDER BY p.key")]

    def _probe(self, keys: Sequence[str]) -> None:
        with self.errors("staging keys"), closing(self._cursor()) as cursor:
            self.dialect.load(cursor, PROBE, pa.table({"key": pa.array(list(keys), pa.string())}))

    def _rows(self, sql: str) -> list[tuple]:
        with self.errors("reading"), closing(self._cursor()) as cursor:
            cursor.execute(sql)
            return cursor.fetchall()

    # -- what segship's state asks of members ----------------------------------------------------------

    def acknowledged(self) -> pa.RecordBatchReader:
        """(key, row_hash, target) of every member, streamed (the local planner, after switching back)."""
        def batches() -> Iterator[pa.RecordBatch]:
            with self.errors("reading"), closing(self._cursor()) as cursor:
                cursor.execute(f"SELECT m.key, m.row_hash, m.target FROM {self._members()} AS m ORDER BY m.key")
                for batch in cursor.fetch_record_batch():
                    yield pa.RecordBatch.from_arrays([batch.column(i).cast(ACKNOWLEDGED.field(i).type)
                                                      for i in range(3)], schema=ACKNOWLEDGED)

        return pa.RecordBatchReader.from_batches(ACKNOWLEDGED, batches())

    def every_member(self) -> Iterator[pa.RecordBatch]:
        """Every member as ``MEMBER_SCHEMA`` batches (identity filled in), to take back into segship's state."""
        with self.errors("reading"), closing(self._cursor()) as cursor:
            cursor.execute(f"SELECT m.key, m.row_hash, m.column_hashes, coalesce(m.identity, m.key) AS identity, "
                           f"m.target FROM {self._members()} AS m")
            for batch in cursor.fetch_record_batch():
                yield pa.RecordBatch.from_arrays([batch.column(i).cast(MEMBER_SCHEMA.field(i).type)
                                                  for i in range(5)], schema=MEMBER_SCHEMA)

    def has_members(self) -> bool:
        return bool(self._rows(f"SELECT 1 FROM {self._members()} AS m LIMIT 1"))

    def by_keys(self, keys: Sequence[str]) -> dict[str, tuple[bytes | None, str, int]]:
        """key -> (column hashes, identity, target) of the given keys that are members."""
        if not keys:
            return {}
        self._probe(keys)
        return {key: (bytes(hashes) if hashes is not None else None, identity, int(target))
                for key, hashes, identity, target in self._rows(
                    f"SELECT m.key, m.column_hashes, coalesce(m.identity, m.key), m.target FROM {self._members()} "
                    f"AS m WHERE m.key IN (SELECT key FROM {self._temp(PROBE)})")}

    def identities_held(self, identities: Sequence[str], target: int, excluding: Sequence[str]) -> set[str]:
        if not identities:
            return set()
        with self.errors("staging keys"), closing(self._cursor()) as cursor:
            self.dialect.load(cursor, IDENTITIES, pa.table({"identity": pa.array(list(identities),
                                                                                           pa.string())}))
        self._probe(excluding)
        return {row[0] for row in self._rows(
            f"SELECT DISTINCT coalesce(m.identity, m.key) FROM {self._members()} AS m "
            f"WHERE m.target = {int(target)} AND coalesce(m.identity, m.key) IN "
            f"(SELECT identity FROM {self._temp(IDENTITIES)}) AND m.key NOT IN (SELECT key FROM {self._temp(PROBE)})")}

    # -- writing ---------------------------------------------------------------------------------------

    def acknowledge(self, rows: pa.RecordBatch | pa.Table, target: int | None = None,
                    digests: pa.Array | None = None) -> None:
        """Write acknowledged members (``key``, ``row_hash``, ``column_hashes``, ``identity``, and ``target``
        unless given) over those there, in one transaction: a bulk load, then one upsert. Idempotent:
        the same rows acknowledged again (a run killed before segship's state recorded them) land the same.
        ``digests``: each row's digest where the member now holds the planned row's column hashes
        (null elsewhere, and all null unless given: unknown, so the next run hashes those rows)."""
        if not len(rows):
            return
        staged = "segship_acknowledged"
        targets = pa.array([target] * len(rows), pa.int32()) if target is not None else rows.column("target")
        digests = digests if digests is not None else pa.nulls(len(rows), pa.int64())
        table = pa.table([rows.column("key").cast(pa.string()), rows.column("row_hash").cast(pa.int64()),
                          rows.column("column_hashes").cast(pa.binary()),
                          _identity_or_null(rows).column("identity"), targets, digests.cast(pa.int64())],
                         names=["key", "row_hash", "column_hashes", "identity", "target", "row_digest"])
        select = (f"SELECT {literal(self.export)}, key, row_hash, column_hashes, identity, target, row_digest "
                  f"FROM {self._temp(staged)}")
        self._write("acknowledging", planned=True, work=lambda cursor: (
            self.dialect.load(cursor, staged, table),
            cursor.execute(self.dialect.upsert(self.table, staged, (*MEMBER_COLUMNS, ROW_DIGEST), ("export", "key"),
                                               select))))

    def record_digests(self) -> None:
        """Give unchanged members whose digest is not their row's (``redigest``) that row's digest, where
        the member holds the row's column hashes (members acknowledged in the run got theirs with the
        acknowledgement). A run's last step, when nothing else writes them; a run killed before it
        leaves those digests as they were, and the next run hashes those rows again (a member
        acknowledged without its digest is found unchanged by its hashes then, and its digest
        recorded here)."""
        if not self._planned or not self._has_digests():
            return
        redigest = f"p.{DIGEST} IS NOT NULL AND p.{ACTION} = '{REDIGEST}'"
        with self.errors("recording row digests"), closing(self._cursor()) as cursor:
            cursor.execute(f"SELECT 1 FROM {self._temp(PLAN)} AS p WHERE {redigest} LIMIT 1")
            if not cursor.fetchall():
                return
            self._drop_members_digest(cursor)  # (autocommitted before the digests change: never stale)
            self._digest_dropped, self._recorded = True, None
            cursor.execute(f"UPDATE {self.table} AS m SET {ROW_DIGEST} = p.{DIGEST} FROM {self._temp(PLAN)} AS p "
                           f"WHERE m.export = {literal(self.export)} AND m.key = p.{KEY} AND {redigest} "
                           f"AND m.row_hash <> 0 AND m.column_hashes = p.{HASHES} "
                           f"AND m.{ROW_DIGEST} IS DISTINCT FROM p.{DIGEST}")

    def add_unknown(self, members: Sequence[tuple[str, str, int]]) -> None:
        """(key, identity, target) members of unknown row hash (0: sent again), unless members already."""
        if not members:
            return
        keys, identities, targets = zip(*members, strict=True)
        staged = "segship_unknown"
        table = pa.table({"key": pa.array(keys, pa.string()), "identity": pa.array(identities, pa.string()),
                          "target": pa.array(targets, pa.int32())})
        self._write("recording batches in flight", planned=True, work=lambda cursor: (
            self.dialect.load(cursor, staged, table),
            cursor.execute(f"INSERT INTO {self.table} ({', '.join(MEMBER_COLUMNS)}) SELECT {literal(self.export)}, "
                           f"s.key, 0, NULL, nullif(s.identity, s.key), s.target FROM {self._temp(staged)} s "
                           f"WHERE s.key NOT IN (SELECT key FROM {self.table} WHERE export = {literal(self.export)})")))

    def delete(self, keys: Sequence[str] | None = None, target: int | None = None) -> None:
        """Delete members: the given keys, or those in ``target``, or (neither) every one of the export's."""
        condition = f"export = {literal(self.export)}"
        if target is not None:
            condition += f" AND target = {int(target)}"

        def delete(cursor: Cursor) -> None:
            if keys is None:
                cursor.execute(f"DELETE FROM {self.table} WHERE {condition}")
            elif keys:
                self.dialect.load(cursor, LEAVING, pa.table({"key": pa.array(list(keys), pa.string())}))
                cursor.execute(f"DELETE FROM {self.table} WHERE {condition} AND key IN "
                               f"(SELECT key FROM {self._temp(LEAVING)})")

        self._write("removing members", delete, planned=keys is not None and target is None)

    def forget_hashes(self) -> None:
        """Mark every member unknown (changed settings: each is sent again whole)."""
        self._write("marking members for a re-send", lambda cursor: cursor.execute(
            f"UPDATE {self.table} SET row_hash = 0, column_hashes = NULL, {ROW_DIGEST} = NULL "
            f"WHERE export = {literal(self.export)}"))

    def replace(self, members: Iterable[pa.RecordBatch]) -> None:
        """Make the export's members exactly ``members`` (``MEMBER_SCHEMA`` batches), in one transaction."""
        staged = "segship_moving_in"
        select = (f"SELECT {literal(self.export)}, key, row_hash, column_hashes, identity, target "
                  f"FROM {self._temp(staged)}")
        reader = pa.RecordBatchReader.from_batches(MEMBER_SCHEMA, (_identity_or_null(b) for b in members))
        self._write("moving members in", lambda cursor: (
            cursor.execute(f"DELETE FROM {self.table} WHERE export = {literal(self.export)}"),
            self.dialect.load(cursor, staged, reader),
            cursor.execute(f"INSERT INTO {self.table} ({', '.join(MEMBER_COLUMNS)}) {select}")))

    def _write(self, doing: str, work: Any, *, planned: bool = False) -> None:
        """Run ``work`` in one transaction of the writing connection, which first drops the members'
        digest (the first write of the session: the digest no longer holds once it commits).
        ``planned``: it writes only keys of the plan (what a run sends, records and removes is
        what was planned), which :meth:`record_members_digest` looks up; any other write makes it
        sum every member."""
        with self._writes, self.errors(doing):
            self._written_beside_plan = self._written_beside_plan or not planned
            connection = self._writer()
            try:
                with closing(connection.cursor()) as cursor:
                    self._drop_members_digest(cursor)
                    work(cursor)
                connection.commit()
                self._digest_dropped, self._recorded = True, None
            except BaseException:
                try:
                    connection.rollback()
                except Exception:  # noqa: BLE001 - a connection lost: the transaction is gone with it
                    self._writing = None
                raise


def _identity_or_null(rows: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """``rows`` with no identity where it equals the key (as segship's state keeps them: the key is
    most destinations' identity, and the table stays small)."""
    key, identity = rows.column("key").cast(pa.string()), rows.column("identity").cast(pa.string())
    index = rows.schema.get_field_index("identity")
    return rows.set_column(index, pa.field("identity", pa.string()),
                           pc.if_else(pc.equal(identity, key), pa.scalar(None, pa.string()), identity))
