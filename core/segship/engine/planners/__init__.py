"""The warehouse planner's contract with a SQL dialect: what one warehouse's SQL must say so that an
export's member state and its diff live in that warehouse (``planner: {schema: …}`` on a source).

The planner itself (:mod:`segship.engine.warehouse_members`) is written once, in the SQL every
warehouse shares (SELECT, FULL OUTER JOIN, CASE, GROUP BY, CREATE TABLE, DELETE); a dialect says
the rest, in one module per dialect (``postgres.py``; Snowflake, BigQuery or Databricks SQL follow
the same contract):

- **hash a column**: :meth:`WarehouseDialect.encoding` writes segship's canonical encoding of a
  value (``segship.engine.hashing``: the same text, byte for byte, for the type the value reaches
  segship as) and :meth:`~WarehouseDialect.column_hashes` the first 8 bytes of its MD5, concatenated
  in column order; :meth:`~WarehouseDialect.row_hash` combines them as ``hashing.row_hash_sql``
  does. A type it can't encode exactly is refused (``PlanError``), never hashed differently: a
  differing hash would re-send the member on every switch between planners.
- **compare identities**: :meth:`~WarehouseDialect.identity` normalises a member's identity as the
  destination compares them, so keys sharing one are found in the warehouse (``identity_conflicts``).
- **tell changed rows apart cheaply**: :meth:`~WarehouseDialect.row_digest` is a 64-bit digest of a
  row's mapped values in the warehouse's own hashing (PostgreSQL: ``hash_record_extended``), far
  cheaper than the canonical hashes. A member keeps the digest of the row it was acknowledged with,
  so an unchanged row is known by its digest and only rows whose digest differs are given their
  column hashes (and compared by them). It is never compared across warehouses or planners: equal
  values must give equal digests, and a row whose digest differs while its hashes don't is just
  hashed, not sent.
- **sum members up**: :meth:`~WarehouseDialect.member_mix` is a 64-bit mix of a member's key, row
  digest and target. Summed over the members (the members' digest, kept in ``segship_member_digests``
  and dropped by any write to them) and over the segment's rows, it tells an unchanged segment in
  one pass over its rows, with no join (:attr:`~WarehouseDialect.digest_kind` names the function).
- **stage keys / bulk-load**: :meth:`~WarehouseDialect.load` puts an Arrow table into a session's
  temporary table in bulk (PostgreSQL: COPY, through ADBC ingest); acknowledgements, probes of a
  few keys and members moving in from segship's state all go through it.
- **lock-free upserts**: :meth:`~WarehouseDialect.upsert` writes staged rows over the members
  table by primary key (PostgreSQL: ``INSERT … ON CONFLICT DO UPDATE``; Snowflake, BigQuery and
  Databricks: ``MERGE``), so a batch acknowledged twice (a run killed before it could record the
  first) lands the same.
- **setup and grants**: :meth:`~WarehouseDialect.prepare` makes the schema, its members table
  and the members' digests table when missing, after :meth:`~WarehouseDialect.check_grants` says
  which grant is missing, by name; :meth:`~WarehouseDialect.prepare_session` makes what the
  hashing SQL calls in the session (PostgreSQL: temporary functions), so a plan that writes
  nothing hashes too;
  :meth:`~WarehouseDialect.classifying` sets what the classifying statement alone needs
  (PostgreSQL: a parallel tuple cost that lets its workers filter out the unchanged rows).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from adbc_driver_manager.dbapi import Connection, Cursor

    from segship.destination import IdentityRule

#: The table of acknowledged members in a planner schema, and its columns (as segship's state keeps them).
MEMBERS = "segship_members"
MEMBER_COLUMNS = ("export", "key", "row_hash", "column_hashes", "identity", "target")
#: The members table's digest of the row each member was acknowledged with (NULL: not known; see
#: :meth:`WarehouseDialect.row_digest`), kept only while its column hashes are those of that row.
ROW_DIGEST = "row_digest"
#: The table of each export's members' digest (its members' count and the sum of their
#: :meth:`WarehouseDialect.member_mix`), deleted by every write to its members, in its transaction.
MEMBER_DIGESTS = "segship_member_digests"


@dataclass(frozen=True)
class ColumnType:
    """A column of a segment's result, as the warehouse names its type (``name``: the base type;
    ``element``: an array's item type; ``modifier``: the type's modifier, -1 for none)."""

    column: str
    name: str
    modifier: int = -1
    element: ColumnType | None = None


class WarehouseDialect(ABC):
    """One warehouse's SQL for the planner (see the module's docstring)."""

    #: The source ``type`` whose warehouse speaks this dialect.
    source_type: str
    #: The hash function of :meth:`member_mix`, kept with each members' digest.
    digest_kind: str

    @abstractmethod
    def connect(self, options: dict[str, Any], *, autocommit: bool) -> Connection:
        """A DB-API (ADBC) connection to the source's warehouse."""

    @abstractmethod
    def check_grants(self, cursor: Cursor, schema: str) -> None:
        """Raise ``PlanError`` naming the grant the connection's role lacks to keep member state in ``schema``."""

    @abstractmethod
    def missing_grant(self, message: str) -> str | None:
        """The grant a warehouse error says is missing (a table the segment reads), to name it; else None."""

    @abstractmethod
    def prepare(self, cursor: Cursor, schema: str) -> None:
        """Make ``schema``, its members table and the dialect's functions, where missing (idempotent)."""

    @abstractmethod
    def classifying(self, cursor: Cursor) -> AbstractContextManager[None]:
        """Settings of the session for the classifying statement only (its estimates are the
        warehouse's to correct: most rows it joins are filtered out as unchanged)."""

    @abstractmethod
    def prepare_session(self, cursor: Cursor) -> None:
        """Make what the dialect's hashing SQL calls in the session (temporary functions), where missing."""

    @abstractmethod
    def table_exists(self, cursor: Cursor, schema: str, table: str) -> bool: ...

    @abstractmethod
    def column_exists(self, cursor: Cursor, schema: str, table: str, column: str) -> bool:
        """Whether the table has the column (a members table made by an older segship may lack one)."""

    @abstractmethod
    def temporary(self, name: str) -> str:
        """SQL naming the session's temporary table ``name``."""

    @abstractmethod
    def column_types(self, cursor: Cursor, sql: str) -> list[ColumnType]:
        """The columns ``sql`` returns, with their warehouse types, without running it."""

    @abstractmethod
    def encoding(self, value: str, type_: ColumnType, depth: int = 0) -> str:
        """SQL of the canonical encoding of ``value``, of type ``type_``; never NULL."""

    @abstractmethod
    def identity(self, value: str, rule: IdentityRule) -> str:
        """SQL of the normalised identity of ``value`` under ``rule`` (``snapshot.identity_sql``'s meaning):
        NULL where the mapping would refuse it."""

    @abstractmethod
    def column_hashes(self, encodings: Sequence[str]) -> str:
        """SQL of the column hashes (binary: 8 bytes a column, in order) of the given encodings."""

    @abstractmethod
    def row_digest(self, values: Sequence[tuple[str, ColumnType]]) -> str:
        """SQL of a 64-bit digest of the row's ``values`` (SQL, of the given types), in the warehouse's
        own hashing: equal values give equal digests, whatever their text; never NULL."""

    @abstractmethod
    def member_mix(self, key: str, digest: str, target: str) -> str:
        """SQL of a signed 64-bit mix of a member's ``key`` (text), row ``digest`` (64-bit) and ``target``
        (an integer) as one value: two members swapping digests or targets change a sum of mixes."""

    @abstractmethod
    def row_hash(self, column_hashes: str) -> str:
        """SQL of the row hash (a signed 64-bit integer) of the binary ``column_hashes``."""

    @abstractmethod
    def load(self, cursor: Cursor, table: str, rows: pa.Table | pa.RecordBatchReader) -> None:
        """Bulk-load ``rows`` into the session's temporary table ``table`` (made, or emptied, first)."""

    @abstractmethod
    def upsert(self, table: str, staged: str, columns: Sequence[str], key: Sequence[str], select: str) -> str:
        """SQL writing ``select`` (rows of ``columns``, from ``staged``) over ``table`` by primary key ``key``."""

    @abstractmethod
    def temporary_table(self, name: str, select: str) -> str:
        """SQL creating the session's temporary table ``name`` as ``select`` (dropped with the session)."""

    @abstractmethod
    def gather_statistics(self, cursor: Cursor, name: str) -> None:
        """Let the warehouse's planner know the rows of the session's temporary table ``name`` (PostgreSQL:
        ``ANALYZE``, which autovacuum never does for a temporary table); nothing where it knows them anyway."""


def dialect_for(source_type: str) -> WarehouseDialect | None:
    """The dialect of a source type that can hold a planner; None for one that can't."""
    if source_type == "postgres":
        from segship.engine.planners.postgres import PostgresDialect

        return PostgresDialect()
    return None
