"""A snapshot's private scratch folder: where its DuckDB spills, warehouse segments staged there included.

What lands there is personal data (each member's key and mapped columns), so the folder is
the user's own (0700, as ``tempfile.mkdtemp`` makes it) and lives as long as the snapshot:
removed when it closes, which a run does however it ends (done, failed, Ctrl-C). A process
killed with ``kill -9`` can't remove it; its folder is locked (``flock`` on the folder) while
the process lives, so the next snapshot made on the machine removes every unlocked one left.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

from segship.embedded_duckdb import spill_root

#: How a scratch folder's name starts, below ``SPILL_DIRECTORY`` (``spill_root``, where other DuckDB spill
#: folders are).
PREFIX = "snapshot-"
#: A folder younger than this is never swept: its process may be between making it and locking it.
GRACE_SECONDS = 60


class ScratchFolder:
    """A new 0700 folder below ``root``, locked until :meth:`remove`; unlocked leftovers swept first."""

    def __init__(self, root: Path | None = None) -> None:
        root = root if root is not None else spill_root()
        root.mkdir(mode=0o700, exist_ok=True)
        sweep(root)
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
        self._lock: int | None = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new folder: no one else holds it

    def remove(self) -> None:
        """Remove the folder and what is in it (once its DuckDB is closed); again is a no-op."""
        if self._lock is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = None


def sweep(root: Path) -> None:
    """Remove the scratch folders below ``root`` that no living process holds (left by ``kill -9``)."""
    for folder in root.glob(PREFIX + "*"):
        try:
            handle = os.open(folder, os.O_RDONLY)
        except OSError:  # removed meanwhile, or not ours to read
            continue
        try:
            if time.time() - os.fstat(handle).st_mtime < GRACE_SECONDS:
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a living snapshot's
                continue
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(handle)
