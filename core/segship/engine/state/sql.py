"""The SQL both state backends share: the contract over a DB-API connection.

Queries are written once, with ``?`` placeholders; a backend says how to connect,
lock, migrate and begin a transaction, and rewrites placeholders if its driver wants
others. The schema (same tables and columns on both, DDL in each backend's module):

- ``exports``: an id per export name, the settings its hashes were made with and the
  version of the hash functions that made them;
- ``targets``: per export id, each target it has had (an id counting from 1, its settings);
- ``members``: per export id and key, the acknowledged row hash, column hashes, the
  identity, NULL when it equals the key (Braze: the key is the external id), which keeps
  the largest table small, and the id of the target the member is in;
- ``member_digests``: per export id, the digest of its members (``MembersDigest``), deleted
  by the first write to them in a run (``_members_written``);
- ``stale_identities`` (with the target to remove each from), ``rejects``, ``runs``: by
  export name (few rows).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from segship.destination import Member
from segship.engine.hashing import HASH_VERSION
from segship.engine.state import (
    ACKNOWLEDGED_COLUMNS,
    Acknowledged,
    ColumnHashes,
    MembersDigest,
    StateError,
    StateStore,
    chunks,
    now,
)

#: Columns of each table (and their Arrow types, for ``state copy``), in an order that
#: copies parents first. The backends' DDL matches these types.
TABLES: dict[str, pa.Schema] = {
    "exports": pa.schema([("id", pa.int64()), ("name", pa.string()), ("fingerprint", pa.string()),
                          ("columns", pa.string()), ("hash_version", pa.int32())]),
    "targets": pa.schema([("export_id", pa.int64()), ("id", pa.int32()), ("settings", pa.string())]),
    "members": pa.schema([("export_id", pa.int64()), ("key", pa.string()), ("row_hash", pa.int64()),
                          ("column_hashes", pa.binary()), ("identity", pa.string()), ("target", pa.int32())]),
    "member_digests": pa.schema([("export_id", pa.int64()), ("kind", pa.string()), ("members", pa.int64()),
                                 ("digest", pa.int64())]),
    "stale_identities": pa.schema([("export", pa.string()), ("key", pa.string()), ("identity", pa.string()),
                                   ("target", pa.int32())]),
    "runs": pa.schema([("id", pa.int64()), ("export", pa.string()), ("started_at", pa.string()),
                       ("finished_at", pa.string()), ("outcome", pa.string()), ("dry_run", pa.int32()),
                       ("report", pa.string())]),
    "rejects": pa.schema([("export", pa.string()), ("key", pa.string()), ("reason", pa.string()),
                          ("first_seen", pa.string()), ("last_seen", pa.string()), ("attempts", pa.int32())]),
    "in_flight": pa.schema([("export", pa.string()), ("id", pa.int64()), ("target", pa.int32()),
                            ("members", pa.string())]),
}
#: Primary keys, by which ``state copy`` reads a table in pages.
TABLE_KEYS: dict[str, tuple[str, ...]] = {"exports": ("id",), "targets": ("export_id", "id"),
                                          "members": ("export_id", "key"), "member_digests": ("export_id",),
                                          "stale_identities": ("export", "target", "identity"), "runs": ("id",),
                                          "rejects": ("export", "key"), "in_flight": ("export", "id")}
#: What a later acknowledgement of a member replaces (every column after the primary key).
MEMBER_UPDATES = ", ".join(f"{column} = excluded.{column}" for column in TABLES["members"].names[2:])
#: Acknowledged members into ``members``: export id and target (integers) written in, the rest bound.
UPSERT_MEMBERS = ("INSERT INTO members VALUES ({export_id}, ?, ?, ?, ?, {target}) ON CONFLICT (export_id, key) "
                  f"DO UPDATE SET {MEMBER_UPDATES}")
ACKNOWLEDGED = pa.schema([("key", pa.string()), ("row_hash", pa.int64()), ("target", pa.int32())])
COPY_BATCH_ROWS = 50_000
T = TypeVar("T")
#: Column hashes of state written before the hash rework: comma-joined decimal text.
TEXT_COLUMN_HASHES = re.compile(rb"-?\d+(,-?\d+)*")


def column_hashes_in(value: ColumnHashes | None) -> bytes | None:
    """Stored as bytes on both backends (BLOB / BYTEA)."""
    return value.encode() if isinstance(value, str) else value


def acknowledged_batch(acknowledged: Acknowledged) -> pa.RecordBatch:
    """Acknowledged rows as a record batch of ``ACKNOWLEDGED_COLUMNS`` (themselves when they are one)."""
    if isinstance(acknowledged, pa.RecordBatch):
        return acknowledged
    rows = [(key, row_hash, column_hashes_in(hashes), identity) for key, row_hash, hashes, identity in acknowledged]
    types = (pa.string(), pa.int64(), pa.binary(), pa.string())
    columns = [pa.array(values, type_) for values, type_ in zip(zip(*rows), types)] if rows else \
        [pa.array([], type_) for type_ in types]
    return pa.RecordBatch.from_arrays(columns, names=list(ACKNOWLEDGED_COLUMNS))


def member_columns(acknowledged: pa.RecordBatch) -> list[pa.Array]:
    """The members table's columns for acknowledged rows but the export id and target (the same
    for all: written into the statement, a bound column of each cost 0.1 µs a member), computed
    column-wise: no identity where it is the key, column hashes as plain binary (the engine's are
    fixed-size)."""
    key, row_hash, column_hashes, identity = (acknowledged.column(name) for name in ACKNOWLEDGED_COLUMNS)
    types = TABLES["members"].types
    return [key.cast(types[1]), row_hash.cast(types[2]), column_hashes.cast(types[3]),
            pc.if_else(pc.equal(identity, key), pa.scalar(None, types[4]), identity.cast(types[4]))]


def column_hashes_out(value: bytes | str | None) -> ColumnHashes | None:
    """As the engine handed them: text hashes (kept until the hash rework re-keys them) come back as text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if TEXT_COLUMN_HASHES.fullmatch(value):
            return value.decode()
    return value


