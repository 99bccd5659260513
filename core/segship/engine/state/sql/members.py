"""Members: what the destination acknowledged per export and key, their digest, the settings and hash
version their hashes were made with (and converting hashes of an older version), and the commits
that write them.

A commit is one transaction that also settles rejects (``_settle_rejects``, rejects.py) and dropped
fields (``_settle_dropped_fields`` / ``_forget_dropped_fields``, dropped_fields.py), leaves
stale identities (``_leave_identities`` / ``_leave_other_targets`` / ``_remove_stale_identities``,
targets.py), clears the group's in-flight record (``_landed``, in_flight.py) and writes its changes
to the sync log (``_log``, sync_log.py).

A backend may leave acknowledged members elsewhere first (SQLite journals them: ``_write_members``)
and fold them in before anything reads ``members`` (``_settle``); every read of members here, and
in the concerns that read them, finds the export through ``_settled_export_id``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from segship.destination import Member
from segship.engine.hashing import HASH_VERSION
from segship.engine.state import (
    ACKNOWLEDGED_COLUMNS,
    Acknowledged,
    ColumnHashes,
    DroppedFields,
    LoggedChanges,
    MembersDigest,
    MembersLocation,
    MemberStore,
    Rejected,
    chunks,
)
from segship.engine.state.sql.caches import CommittedIds
from segship.engine.state.sql.connection import on_state_thread
from segship.engine.state.sql.exports import SqlExports
from segship.engine.state.sql.schema import TABLES

#: What a later acknowledgement of a member replaces (every column after the primary key).
MEMBER_UPDATES = ", ".join(f"{column} = excluded.{column}" for column in TABLES["members"].names[2:])
#: Acknowledged members into ``members``: export id and target (integers) written in, the rest bound.
UPSERT_MEMBERS = ("INSERT INTO members VALUES ({export_id}, ?, ?, ?, ?, {target}) ON CONFLICT (export_id, key) "
                  f"DO UPDATE SET {MEMBER_UPDATES}")
ACKNOWLEDGED = pa.schema([("key", pa.string()), ("row_hash", pa.int64()), ("target", pa.int32())])
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
    for all: written into the statement, not bound as a column of one value per member), computed
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


class DeletedDigests(CommittedIds):
    """Exports (by id) whose members' digest this run's writes deleted: the run holds the export's
    lock, so no one records another until it does (``record_members_digest``), and later writes in
    the run need not delete it again.

    Those the open transaction deletes count once it commits; forgotten when a run starts, and
    when state is replaced by a copy.
    """


class SqlMembers(SqlExports, MemberStore):
    def __init__(self) -> None:
        super().__init__()
        self.deleted_digests = self.cached(DeletedDigests())

    # -- the digest ------------------------------------------------------------------------------------

    def members_digest(self, export: str) -> MembersDigest | None:
        row = self.one("SELECT d.kind, d.members, d.digest, d.buckets FROM member_digests d "
                       "JOIN exports e ON e.id = d.export_id WHERE e.name = ?", (export,))
        return MembersDigest(row[0], int(row[1]), int(row[2]), None if row[3] is None else bytes(row[3])) \
            if row else None

    @on_state_thread
    def record_members_digest(self, export: str, digest: MembersDigest) -> None:
        with self.transaction():
            export_id = self.export_id(export, create=True)
            self.execute("DELETE FROM member_digests WHERE export_id = ?", (export_id,))
            self.execute("INSERT INTO member_digests VALUES (?, ?, ?, ?, ?)",
                         (export_id, digest.kind, digest.members, digest.digest, digest.buckets))
        self.deleted_digests.done.discard(export_id)

    def _members_written(self, export_id: int) -> None:
        """Inside a transaction that writes an export's members: its digest no longer holds.

        Deleted by the run's first such write only (:class:`DeletedDigests`).
        """
        if export_id not in self.deleted_digests.done:
            self.execute("DELETE FROM member_digests WHERE export_id = ?", (export_id,))
            self.deleted_digests.pending.add(export_id)

    # -- settings and hash versions ------------------------------------------------------------------

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

    # -- what was acknowledged -----------------------------------------------------------------------

    def acknowledged(self, export: str) -> pa.RecordBatchReader:
        """One query, streamed in the driver's batches (SQLite ``BATCH_ROWS``, PostgreSQL
        ``STREAM_BATCH_BYTES``) on a cursor of its own, each batch fetched on the state thread; no
        other statement runs while it is read (one query streamed costs less than pages by key, a
        query each)."""
        export_id = self._settled_export_id(export)

        def batches() -> Iterator[pa.RecordBatch]:
            if export_id is None:
                return
            # no parameter: PostgreSQL's driver streams a query without any (COPY) but reads a
            # parameterized one whole into memory
            with closing(self.stream("SELECT key, row_hash, target FROM members WHERE export_id = "
                                     f"{int(export_id)} ORDER BY key")) as driver_batches:
                for batch in driver_batches:
                    if batch.num_rows:  # an empty result may come with guessed types
                        yield pa.RecordBatch.from_arrays(
                            [column.cast(field.type) for column, field in zip(batch.columns, ACKNOWLEDGED,
                                                                              strict=True)], schema=ACKNOWLEDGED)

        return pa.RecordBatchReader.from_batches(ACKNOWLEDGED, batches())

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

    # -- committing what the destination answered -------------------------------------------------------

    @on_state_thread
    def commit_upserts(self, export: str, acknowledged: Acknowledged,
                       stale: Iterable[tuple[str, str]], rejected: Iterable[Rejected | tuple[str, str]], *,
                       target: int = 1, moving: bool = False, in_flight: int | None = None,
                       dropped: DroppedFields | None = None, write_members: bool = True,
                       log: LoggedChanges | None = None) -> None:
        acknowledged = acknowledged_batch(acknowledged)
        stale, rejected = list(stale), list(rejected)
        keys = acknowledged.column(0)
        if moving:
            self._settled_export_id(export)  # the members moving, as they are in their old target
        with self.transaction():
            export_id = self.export_id(export, create=True)
            if log is not None:
                self._log(export_id, log, target, moving)
            if moving:
                self._leave_other_targets(export, export_id, target, keys)
            if len(acknowledged) and write_members:
                self._write_members(export_id, target, member_columns(acknowledged))
                self._members_written(export_id)
            self._leave_identities([(export, key, identity, target) for key, identity in stale])
            self._settle_rejects(export, keys, rejected)
            if dropped is not None:
                self._settle_dropped_fields(export, dropped)
            if in_flight is not None:
                self._landed(export, in_flight)

    @on_state_thread
    def commit_removals(self, export: str, removed: Iterable[Member], rejected: Iterable[tuple[str, str]],
                        stale: bool, target: int = 1, log: LoggedChanges | None = None) -> None:
        removed, rejected = list(removed), list(rejected)
        self._settled_export_id(export)
        with self.transaction():
            if log is not None:
                self._log(self.export_id(export, create=True), log, target)
            if stale:
                self._remove_stale_identities(export, target, removed)
            else:
                export_id = self.export_id(export)
                if removed and export_id is not None:
                    self.many("DELETE FROM members WHERE export_id = ? AND key = ?",
                              [(export_id, member.key) for member in removed])
                    self._members_written(export_id)
                self._forget_dropped_fields(export, [member.key for member in removed])
            self._settle_rejects(export, pa.array([m.key for m in removed] if not stale else [], pa.string()),
                                 rejected)

    @on_state_thread
    def add_unknown_members(self, export: str, members: Sequence[tuple[str, str]], target: int) -> int:
        self._settled_export_id(export)
        with self.transaction():
            export_id = self.export_id(export, create=True)
            before = self._member_count(export_id)
            self._add_unknown_members(export_id, [(key, identity, target) for key, identity in members])
            return self._member_count(export_id) - before

    # -- members a warehouse planner keeps ---------------------------------------------------------------

    def members_location(self, export: str) -> MembersLocation | None:
        row = self.one("SELECT source, schema_name FROM member_locations WHERE export = ?", (export,))
        return MembersLocation(row[0], row[1]) if row else None

    @on_state_thread
    def move_members_out(self, export: str, location: MembersLocation) -> None:
        export_id = self._settled_export_id(export)
        with self.transaction():
            export_id = self.export_id(export, create=True)
            self.execute("DELETE FROM member_locations WHERE export = ?", (export,))
            self.execute("INSERT INTO member_locations VALUES (?, ?, ?)", (export, location.source, location.schema))
            self.execute("DELETE FROM members WHERE export_id = ?", (export_id,))
            self._members_written(export_id)

    @on_state_thread
    def take_members_back(self, export: str, members: Iterable[pa.RecordBatch]) -> None:
        self._settled_export_id(export)
        with self.transaction():
            export_id = self.export_id(export, create=True)
            self.execute("DELETE FROM members WHERE export_id = ?", (export_id,))
            for batch in members:
                targets = batch.column("target")
                for target in pc.unique(targets).to_pylist():
                    rows = batch.filter(pc.equal(targets, target)).select(list(ACKNOWLEDGED_COLUMNS))
                    if len(rows):
                        self._write_members(export_id, int(target), member_columns(rows))
            self.execute("DELETE FROM member_locations WHERE export = ?", (export,))
            self._members_written(export_id)

    def _member_count(self, export_id: int) -> int:
        return int(self.one("SELECT count(*) FROM members WHERE export_id = ?", (export_id,))[0])

    # -- where acknowledged members are written --------------------------------------------------------

    def _write_members(self, export_id: int, target: int, columns: list[pa.Array]) -> None:
        """Write an export's acknowledged members (the columns of ``members`` but export id and target:
        :func:`member_columns`), inside the commit's transaction."""
        self.many_columns(UPSERT_MEMBERS.format(export_id=int(export_id), target=int(target)), columns)

    def _add_unknown_members(self, export_id: int, members: Iterable[tuple[str, str, int]]) -> None:
        """(key, identity, target): members of an export the destination may hold, of unknown row hash
        (0), unless they are members already; inside the transaction open."""
        rows = [(export_id, key, None if identity == key else identity, target) for key, identity, target in members]
        self.many("INSERT INTO members VALUES (?, ?, 0, NULL, ?, ?) ON CONFLICT DO NOTHING", rows,
                  (pa.int64(), pa.string(), pa.string(), pa.int32()))
        self._members_written(export_id)

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
