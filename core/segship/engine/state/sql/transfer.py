"""``segship state copy``: every table (``schema.TABLES``) read out of one store and into another."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from segship.engine.state import TransferStore
from segship.engine.state.sql.connection import SqlConnection, on_state_thread
from segship.engine.state.sql.members import column_hashes_in
from segship.engine.state.sql.schema import TABLE_KEYS, TABLES

COPY_BATCH_ROWS = 50_000


class SqlTransfer(SqlConnection, TransferStore):
    """Reads members once settled (``_settle``, members.py); a copy replaces every concern's cache
    (``StateCache.replaced``)."""

    # -- what a backend provides ------------------------------------------------------------------

    def insert_batches(self, table: str, batches: Iterable[pa.RecordBatch]) -> None:
        columns = TABLES[table].names
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for batch in batches:
            with self.errors():
                self.cursor.executemany(self.sql(insert), batch)

    def after_copy(self) -> None:
        """Hook: what a backend does once a copy is in (PostgreSQL moves its id sequences on)."""

    # -- the copy -----------------------------------------------------------------------------------

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
        for cache in self.caches:
            cache.replaced()
