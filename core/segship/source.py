"""The Source contract: where a segment's rows come from.

A source is a class registered through ``segship_register_sources``; the built-in
``duckdb`` source is registered through the same hook. ``read`` streams a segment's
rows as Arrow record batches, so memory does not grow with the segment. A source whose
SQL is DuckDB's own may instead ``attach`` itself to the engine's DuckDB, where the
segments' SQL then runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from segship.errors import SegshipError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


class SourceError(SegshipError):
    """A source can't be opened or a segment's query fails; the message says which and why."""


@dataclass(frozen=True)
class SourceContext:
    """A configured source: its name (the table name segments query), options and folder."""

    name: str
    options: Mapping[str, Any]
    base_dir: Path


class Source(ABC):
    #: The source ``type`` that selects this class.
    name: ClassVar[str]
    #: JSON Schema of the source's entry, ``type`` excluded.
    options_schema: ClassVar[dict[str, Any]]

    def __init__(self, context: SourceContext) -> None:
        self.context = context

    @abstractmethod
    def read(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        """Run a segment's query and stream its rows."""

    def read_columns(self, sql: str, columns: Sequence[str]) -> pa.RecordBatchReader:
        """Run a segment's query and stream its rows, with at least ``columns`` (by name) of each.

        The engine names the columns it uses (the key and the mapped ones); a source whose
        database can select them from the query's result leaves the others in the database.
        When the query has no such column, the stream has the query's own columns, for the
        engine to name what is missing. The default streams every column (:meth:`read`).
        """
        return self.read(sql)

    def attach(self, connection: duckdb.DuckDBPyConnection, catalog: str) -> bool:
        """Make this source's tables those of a new catalog ``catalog`` of the engine's DuckDB, if it can.

        A source that does (True) has its segments' SQL run in ``connection``, with
        ``catalog`` as the default: DuckDB then reads only the columns the engine uses, on
        every core while it plans, with no Arrow stream in between. Only a source whose segment
        SQL is DuckDB's own, in the same DuckDB, can; the default (False) streams the rows from
        :meth:`read`. Once every source is attached, the engine locks the connection
        (:func:`segship.embedded_duckdb.lock`): the files the tables read must be allowed
        here (:func:`segship.embedded_duckdb.allow_reading`), any extension loaded here.
        Raises SourceError.
        """
        return False

    def check_connection(self) -> str:
        """Open the source and run a trivial query (`segship sources test`); say what answered.

        Raises SourceError. Sources that reach a server override it to name the server and
        driver and their versions.
        """
        self.read("SELECT 1").read_all()
        return "answered SELECT 1"

    def close(self) -> None:
        """Release connections; called once when the run is done."""