def arrow_columns(rows: Sequence[Sequence[Any]], types: Sequence[pa.DataType | None] = ()) -> list[pa.Array]:
    """The rows' columns as Arrow arrays, typed by ``types`` where given; a column of NULLs only is text."""
    arrays = [pa.array(values, types[index] if index < len(types) else None)
              for index, values in enumerate(zip(*rows, strict=True))]
    return [array.cast(pa.string()) if array.type == pa.null() else array for array in arrays]


def migrate(current: int, migrations: Sequence[str], describe: str, apply: Callable[[int], None]) -> None:
    """Apply ``migrations[current:]`` via ``apply(target_version)``; refuse a newer schema."""
    latest = len(migrations)
    if current > latest:
        raise StateError(f"state {describe} was written by a newer segship (schema {current}, this one knows "
                         f"{latest}); upgrade segship")
    if current < latest:
        apply(latest)


def statements(script: str) -> list[str]:
    """The statements of a migration script (no ';' inside our statements)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def on_state_thread(method: Callable[..., T]) -> Callable[..., T]:
    """Run the method on the store's own thread. ADBC's DB-API installs a SIGINT handler of its own
    around every blocking call made on the main thread (to cancel the query), which would swallow
    segship's Ctrl-C (finish the batches in flight, commit, stop) or cancel a commit; off the main
    thread it doesn't. One thread per store also keeps the connection to one thread."""

    @functools.wraps(method)
    def on_thread(self: SqlState, *args: Any, **kwargs: Any) -> T:
        if threading.get_ident() == self._thread_id:
            return method(self, *args, **kwargs)
        return self._thread.submit(method, self, *args, **kwargs).result()

    return on_thread


