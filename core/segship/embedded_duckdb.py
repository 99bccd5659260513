"""How segship uses DuckDB: connections sized for a 2-core machine, and quoting of names.

A run's CPU goes to mapping and HTTP and, on a small machine, to the sandbox or other
work beside it; DuckDB gets one thread (while a plan hashes the segments and diffs them,
when nothing else runs, every core: ``available_cores``) and a memory cap. Past the cap it
spills to a temporary folder instead of growing (a 1M-profile export plans and streams
within it), which keeps a run's peak memory flat whatever the segment's size.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

SPILL_DIRECTORY = Path(tempfile.gettempdir()) / "segship-duckdb"


def connect(memory_limit_mb: int) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one thread and at most ``memory_limit_mb`` of its own memory."""
    import duckdb  # imported by the commands that use it, so the CLI starts fast

    return duckdb.connect(":memory:", config={"threads": 1, "memory_limit": f"{memory_limit_mb}MB",
                                              "temp_directory": str(SPILL_DIRECTORY)})


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
