"""A snapshot's scratch folder: private, removed when done, and a killed process's swept by the next one;
the folder they are made in is the user's own, or nothing is spilled there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segship import embedded_duckdb
from segship.embedded_duckdb import SpillFolderError
from segship.engine.scratch import GRACE_SECONDS, ScratchFolder

from ..conftest import file_mode

#: A process that makes a scratch folder below argv[1], prints it, and waits to be killed.
HOLDER = ("import sys, time; from pathlib import Path; from segship.engine.scratch import ScratchFolder; "
          "print(ScratchFolder(Path(sys.argv[1])).path, flush=True); time.sleep(600)")


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_scratch_folder_is_private_and_removed_with_what_it_holds(tmp_path, permissive_umask):
    scratch = ScratchFolder(tmp_path / "root")
    assert file_mode(scratch.path) == 0o700 and file_mode(tmp_path / "root") == 0o700
    (scratch.path / "spill").mkdir()
    (scratch.path / "spill" / "rows.block").write_bytes(b"personal data")
    scratch.remove()
    scratch.remove()  # again: nothing left to do
    assert list((tmp_path / "root").iterdir()) == []


def test_a_killed_process_folder_is_swept_and_a_living_one_is_not(tmp_path):
    root = tmp_path / "root"
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        killed, living = (Path(holder.stdout.readline().strip()) for holder in holders)
        holders[0].kill()
        holders[0].wait(timeout=30)
        for folder in (killed, living):
            _age(folder, GRACE_SECONDS + 60)
        mine = ScratchFolder(root)
        assert not killed.exists()  # kill -9 left it; no one holds it now
        assert living.exists() and mine.path.exists()
        mine.remove()
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(timeout=30)
            holder.stdout.close()


def test_a_new_folder_is_spared_while_its_process_may_not_have_locked_it_yet(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    (root / "snapshot-new").mkdir()
    (root / "snapshot-old").mkdir()
    _age(root / "snapshot-old", GRACE_SECONDS + 60)
    ScratchFolder(root).remove()
    assert [folder.name for folder in root.iterdir()] == ["snapshot-new"]


def test_the_spill_root_is_the_users_own_closed_to_others(tmp_path, monkeypatch):
    root = tmp_path / "segship-duckdb"
    monkeypatch.setattr(embedded_duckdb, "SPILL_DIRECTORY", root)
    assert ScratchFolder().path.parent == root
    assert file_mode(root) == 0o700

    root.chmod(0o777)  # (as a folder another user made for everyone would be)
    with pytest.raises(SpillFolderError, match=f"^the scratch folder {root} is not this user's own .*mode 777.*TMPDIR"):
        ScratchFolder()
    root.chmod(0o700)
    root.rename(tmp_path / "elsewhere")
    root.symlink_to(tmp_path / "elsewhere")  # a link planted where the folder would be: not followed
    with pytest.raises(SpillFolderError):
        embedded_duckdb.connect(64)
