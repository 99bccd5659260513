"""What every source that runs a segment's SQL in a database through an ADBC driver shares.

The ``postgres`` and ``adbc`` sources differ only in how they connect. Here: the
segment's query runs in the database (its dialect), and ``cursor.fetch_record_batch()``
streams the result as Arrow record batches straight into the engine, so memory does not
grow with the segment. The connection stays open while the reader is consumed and is
closed by ``close()``. Each query runs in its own transaction (autocommit); the engine
runs a segment's query once a run and stages its rows (see docs/sources.md).

Every error opening the source or starting a query becomes a one-line ``SourceError``
naming the source, with the database's own message passed through redaction (a driver's
message may quote the connection URI). An error while rows stream reaches the engine as
the driver's message, which the engine places and redacts.
"""

from __future__ import annotations

import importlib.metadata
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from segship.log import redact_text
from segship.secrets import redactor
from segship.source import Source, SourceContext, SourceError

if TYPE_CHECKING:
    import pyarrow as pa
    from adbc_driver_manager.dbapi import Connection, Cursor

log = structlog.get_logger("segship.sources")

#: The SQLSTATE class of a statement the database refuses as written (syntax, an unknown or ambiguous column).
SQL_STATEMENT_REFUSED = "42"
#: The largest precision Arrow's decimal128 holds; a wider or unconstrained NUMERIC becomes a float.
MAX_DECIMAL_PRECISION = 38
#: PostgreSQL's typmod of NUMERIC(p, s) is ((p << 16) | s) + 4 (VARHDRSZ); -1 when unconstrained.
NUMERIC_TYPMOD = b"POSTGRESQL:typmod"


def register_url_password(uri: str) -> None:
    """Redact a URI's password on its own too: a driver's message may quote it without the rest."""
    try:
        password = urlsplit(uri).password
    except ValueError:
        return
    if password:
        redactor.add(password)


def _numeric_type(field: pa.Field) -> pa.DataType | None:
    """The Arrow type a NUMERIC column (which ADBC streams as text) becomes, or None for other columns.

    NUMERIC(p, s) with p <= 38 stays exact (a decimal); an unconstrained or wider NUMERIC
    becomes a float64, which is what a destination's JSON number holds anyway.
    """
    import pyarrow as pa

    storage = getattr(field.type, "storage_type", None)
    if getattr(field.type, "type_name", None) != "numeric" or storage is None or not pa.types.is_string(storage):
        return None
    try:
        typmod = int((field.metadata or {}).get(NUMERIC_TYPMOD, b"-1")) - 4
    except ValueError:
        typmod = -1
    precision, scale = typmod >> 16, typmod & 0xFFFF
    if typmod < 0 or not 0 < precision <= MAX_DECIMAL_PRECISION or scale > precision:
        return pa.float64()
    return pa.decimal128(precision, scale)