class SqlState(StateStore):
    """The contract in SQL over ``self.db`` (a DB-API connection in autocommit mode)."""

    db: Any
    #: the driver's error base class, turned into StateError
    driver_error: type[Exception] | tuple[type[Exception], ...]
    begin = "BEGIN"

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="segship-state")
        self._thread_id = self._thread.submit(threading.get_ident).result()
        self.cursor = self.new_cursor()
        self._export_ids: dict[str, int] = {}
        self._creating_exports: set[str] = set()  # exports the open transaction created: forgotten if rolled back
        self._exports_with_rejects: set[str] = set()
        self._exports_without_rejects: set[str] = set()
        # exports whose digest this run's writes deleted (committed), and those of the open transaction
        self._digest_deleted: set[int] = set()
        self._deleting_digest: set[int] = set()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._thread.submit(self.close_connection).result()
        finally:
            self._thread.shutdown(wait=True)

    def close_connection(self) -> None:
        for close in (self.cursor.close, self.db.close):
            try:
                close()
            except self.driver_error:
                pass  # already gone (a server that went away)

    # -- what a backend provides ------------------------------------------------------------------

    def sql(self, text: str) -> str:
        """``text`` with the driver's placeholders (``?`` as written)."""
        return text

    def error_message(self, exc: Exception) -> str:
        return f"state {self.describe()}: {exc}"

    def new_cursor(self) -> Any:
        return self.db.cursor()

    def insert_batches(self, table: str, batches: Iterable[pa.RecordBatch]) -> None:
        columns = TABLES[table].names
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for batch in batches:
            with self.errors():
                self.cursor.executemany(self.sql(insert), batch)

    def after_copy(self) -> None:
        """Hook: what a backend does once a copy is in (PostgreSQL moves its id sequences on)."""

    # -- statements -----------------------------------------------------------------------------------

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except self.driver_error as exc:
            raise StateError(self.error_message(exc)) from None

    @on_state_thread
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.errors():
            self.cursor.execute(self.sql(sql), params)
            return self.cursor

    @on_state_thread
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.errors():
            self.cursor.execute(self.sql(sql), params)
            return self.cursor.fetchall()

    @on_state_thread
    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        with self.errors():
            self.cursor.execute(self.sql(sql), params)
            return self.cursor.fetchone()

    def many(self, sql: str, rows: Sequence[Sequence[Any]], types: Sequence[pa.DataType | None] = ()) -> None:
        """Run ``sql`` for each row, the rows bound as one Arrow batch (the driver's own row loop is
        slow in Python); a column of NULLs only is bound as text unless ``types`` says otherwise."""
        if rows:
            self.many_columns(sql, arrow_columns(rows, types))

    @on_state_thread
    def many_columns(self, sql: str, columns: Sequence[pa.Array]) -> None:
        """Run ``sql`` for each row of ``columns`` (equally long, at least one row)."""
        with self.errors():
            self.cursor.executemany(self.sql(sql), pa.RecordBatch.from_arrays(
                list(columns), names=[f"p{index}" for index in range(len(columns))]))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute(self.begin)
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            self._deleting_digest.clear()
            for export in self._creating_exports:  # its id may go to another export next
                self._export_ids.pop(export, None)
            self._creating_exports.clear()
            try:
                self.execute("ROLLBACK")
            except StateError:
                pass  # the connection is gone (the server rolled back), or the COMMIT failed
            raise
        self._digest_deleted |= self._deleting_digest
        self._deleting_digest.clear()
        self._creating_exports.clear()

    # -- exports ----------------------------------------------------------------------------------------

    def export_id(self, export: str, *, create: bool = False) -> int | None:
        if export not in self._export_ids:
            row = self.one("SELECT id FROM exports WHERE name = ?", (export,))
            if row is None and create:
                row = self.one("INSERT INTO exports (name, hash_version) VALUES (?, ?) RETURNING id",
                               (export, HASH_VERSION))
                self._creating_exports.add(export)
            if row is None:
                return None
            self._export_ids[export] = int(row[0])
        return self._export_ids[export]

    def members_digest(self, export: str) -> MembersDigest | None:
        row = self.one("SELECT d.kind, d.members, d.digest FROM member_digests d JOIN exports e ON e.id = d.export_id "
                       "WHERE e.name = ?", (export,))
        return MembersDigest(row[0], int(row[1]), int(row[2])) if row else None

    @on_state_thread
    def record_members_digest(self, export: str, digest: MembersDigest) -> None:
        with self.transaction():
            export_id = self.export_id(export, create=True)
            self.execute("DELETE FROM member_digests WHERE export_id = ?", (export_id,))
            self.execute("INSERT INTO member_digests VALUES (?, ?, ?, ?)",
                         (export_id, digest.kind, digest.members, digest.digest))
        self._digest_deleted.discard(export_id)

    def _members_written(self, export_id: int) -> None:
        """Inside a transaction that writes an export's members: its digest no longer holds.

        Deleted by the run's first such write only: the run holds the export's lock, so no one
        records another until it does (``start_run`` forgets which were deleted).
        """
        if export_id not in self._digest_deleted:
            self.execute("DELETE FROM member_digests WHERE export_id = ?", (export_id,))
            self._deleting_digest.add(export_id)

    @on_state_thread
    def reconcile_settings(self, export: str, fingerprint: str, columns: Sequence[str],
                           earlier_fingerprint: str | None = None) -> bool:
        recorded = self._recorded_settings(export)
        columns_json = orjson.dumps(list(columns)).decode()
        if recorded == (fingerprint, columns_json):
            return False
        if recorded is not None and recorded == (earlier_fingerprint, columns_json):
            with self.transaction():
                self.execute("UPDATE exports SET fingerprint = ? WHERE name = ?", (fingerprint, export))
            return False
        self._settled_export_id(export)
        with self.transaction():
            export_id = self.export_id(export, create=True)
            # every member is marked unknown: no hash is left to convert
            self.execute("UPDATE exports SET fingerprint = ?, columns = ?, hash_version = ? WHERE id = ?",
                         (fingerprint, columns_json, HASH_VERSION, export_id))
            self.execute("UPDATE members SET row_hash = 0, column_hashes = NULL WHERE export_id = ?", (export_id,))
            self._members_written(export_id)
        return recorded is not None

    def settings_changed(self, export: str, fingerprint: str, columns: Sequence[str],
                         earlier_fingerprint: str | None = None) -> bool:
        recorded = self._recorded_settings(export)
        columns_json = orjson.dumps(list(columns)).decode()
        return recorded is not None and recorded not in ((fingerprint, columns_json),
                                                         (earlier_fingerprint, columns_json))

    def _recorded_settings(self, export: str) -> tuple[str, str] | None:
        row = self.one("SELECT fingerprint, columns FROM exports WHERE name = ? AND fingerprint IS NOT NULL",
                       (export,))
        return (row[0], row[1]) if row else None

    def hash_version(self, export: str) -> int:
        row = self.one("SELECT hash_version FROM exports WHERE name = ?", (export,))
        return HASH_VERSION if row is None else int(row[0])

    @on_state_thread
    def stored_hashes(self, export: str) -> pa.Table:
        export_id = self._settled_export_id(export)
        rows = self.rows("SELECT key, row_hash, column_hashes FROM members WHERE export_id = ?", (export_id,)) \
            if export_id is not None else []
        keys, row_hashes, column_hashes = zip(*rows, strict=True) if rows else ((), (), ())
        # version 1 wrote decimal text (kept as the bytes of that text since the compact schema)
        texts = [bytes(value).decode() if isinstance(value, (bytes, bytearray, memoryview)) else value
                 for value in column_hashes]
        return pa.table({"key": pa.array(keys, pa.string()), "row_hash": pa.array(row_hashes, pa.int64()),
                         "column_hashes": pa.array(texts, pa.string())})

    @on_state_thread
    def convert_hashes(self, export: str, converted: pa.Table, version: int) -> None:
        columns = [converted.column(name).to_pylist() for name in ("row_hash", "column_hashes", "key")]
        export_id = self._settled_export_id(export)
        with self.transaction():
            self.many("UPDATE members SET row_hash = ?, column_hashes = ? WHERE export_id = ? AND key = ?",
                      [(row_hash, hashes, export_id, key) for row_hash, hashes, key in zip(*columns, strict=True)],
                      (pa.int64(), pa.binary(), pa.int64(), pa.string()))
            self.execute("UPDATE exports SET hash_version = ? WHERE id = ?", (version, export_id))
            self._members_written(export_id)

    # -- targets --------------------------------------------------------------------------------------

    @on_state_thread
    def target_id(self, export: str, target: dict[str, Any], *, record: bool) -> int:
        settings = orjson.dumps(target, option=orjson.OPT_SORT_KEYS).decode()
        export_id = self.export_id(export, create=record)
        if export_id is None:
            return 1
        found = self.one("SELECT id FROM targets WHERE export_id = ? AND settings = ?", (export_id, settings))
        if found:
            return int(found[0])
        new_id = int(self.one("SELECT coalesce(max(id), 0) + 1 FROM targets WHERE export_id = ?", (export_id,))[0])
        if record:
            with self.transaction():
                self.execute("INSERT INTO targets VALUES (?, ?, ?)", (export_id, new_id, settings))
        return new_id

    def targets(self, export: str) -> dict[int, dict[str, Any]]:
        return {int(target_id): orjson.loads(settings) for target_id, settings in self.rows(
            "SELECT t.id, t.settings FROM targets t JOIN exports e ON e.id = t.export_id WHERE e.name = ?",
            (export,))}

    @on_state_thread
    def members_by_target(self, export: str, keys: Sequence[str]) -> dict[int, list[Member]]:
        by_target: dict[int, list[Member]] = {}
        export_id = self._settled_export_id(export) if keys else None
        if export_id is None:
            return by_target
        for chunk in chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, identity, target in self.rows(
                    "SELECT key, coalesce(identity, key), target FROM members "
                    f"WHERE export_id = ? AND key IN ({marks}) ORDER BY key", (export_id, *chunk)):
                by_target.setdefault(int(target), []).append(Member(key, identity))
        return by_target

    # -- what was acknowledged -----------------------------------------------------------------------

    def acknowledged(self, export: str) -> pa.RecordBatchReader:
        """One query, streamed in the driver's batches (SQLite ``BATCH_ROWS``, PostgreSQL
        ``STREAM_BATCH_BYTES``) on a cursor of its own, each batch fetched on the state thread; no
        other statement runs while it is read. (Pages of 200,000 by key, a query each, took
        PostgreSQL 12.7 s for 10M members against 8.3 s streamed.)"""
        export_id = self._settled_export_id(export)

        def batches() -> Iterator[pa.RecordBatch]:
            if export_id is None:
                return
            # no parameter: PostgreSQL's driver streams a query without any (COPY) but reads a
            # parameterized one whole into memory (10M members: 1.5 GB)
            cursor, reader = self._query_stream("SELECT key, row_hash, target FROM members WHERE export_id = "
                                                f"{int(export_id)} ORDER BY key")
            try:
                while (batch := self._next_batch(reader)) is not None:
                    if batch.num_rows:  # an empty result may come with guessed types
                        yield pa.RecordBatch.from_arrays(
                            [column.cast(field.type) for column, field in zip(batch.columns, ACKNOWLEDGED,
                                                                              strict=True)], schema=ACKNOWLEDGED)
            finally:
                if not self._closed:  # (a store closed first closed its cursors with its connection)
                    self._close_stream(cursor)

        return pa.RecordBatchReader.from_batches(ACKNOWLEDGED, batches())

    def stream_cursor(self) -> Any:
        """A cursor for one streamed query (a backend sets its batch size)."""
        return self.new_cursor()

    @on_state_thread
    def _query_stream(self, sql: str) -> tuple[Any, pa.RecordBatchReader]:
        cursor = self.stream_cursor()
        with self.errors():
            cursor.execute(sql)
            return cursor, cursor.fetch_record_batch()

    @on_state_thread
    def _next_batch(self, reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None
        except self.driver_error as exc:  # the server gone while streaming
            raise StateError(self.error_message(exc)) from None
        except pa.ArrowException as exc:  # (the same, as the driver's stream reports it)
            raise StateError(self.error_message(exc)) from None

    @on_state_thread
    def _close_stream(self, cursor: Any) -> None:
        try:
            cursor.close()
        except self.driver_error:
            pass  # the connection is gone: so is the query

    @on_state_thread
    def details(self, export: str, keys: Sequence[str]) -> dict[str, tuple[ColumnHashes | None, str]]:
        export_id = self._settled_export_id(export)
        found: dict[str, tuple[ColumnHashes | None, str]] = {}
        if export_id is None:
            return found
        for chunk in chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, column_hashes, identity in self.rows(
                    f"SELECT key, column_hashes, coalesce(identity, key) FROM members "
                    f"WHERE export_id = ? AND key IN ({marks})", (export_id, *chunk)):
                found[key] = (column_hashes_out(column_hashes), identity)
        return found

    @on_state_thread
    def has_members(self, export: str) -> bool:
        export_id = self._settled_export_id(export)
        return export_id is not None and self.one("SELECT 1 FROM members WHERE export_id = ? LIMIT 1",
                                                  (export_id,)) is not None

    @on_state_thread
    def identities_held(self, export: str, identities: Iterable[str], target: int,
                        excluding: Iterable[str] = ()) -> set[str]:
        export_id = self._settled_export_id(export)
        identities, excluding = list(dict.fromkeys(identities)), list(dict.fromkeys(excluding))
        if export_id is None or not identities:
            return set()
        self.execute("CREATE TEMP TABLE IF NOT EXISTS probe_identities (identity TEXT PRIMARY KEY)")
        self.execute("CREATE TEMP TABLE IF NOT EXISTS probe_keys (key TEXT PRIMARY KEY)")
        self.execute("DELETE FROM probe_identities")
        self.execute("DELETE FROM probe_keys")
        self.many("INSERT INTO probe_identities VALUES (?)", [(i,) for i in identities])
        self.many("INSERT INTO probe_keys VALUES (?)", [(k,) for k in excluding])
        # an identity is a member's own (NULL: the key, found by the primary key) or another value
        return {row[0] for row in self.rows(
            "SELECT m.identity FROM probe_identities p JOIN members m ON m.export_id = ? AND m.identity = p.identity "
            "WHERE m.target = ? AND m.key NOT IN (SELECT key FROM probe_keys) "
            "UNION SELECT m.key FROM probe_identities p JOIN members m ON m.export_id = ? AND m.key = p.identity "
            "WHERE m.identity IS NULL AND m.target = ? AND m.key NOT IN (SELECT key FROM probe_keys)",
            (export_id, target, export_id, target))}

    def stale_identities(self, export: str) -> dict[int, list[Member]]:
        by_target: dict[int, list[Member]] = {}
        for key, identity, target in self.rows(
                "SELECT key, identity, target FROM stale_identities WHERE export = ? ORDER BY target, key", (export,)):
            by_target.setdefault(int(target), []).append(Member(key, identity))
        return by_target

    def count_stale_identities(self, export: str) -> int:
        return int(self.one("SELECT count(*) FROM stale_identities WHERE export = ?", (export,))[0])

    # -- committing what the destination answered -------------------------------------------------------

    @on_state_thread
    def commit_upserts(self, export: str, acknowledged: Iterable[tuple[str, int, ColumnHashes | None, str]],
                       stale: Iterable[tuple[str, str]], rejected: Iterable[tuple[str, str]], *,
                       target: int = 1, moving: bool = False, in_flight: int | None = None) -> None:
        acknowledged = acknowledged_batch(acknowledged)
        stale, rejected = list(stale), list(rejected)
        keys = acknowledged.column(0)
        if moving:
            self._settled_export_id(export)  # the members moving, as they are in their old target
        with self.transaction():
            export_id = self.export_id(export, create=True)
            if moving:
                for chunk in chunks(keys.to_pylist(), 500):
                    self.execute(
                        "INSERT INTO stale_identities SELECT ?, key, coalesce(identity, key), target FROM members "
                        f"WHERE export_id = ? AND target <> ? AND key IN ({','.join('?' * len(chunk))}) "
                        "ON CONFLICT DO NOTHING", (export, export_id, target, *chunk))
            if len(acknowledged):
                self._write_members(export_id, target, member_columns(acknowledged))
                self._members_written(export_id)
            self.many("INSERT INTO stale_identities VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                      [(export, key, identity, target) for key, identity in stale], TABLES["stale_identities"].types)
            self._settle_rejects(export, keys, rejected)
            if in_flight is not None:
                self.execute("DELETE FROM in_flight WHERE export = ? AND id = ?", (export, in_flight))

    @on_state_thread
    def record_in_flight(self, export: str, keys: Sequence[str], identities: Sequence[str], target: int) -> int:
        members = orjson.dumps([list(keys), list(identities)]).decode()
        with self.transaction():
            # the run holds the export's lock: no one else numbers its batches
            flight = int(self.one("SELECT coalesce(max(id), 0) + 1 FROM in_flight WHERE export = ?", (export,))[0])
            self.execute("INSERT INTO in_flight VALUES (?, ?, ?, ?)", (export, flight, target, members))
        return flight

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
            self.many("INSERT INTO members VALUES (?, ?, 0, NULL, ?, ?) ON CONFLICT DO NOTHING",
                      [(export_id, key, None if identity == key else identity, target)
                       for key, (identity, target) in sent.items() if key not in known],
                      (pa.int64(), pa.string(), pa.string(), pa.int32()))
            self._members_written(export_id)
            self.many("INSERT INTO stale_identities VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                      [(export, key, identity, target) for key, (identity, target) in sent.items()
                       if key in known and known[key] != (identity, target)], TABLES["stale_identities"].types)
            self.execute("DELETE FROM in_flight WHERE export = ?", (export,))
        return len(sent)

    @on_state_thread
    def commit_removals(self, export: str, removed: Iterable[Member], rejected: Iterable[tuple[str, str]],
                        stale: bool, target: int = 1) -> None:
        removed, rejected = list(removed), list(rejected)
        self._settled_export_id(export)
        with self.transaction():
            if stale:
                self.many("DELETE FROM stale_identities WHERE export = ? AND target = ? AND identity = ?",
                          [(export, target, member.identity) for member in removed],
                          (pa.string(), pa.int32(), pa.string()))
            else:
                export_id = self.export_id(export)
                if removed and export_id is not None:
                    self.many("DELETE FROM members WHERE export_id = ? AND key = ?",
                              [(export_id, member.key) for member in removed])
                    self._members_written(export_id)
            self._settle_rejects(export, pa.array([m.key for m in removed] if not stale else [], pa.string()),
                                 rejected)

    # -- where acknowledged members are written --------------------------------------------------------

    def _write_members(self, export_id: int, target: int, columns: list[pa.Array]) -> None:
        """Write an export's acknowledged members (the columns of ``members`` but export id and target:
        :func:`member_columns`), inside the commit's transaction."""
        self.many_columns(UPSERT_MEMBERS.format(export_id=int(export_id), target=int(target)), columns)

    @on_state_thread
    def _settled_export_id(self, export: str) -> int | None:
        """The export's id, once every member committed for it is in ``members`` (see ``_settle``)."""
        export_id = self.export_id(export)
        if export_id is not None:
            self._settle(export_id)
        return export_id

    def _settle(self, export_id: int | None) -> None:
        """Fold the members ``_write_members`` left elsewhere for an export (None: every export) into
        ``members``, in a transaction of its own, on the state thread; a backend that writes them
        there at once (PostgreSQL) has nothing to do."""

    def _settle_rejects(self, export: str, accepted: pa.Array, rejected: list[tuple[str, str]]) -> None:
        stamp = now()
        if len(accepted) and self._has_rejects(export):
            self.many("DELETE FROM rejects WHERE export = ? AND key = ?",
                      [(export, key) for key in accepted.to_pylist()])
        if rejected:
            self._exports_with_rejects.add(export)
            self._exports_without_rejects.discard(export)
        self.many(
            "INSERT INTO rejects VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (export, key) DO UPDATE SET "
            "reason = excluded.reason, last_seen = excluded.last_seen, attempts = rejects.attempts + 1",
            [(export, key, reason, stamp, stamp) for key, reason in rejected])

    @on_state_thread
    def forget_rejects(self, export: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self.transaction():
            self.many("DELETE FROM rejects WHERE export = ? AND key = ?", [(export, key) for key in keys])

    def _has_rejects(self, export: str) -> bool:
        """Whether an export may have rejects: asked once a run (``start_run`` forgets the answer), then
        kept, as the run holds the export's lock, so no one else adds any; saves a query a batch."""
        if export not in self._exports_without_rejects and export not in self._exports_with_rejects:
            if self.one("SELECT 1 FROM rejects WHERE export = ? LIMIT 1", (export,)):
                self._exports_with_rejects.add(export)
            else:
                self._exports_without_rejects.add(export)
        return export in self._exports_with_rejects

    def rejected_keys(self, export: str) -> list[str]:
        return [row[0] for row in self.rows("SELECT key FROM rejects WHERE export = ?", (export,))]

    # -- history ------------------------------------------------------------------------------------------

    @on_state_thread
    def start_run(self, export: str, dry_run: bool) -> int:
        # under the export's lock now: forget what was cached of it (another machine may have run it)
        self._export_ids.pop(export, None)
        self._exports_with_rejects.discard(export)
        self._exports_without_rejects.discard(export)
        self._digest_deleted.clear()
        with self.transaction():
            self.execute("UPDATE runs SET outcome = 'interrupted' WHERE export = ? AND outcome = 'running'",
                         (export,))
            row = self.one("INSERT INTO runs (export, started_at, outcome, dry_run) VALUES (?, ?, 'running', ?) "
                           "RETURNING id", (export, now(), int(dry_run)))
        return int(row[0])

    @on_state_thread
    def finish_run(self, run_id: int, outcome: str, report: dict[str, Any]) -> None:
        with self.transaction():
            self.execute("UPDATE runs SET finished_at = ?, outcome = ?, report = ? WHERE id = ?",
                         (now(), outcome, orjson.dumps(report).decode(), run_id))

    def runs(self, export: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE export = ?", (export,)) if export else ("", ())
        rows = self.rows(f"SELECT id, export, started_at, finished_at, outcome, dry_run, report FROM runs {where} "
                         "ORDER BY id DESC LIMIT ?", (*params, limit))
        return [{"id": r[0], "export": r[1], "started_at": r[2], "finished_at": r[3], "outcome": r[4],
                 "dry_run": bool(r[5]), "report": orjson.loads(r[6]) if r[6] else None} for r in rows]

    def rejects(self, export: str, limit: int | None = None) -> list[dict[str, Any]]:
        tail, params = (" LIMIT ?", (export, limit)) if limit is not None else ("", (export,))
        rows = self.rows("SELECT key, reason, first_seen, last_seen, attempts FROM rejects WHERE export = ? "
                         "ORDER BY last_seen DESC, key" + tail, params)
        return [{"key": r[0], "reason": r[1], "first_seen": r[2], "last_seen": r[3], "attempts": r[4]}
                for r in rows]

    # -- administration ------------------------------------------------------------------------------------

    @on_state_thread
    def summary(self, export: str | None = None) -> list[dict[str, Any]]:
        names = [row[0] for row in self.rows(
            "SELECT name FROM exports UNION SELECT export FROM runs UNION SELECT export FROM rejects "
            "UNION SELECT export FROM stale_identities")]
        found = []
        for name in sorted(n for n in names if export is None or n == export):
            export_id = self._settled_export_id(name)
            last = self.one("SELECT id, started_at, finished_at, outcome, dry_run FROM runs WHERE export = ? "
                            "ORDER BY id DESC LIMIT 1", (name,))
            found.append({
                "export": name,
                "members": int(self.one("SELECT count(*) FROM members WHERE export_id = ?", (export_id,))[0])
                if export_id is not None else 0,
                "rejects": int(self.one("SELECT count(*) FROM rejects WHERE export = ?", (name,))[0]),
                "stale_identities": self.count_stale_identities(name),
                "last_run": {"id": last[0], "started_at": last[1], "finished_at": last[2], "outcome": last[3],
                             "dry_run": bool(last[4])} if last else None,
            })
        return found

    @on_state_thread
    def forget(self, export: str) -> bool:
        existed = bool(self.summary(export))
        with self.transaction():
            export_id = self.export_id(export)
            if export_id is not None:
                self.execute("DELETE FROM members WHERE export_id = ?", (export_id,))
                self.execute("DELETE FROM member_digests WHERE export_id = ?", (export_id,))
                self.execute("DELETE FROM targets WHERE export_id = ?", (export_id,))
                self.execute("DELETE FROM exports WHERE id = ?", (export_id,))
            for table in ("stale_identities", "rejects", "runs", "in_flight"):
                self.execute(f"DELETE FROM {table} WHERE export = ?", (export,))  # noqa: S608 - our own names
        self._export_ids.pop(export, None)
        return existed

    def counts(self) -> dict[str, int]:
        self._settle(None)
        return {table: int(self.one(f"SELECT count(*) FROM {table}")[0]) for table in TABLES}  # noqa: S608

    def read_table(self, table: str) -> Iterator[pa.RecordBatch]:
        # in pages by primary key: each query's result is one driver batch (see sqlite.py)
        self._settle(None)
        schema, keys = TABLES[table], TABLE_KEYS[table]
        select = f"SELECT {', '.join(schema.names)} FROM {table}"  # noqa: S608 - our own names
        page = f" ORDER BY {', '.join(keys)} LIMIT {COPY_BATCH_ROWS}"
        after_key = f" WHERE ({', '.join(keys)}) > ({', '.join('?' * len(keys))})"
        positions = [schema.names.index(key) for key in keys]
        last: tuple | None = None
        while rows := self.rows(select + page if last is None else select + after_key + page, last or ()):
            columns = list(zip(*rows, strict=True))
            if table == "members":
                columns[3] = [column_hashes_in(value) for value in columns[3]]
            yield pa.RecordBatch.from_arrays(
                [pa.array(values, field.type) for values, field in zip(columns, schema, strict=True)], schema=schema)
            last = tuple(rows[-1][position] for position in positions)

    @on_state_thread
    def replace_all(self, tables: dict[str, Iterable[pa.RecordBatch]]) -> None:
        self._settle(None)
        with self.transaction():
            for table in reversed(TABLES):
                self.execute(f"DELETE FROM {table}")  # noqa: S608 - our own names
            for table in TABLES:
                with self.errors():
                    self.insert_batches(table, tables[table])
            self.after_copy()
        self._export_ids.clear()
        self._digest_deleted.clear()
