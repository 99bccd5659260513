"""The built-in ``duckdb`` source: files (CSV, Parquet, JSON/JSONL, globs) or a .duckdb database.

A file source is a view named after the source, so a segment queries ``FROM crm``; a
database is attached read-only and its own tables are queried. The engine attaches the
source to its own DuckDB (``attach``) and runs the segments there; ``read`` opens a
connection of the source's own. Either connection may then read the source's files and
nothing else (:func:`segship.embedded_duckdb.lock`). It is registered through
``segship_register_sources`` like any third-party source.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segship import embedded_duckdb, hookimpl
from segship.source import Source, SourceContext, SourceError
from segship.sql_text import literal, quote

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

#: DuckDB's own memory for reading a source (it streams; beyond this it spills).
SOURCE_MEMORY_MB = 96
#: The catalog of the source's own connection (``read``) that a segment's SQL runs in.
SOURCE_CATALOG = "source_db"
FILE_READERS = {
    ".csv": "read_csv_auto",
    ".tsv": "read_csv_auto",
    ".parquet": "read_parquet",
    ".json": "read_json_auto",
    ".jsonl": "read_json_auto",
    ".ndjson": "read_json_auto",
}
#: The extension a reader comes with: loaded explicitly, since a locked connection loads none on demand.
READER_EXTENSIONS = {"read_parquet": "parquet", "read_json_auto": "json"}


class DuckDBSource(Source):
    name = "duckdb"
    options_schema: dict[str, Any] = {
        "type": "object",
        "description": "Files (CSV, Parquet, JSON/JSONL; globs allowed) or a .duckdb database file.",
        "properties": {
            "path": {"type": "string", "minLength": 1,
                     "description": "File, glob or .duckdb database; relative to the config file."},
            "format": {"enum": ["csv", "parquet", "json"],
                       "description": "Override the format guessed from the file extension."},
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        self._connection: duckdb.DuckDBPyConnection | None = None

    @property
    def path(self) -> Path:
        path = Path(str(self.context.options["path"])).expanduser()
        return path if path.is_absolute() else self.context.base_dir / path

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            connection = embedded_duckdb.connect(SOURCE_MEMORY_MB)
            try:
                self.attach(connection, SOURCE_CATALOG)
                connection.execute(f"USE {SOURCE_CATALOG}")
                embedded_duckdb.lock(connection)  # before a segment's SQL: it reads these files only
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def attach(self, connection: duckdb.DuckDBPyConnection, catalog: str) -> bool:
        """The database attached read-only as ``catalog``, or the files as a view of that name in it.

        The connection may then read those files (:func:`segship.embedded_duckdb.allow_reading`):
        a glob's are the files it matches now, named one by one in the view, since a locked
        DuckDB can't list a folder (which may hold a ``${file:…}`` secret beside them). An
        attached database is open already: it needs no file allowed.
        """
        import duckdb  # imported when a run reads, so every CLI start doesn't pay for it

        path = self.path
        try:
            if path.suffix == ".duckdb" or path.suffix == ".db":
                if not path.exists():
                    raise SourceError(f"source {self.context.name!r}: database {path} does not exist")
                connection.execute(f"ATTACH {literal(str(path))} AS {quote(catalog)} (READ_ONLY)")
                return True
            files = [row[0] for row in connection.execute("SELECT file FROM glob(?)", [str(path)]).fetchall()]
            if not files:
                raise SourceError(f"source {self.context.name!r}: no file matches {path}")
            fmt = self.context.options.get("format")
            reader = {"csv": "read_csv_auto", "parquet": "read_parquet", "json": "read_json_auto"}.get(
                fmt or "", FILE_READERS.get(path.suffix.lower()))
            if reader is None:
                raise SourceError(f"source {self.context.name!r}: can't tell the format of {path.name}; "
                                  "set format: csv, parquet or json")
            if reader in READER_EXTENSIONS:
                connection.execute(f"LOAD {READER_EXTENSIONS[reader]}")
            connection.execute(f"ATTACH ':memory:' AS {quote(catalog)}")
            view = f"{quote(catalog)}.main.{quote(self.context.name)}"
            listed = ", ".join(map(literal, files))
            try:
                connection.execute(f"CREATE VIEW {view} AS SELECT * FROM {reader}([{listed}])")
            except duckdb.Error:
                connection.execute(f"DETACH {quote(catalog)}")  # attached whole or not at all
                raise
            embedded_duckdb.allow_reading(connection, files)
        except duckdb.Error as exc:
            raise SourceError(f"source {self.context.name!r}: {exc}") from None
        return True

    def read(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        import duckdb

        try:
            return self._connect().sql(sql).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise SourceError(f"source {self.context.name!r}: {exc}") from None

    def check_connection(self) -> str:
        import duckdb

        super().check_connection()
        return f"DuckDB {duckdb.__version__}, {self.path}"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@hookimpl
def segship_register_sources(register) -> None:
    register(DuckDBSource)