class AdbcDatabaseSource(Source):
    """A source whose segment SQL runs in a database reached through an ADBC driver."""

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        self._connection: Connection | None = None
        self._cursor: Cursor | None = None

    @abstractmethod
    def _connect(self) -> Connection:
        """Open a DB-API connection (autocommit); raise SourceError for a driver that isn't there."""

    def _server_version(self, cursor: Cursor) -> str | None:
        """The server's own version string for `segship sources test`, if the database has a query for it."""
        return None

    def _driver_package(self) -> str | None:
        """The driver's Python package, whose version is shown when the driver doesn't report its own."""
        return None

    # -- the contract ------------------------------------------------------------------------------------------

    def read(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        """Run ``sql`` in the database and stream its rows (the driver chooses the batch size)."""
        try:
            return self._started(sql)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is the database's own message
            raise self._error(exc) from None

    def read_columns(self, sql: str, columns: Sequence[str]) -> pa.RecordBatchReader:
        """Stream only ``columns`` of the query's rows where the database's dialect is known
        (:meth:`_projection_sql`). When the database refuses that statement as written (SQLSTATE
        class 42: a column the query lacks, a query that can't be a subquery), the query runs as
        written: its own error then, or its columns for the engine to name the one missing. Any
        other failure (a connection refused, a timeout) is the query's, raised once."""
        projection = self._projection_sql(sql, columns)
        if projection is None:
            return self.read(sql)
        try:
            return self._started(projection)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database's own message
            if not str(getattr(exc, "sqlstate", None) or "").startswith(SQL_STATEMENT_REFUSED):
                raise self._error(exc) from None
            log.info("source.columns_not_selected", source=self.context.name, error=str(self._error(exc)))
        return self.read(sql)

    def _projection_sql(self, sql: str, columns: Sequence[str]) -> str | None:
        """SQL of ``columns`` of the query's result, in the database's dialect; None where it is not
        known (identifiers are quoted differently across databases: in some, double quotes make a
        string, which would read as a value)."""
        return None

    def _started(self, sql: str) -> pa.RecordBatchReader:
        """Run ``sql`` on the source's connection and start streaming its rows; raises the driver's error."""
        connection = self._connection_or_open()
        self._close_cursor()  # the previous segment's stream is consumed: one query at a time per connection
        self._cursor = connection.cursor()
        self._cursor.execute(sql)
        return self._faithful(self._cursor.fetch_record_batch())

    def session(self) -> Connection:
        """The connection the source's reads run in, opened if need be: what a warehouse planner
        makes in it (temporary tables) its reads see."""
        return self._connection_or_open()

    def check_connection(self) -> str:
        """Connect, run a trivial query, and say which server and driver answered."""
        connection = self._connection_or_open()
        try:
            info = connection.adbc_get_info()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchall()
                server = self._server_version(cursor)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        vendor = " ".join(str(info[key]) for key in ("vendor_name", "vendor_version") if info.get(key))
        driver_version = info.get("driver_version")
        if driver_version in (None, "", "unknown") and self._driver_package():
            try:
                driver_version = importlib.metadata.version(self._driver_package().replace("_", "-"))
            except importlib.metadata.PackageNotFoundError:
                pass
        driver = " ".join(str(part) for part in (info.get("driver_name"), driver_version) if part)
        return f"{server or vendor or 'connected'}; driver: {driver or '?'}"

    def close(self) -> None:
        self._close_cursor()
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001, S110 - a connection the server already dropped is closed enough
                pass
            self._connection = None

    # -- shared machinery ----------------------------------------------------------------------------------------

    def _error(self, exc: BaseException | str) -> SourceError:
        """One line naming the source, the database's message redacted (it may quote the URI)."""
        message = str(exc).strip() or type(exc).__name__
        message = " ".join(line.strip() for line in message.splitlines() if line.strip())
        return SourceError(redact_text(f"source {self.context.name!r}: {message}"))

    def _connection_or_open(self) -> Connection:
        if self._connection is None:
            try:
                self._connection = self._connect()
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - refused, unknown host, wrong password, timeout …
                raise self._error(exc) from None
        return self._connection

    def _close_cursor(self) -> None:
        if self._cursor is not None:
            try:
                self._cursor.close()
            except Exception:  # noqa: BLE001, S110 - its stream may have failed already; nothing to release
                pass
            self._cursor = None

    def _faithful(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        """The reader with NUMERIC columns as numbers (cast lazily, batch by batch, in Arrow's C++).

        No Python runs between the driver's stream and DuckDB: an error mid-stream (a dropped
        connection) reaches the engine as the driver's own message, not as a Python traceback.
        """
        import pyarrow as pa

        targets = [_numeric_type(field) for field in reader.schema]
        if not any(targets):
            return reader
        return reader.cast(pa.schema([field if target is None else pa.field(field.name, target, field.nullable)
                                      for field, target in zip(reader.schema, targets, strict=True)]))
