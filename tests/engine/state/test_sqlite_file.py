"""The SQLite state file itself: made whole and private on first open, refused when it is damaged or
not segship's (never taken for a new, empty state, which would send every member again)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from segship.engine.state import StateError, open_state_at
from segship.engine.state.sqlite import SqliteState

from ...conftest import file_mode
from .conftest import keys


def test_a_new_state_file_its_folder_and_what_sqlite_and_the_locks_put_beside_it_are_the_owners_only(
        tmp_path, permissive_umask):
    path = tmp_path / "project" / ".segship" / "state.db"
    store = open_state_at(path)
    try:
        with store.export_lock("sync"):
            store.commit_upserts("sync", [("k1", 1, None, "one@example.com")], [], [])
            made = {file.relative_to(path.parent).as_posix(): file_mode(file) for file in path.parent.rglob("*")}
    finally:
        store.close()
    assert made == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600, "locks": 0o700,
                    "locks/sync.lock": 0o600}
    assert file_mode(path.parent) == 0o700
    assert file_mode(tmp_path / "project") == 0o777 & ~permissive_umask  # only the state's own folder


def test_sqlite_gives_a_rollback_journal_the_state_files_mode(tmp_path, permissive_umask):
    """State is in WAL mode from its first write; were SQLite to journal a transaction the old way,
    its ``-journal`` would be as private as the file (SQLite gives it the database file's mode)."""
    path = tmp_path / "state.db"
    store = open_state_at(path)
    try:
        store.execute("PRAGMA journal_mode=DELETE")
        store.execute("BEGIN IMMEDIATE")
        store.execute("INSERT INTO runs (export, started_at, outcome, dry_run) VALUES ('sync', 't', 'running', 0)")
        assert file_mode(tmp_path / "state.db-journal") == 0o600
        store.execute("ROLLBACK")
    finally:
        store.close()


def test_the_folder_of_an_existing_state_is_left_as_it_is(tmp_path, permissive_umask):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    open_state_at(folder / "state.db").close()
    assert file_mode(folder) == 0o755
    assert file_mode(folder / "state.db") == 0o600


def test_an_existing_state_file_others_can_read_is_left_as_it_is_with_a_warning(tmp_path):
    path = tmp_path / "state.db"
    open_state_at(path).close()
    path.chmod(0o644)  # as segship made it before
    with structlog.testing.capture_logs() as logs:
        open_state_at(path).close()
    assert file_mode(path) == 0o644
    (warning,) = [log for log in logs if log["log_level"] == "warning"]
    assert warning["event"] == "state.readable_by_others"
    assert warning["path"] == str(path) and warning["mode"] == "0644" and f"chmod 600 {path}" in warning["fix"]
    path.chmod(0o640)  # shared with a group on purpose: no warning
    with structlog.testing.capture_logs() as logs:
        open_state_at(path).close()
    assert logs == []


def foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('not segship')")
    db.close()


def tableless_database(path: Path) -> None:
    """A SQLite database that holds nothing (a first open killed before its tables were made)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE scratch (x)")
        db.execute("DROP TABLE scratch")
    db.close()


def versioned_foreign_database(path: Path) -> None:
    """Another program's database that versions its schema as segship does (``user_version``)."""
    foreign_database(path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=3")
    db.close()


DAMAGED: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    "not SQLite": (lambda path: path.write_bytes(b"segship state\n" * 100), "is not a database (not a SQLite file)"),
    "too short for SQLite": (lambda path: path.write_bytes(b"SQLite"), "is not a database (not a SQLite file)"),
    "another program's": (foreign_database, "is a SQLite database without segship's tables"),
    "another program's, versioned": (versioned_foreign_database, "is a SQLite database without segship's tables"),
    "without tables": (tableless_database, "is a SQLite database without segship's tables"),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_or_foreign_state_file_is_refused_saying_what_to_do_and_left_as_it_was(tmp_path, damage):
    path = tmp_path / "state.db"
    make, problem = DAMAGED[damage]
    make(path)
    before = path.read_bytes()
    with pytest.raises(StateError) as refused:
        open_state_at(path)
    message = str(refused.value)
    assert message.startswith(f"state {path} {problem}")
    assert "restore it from a backup" in message
    assert "delete it deliberately" in message and "sends every member of every export again" in message
    assert path.read_bytes() == before
    assert sorted(file.name for file in tmp_path.iterdir()) == ["state.db"]


def test_a_state_path_that_cant_be_made_is_an_error_naming_it(tmp_path):
    (tmp_path / "taken").write_text("a file where the state's folder would be")
    with pytest.raises(StateError, match=r"state .*taken/state\.db: can't create it"):
        open_state_at(tmp_path / "taken" / "state.db")


def test_a_state_path_that_isnt_a_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StateError, match=r"state .*state\.db: can't read it"):
        open_state_at(tmp_path / "state.db")


def test_a_new_state_file_is_made_whole_once_when_several_open_it_at_once(tmp_path):
    """The first runs of two exports at once: each opens the state the other may be making, which is
    never seen half made (it is made beside the path and linked into place whole)."""
    path = tmp_path / ".segship" / "state.db"
    start = threading.Barrier(6)
    opened: list[SqliteState] = []
    failed: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            opened.append(open_state_at(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failed == []
        opened[0].commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
        assert all(keys(store) == ["k1"] for store in opened)  # one file, the same state
    finally:
        for store in opened:
            store.close()
    assert sorted(file.name for file in path.parent.iterdir()) == ["state.db"]  # nothing left beside it
