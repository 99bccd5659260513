"""The Source contract: where a segment's rows come from.

A source is a class registered through ``segship_register_sources``; the built-in
``duckdb`` source is registered through the same hook. ``read`` streams a segment's
rows as Arrow record batches, so memory does not grow with the segment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pyarrow as pa


class SourceError(Exception):
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

    def check_connection(self) -> str:
        """Open the source and run a trivial query (`segship sources test`); say what answered.

        Raises SourceError. Sources that reach a server override it to name the server and
        driver and their versions.
        """
        self.read("SELECT 1").read_all()
        return "answered SELECT 1"

    def close(self) -> None:
        """Release connections; called once when the run is done."""
