"""How segship uses DuckDB: connections sized for a 2-core machine and locked down, and quoting of names.

A run's CPU goes to mapping and HTTP and, on a small machine, to the sandbox or other
work beside it; DuckDB gets one thread (while a plan hashes the segments and diffs them,
when nothing else runs, every core: ``available_cores``) and a memory cap. Past the cap it
spills to a temporary folder instead of growing (a 1M-profile export plans and streams
within it), which keeps a run's peak memory flat whatever the segment's size.

A segment's SQL is written by whoever can commit to the config repository, and runs where
secrets may be at hand (an admin's environment, ``${file:…}`` keys). So a connection reads
nothing but the files its sources name: they are allowed (:func:`allow_reading`), then the
connection is locked (:func:`lock`): no other file, no extension installed or loaded on
demand, no setting changed. A segment's SQL runs only once its connection is locked.
"""

from __future__ import annotations

import os
import stat
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from segship.errors import SegshipError

if TYPE_CHECKING:
    import duckdb

#: Where DuckDB spills: each connection in a folder of its own below, which DuckDB creates when it
#: first spills and removes when closed (a snapshot's, in its scratch folder: ``engine/scratch.py``).
#: A locked DuckDB may read its spill folder: its own only, not another run's spilled rows. One per
#: user, the user's own (0700: spilled rows are personal data; see :func:`spill_root`).
SPILL_DIRECTORY = Path(tempfile.gettempdir()) / f"segship-duckdb-{os.getuid()}"
#: Settings a locked connection still lets segship change: the engine gives DuckDB every core while
#: it plans and one while rows are sent, and less memory to send rows it staged. They reach no data.
CHANGEABLE_SETTINGS = ["threads", "memory_limit"]


class SpillFolderError(SegshipError):
    """The spill folder is not the user's own."""


def spill_root() -> Path:
    """``SPILL_DIRECTORY``, made if missing; refused unless it is the user's own and no one else's to
    enter (someone else's folder in a shared temporary folder could take the personal data spilled
    there, or replace what is in it)."""
    SPILL_DIRECTORY.mkdir(mode=0o700, exist_ok=True)
    found = os.lstat(SPILL_DIRECTORY)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise SpillFolderError(
            f"the scratch folder {SPILL_DIRECTORY} is not this user's own folder, closed to others (owner uid "
            f"{found.st_uid}, mode {stat.S_IMODE(found.st_mode):o}): segship spills personal data there; remove it, "
            "or set TMPDIR to a folder of your own")
    return SPILL_DIRECTORY


def connect(memory_limit_mb: int, spill_directory: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one thread and at most ``memory_limit_mb`` of its own memory, which
    installs and loads no extension on demand (what a source needs is built in or loaded before
    :func:`lock`) and knows none of the machine's DuckDB secrets. It spills to ``spill_directory``
    (whose parent must exist), or a new folder below ``SPILL_DIRECTORY``. Not locked yet: see :func:`lock`."""
    import duckdb  # imported by the commands that use it, so the CLI starts fast

    if spill_directory is None:  # DuckDB creates the spill folder, not its parent
        spill_directory = spill_root() / uuid.uuid4().hex
    return duckdb.connect(":memory:", config={
        "threads": 1, "memory_limit": f"{memory_limit_mb}MB", "temp_directory": str(spill_directory),
        "autoinstall_known_extensions": False, "autoload_known_extensions": False,
        "allow_persistent_secrets": False})


def allow_reading(connection: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """Let ``connection`` read these files once it is locked (before :func:`lock`): exactly these,
    not their folders, where other files (a ``${file:…}`` secret) may be."""
    allowed = connection.execute("SELECT current_setting('allowed_paths')").fetchone()[0]
    connection.execute("SET allowed_paths = ?", [[*allowed, *paths]])


def lock(connection: duckdb.DuckDBPyConnection) -> None:
    """From now on ``connection``'s DuckDB opens no file but those allowed (:func:`allow_reading`; its
    spill files are its own): it attaches no other database, writes no file, installs and loads no
    extension. And it refuses to change a setting (but ``CHANGEABLE_SETTINGS``), so a query can't
    give itself back what this takes away."""
    connection.execute("SET enable_external_access = false")
    connection.execute("SET allowed_configs = ?", [CHANGEABLE_SETTINGS])
    connection.execute("SET lock_configuration = true")  # last: it would refuse the ones above


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
