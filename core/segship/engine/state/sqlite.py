"""State in a SQLite file (WAL), the embedded default: right for a laptop or a machine with a lasting disk.

Driver: ADBC's SQLite driver, the same DB-API as the PostgreSQL backend's, so the
acknowledged hashes stream out as Arrow batches in C, with no Python row per member as the
standard ``sqlite3`` module makes. Only this one SQLite library opens the file: two copies of
SQLite in one process release each other's POSIX locks and can corrupt a WAL database
(https://sqlite.org/howtocorrupt.html, 2.2.1).
The driver guesses a result column's type from the first batch of rows, so every query
here reads at most one batch of ``BATCH_ROWS`` that may hold NULLs (``state copy`` pages);
the acknowledged rows, which hold none, stream in batches of it.

Acknowledged members are appended to ``member_journal`` as they are committed, and
folded into ``members`` in key order (sorted, unless this store wrote the journal in key
order: ``_note_key_order``): within a commit once the journal holds a quarter of
the export's members (so a fold writes each page of ``members`` at most once, and a run
has few of them), and when something next reads members (the plan, the leavers, ``state
show``...), in this run or a later one: a run that removes nobody ends without folding,
and a later plan that finds the members unchanged from their digest never reads them.
Writing them into ``members`` at once made every commit rewrite a page per member when
keys arrive in no particular order (a UUID, a warehouse's hash order;
``benchmarks/state_commit.py`` measures both orders). A file made by this
version hands the pages the journal used back to the file system after a fold on read
(``auto_vacuum=INCREMENTAL``); one made before keeps them as free space later journals
reuse. The changes of each Arrow batch read ask ``details`` about their keys, which folds
what the commits before them journaled (as costly as writing them at once, no more).

The state file is made whole on first open (``create_state_file``) and then only ever opened:
one that is empty, not SQLite, or without segship's tables is refused (``StateError``), never
taken for a new state, which would send every member again and forget who to remove. It, its
folder when segship makes it, the lock files and SQLite's files beside it are the owner's only.

Two runs of one export at once are refused with an OS file lock beside the database,
which the kernel releases even when a run is killed with -9. It is local to the machine:
for state shared by several machines, use PostgreSQL (``state.url``).
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc
import structlog

from segship.engine.state import StateError
from segship.engine.state.sql import SqlState
from segship.engine.state.sql.caches import StateCache
from segship.engine.state.sql.connection import on_state_thread
from segship.engine.state.sql.members import MEMBER_UPDATES
from segship.engine.state.sql.schema import INSTANCES_MIGRATION, MEMBER_DIGEST_BUCKETS_MIGRATION, MEMBER_LOCATIONS_MIGRATION, REJECT_ORIGINS_AND_DROPPED_FIELDS, SYNC_LOG_MIGRATION, TABLES, migrate, statements

if TYPE_CHECKING:
    import pyarrow as pa

log = structlog.get_logger("segship.state")

# Each entry migrates from version N-1 to N; applied in order inside one transaction.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE members (
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        row_hash INTEGER NOT NULL,      -- 0: unknown, send the whole row again
        column_hashes TEXT,             -- comma-separated, in the order of exports.columns
        identity TEXT NOT NULL,
        PRIMARY KEY (export, key)
    ) WITHOUT ROWID;
    CREATE TABLE stale_identities (    -- identities to remove that are no member's any more
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        identity TEXT NOT NULL,
        PRIMARY KEY (export, identity)
    ) WITHOUT ROWID;
    CREATE TABLE exports (
        export TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,      -- destination type + settings + mapping the state was made with
        columns TEXT NOT NULL           -- JSON list of source columns hashed, in order
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        export TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        report TEXT
    );
    CREATE INDEX runs_by_export ON runs (export, id);
    CREATE TABLE rejects (
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        reason TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (export, key)
    ) WITHOUT ROWID;
    """,
    # 2: find the members holding an identity (a leaver's email may be a staying member's too)
    """
    CREATE INDEX members_by_identity ON members (export, identity);
    """,
    # 3: compact members (177 -> under 100 bytes a member): an export id instead of its name in
    # every row, column hashes as a BLOB, no identity where it equals the key, and an identity
    # index over the other identities only. The hash version of each export (version 1: DuckDB's
    # hash(), decimal text column hashes, kept as the bytes of that text until a plan converts
    # them); targets (where members were sent: a Brevo list, a Braze segment), each member's
    # target and stale identities' target. Target ids count from 1 per export; 1 is the first
    # target recorded, which is where members acknowledged before this migration are.
    """
    CREATE TABLE exports_v3 (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        fingerprint TEXT,               -- NULL until a run records the settings it used
        columns TEXT,
        hash_version INTEGER NOT NULL   -- segship.engine.hashing.HASH_VERSION of the members' hashes
    );
    INSERT INTO exports_v3 (name, fingerprint, columns, hash_version) SELECT export, fingerprint, columns, 1
        FROM exports;
    INSERT INTO exports_v3 (name, hash_version) SELECT DISTINCT export, 1 FROM members
        WHERE export NOT IN (SELECT name FROM exports_v3);
    CREATE TABLE targets (
        export_id INTEGER NOT NULL,
        id INTEGER NOT NULL,
        settings TEXT NOT NULL,         -- JSON of the destination's target settings
        PRIMARY KEY (export_id, id)
    ) WITHOUT ROWID;
    CREATE TABLE members_v3 (
        export_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        row_hash INTEGER NOT NULL,      -- 0: unknown, send the whole row again
        column_hashes BLOB,             -- the engine's, in the order of exports.columns
        identity TEXT,                  -- NULL: the same as the key
        target INTEGER NOT NULL,         -- the targets.id the member is in (1 takes no byte)
        PRIMARY KEY (export_id, key)
    ) WITHOUT ROWID;
    INSERT INTO members_v3 SELECT e.id, m.key, m.row_hash, CAST(m.column_hashes AS BLOB), nullif(m.identity, m.key), 1
        FROM members m JOIN exports_v3 e ON e.name = m.export ORDER BY e.id, m.key;
    CREATE TABLE stale_identities_v3 (
        export TEXT NOT NULL,
        key TEXT NOT NULL,
        identity TEXT NOT NULL,
        target INTEGER NOT NULL,        -- where to remove the identity from
        PRIMARY KEY (export, target, identity)
    ) WITHOUT ROWID;
    INSERT INTO stale_identities_v3 SELECT export, key, identity, 1 FROM stale_identities;
    DROP TABLE members;
    DROP TABLE exports;
    DROP TABLE stale_identities;
    ALTER TABLE members_v3 RENAME TO members;
    ALTER TABLE exports_v3 RENAME TO exports;
    ALTER TABLE stale_identities_v3 RENAME TO stale_identities;
    CREATE INDEX members_by_identity ON members (export_id, identity) WHERE identity IS NOT NULL;
    """,
    """
    CREATE TABLE member_journal (       -- acknowledged members, appended as committed (see SqliteState)
        seq INTEGER PRIMARY KEY,
        export_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        row_hash INTEGER NOT NULL,
        column_hashes BLOB,
        identity TEXT,
        target INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE in_flight (            -- batches sent and not yet answered (see record_in_flight)
        export TEXT NOT NULL,
        id INTEGER NOT NULL,
        target INTEGER NOT NULL,
        members TEXT NOT NULL,          -- JSON: [keys, identities]
        PRIMARY KEY (export, id)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE member_digests (       -- an export's members summed up, until they are written (see sql.py)
        export_id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        members BIGINT NOT NULL,
        digest BIGINT NOT NULL
    );
    """,
    INSTANCES_MIGRATION,  # 7: destination instances (sql/schema.py)
    """
    CREATE TABLE export_destinations (  -- what each export's last run built its destination from (segship retire)
        export_id INTEGER PRIMARY KEY,
        connection TEXT NOT NULL,       -- the connection's name (its settings stay in the config)
        type TEXT NOT NULL,             -- the destination plugin's name
        settings TEXT NOT NULL,         -- JSON of the export's settings
        mapping TEXT NOT NULL           -- JSON of the export's mapping
    );
    """,
    """
    CREATE TABLE alerts (               -- each export's open conditions: an alert was sent, none yet for its end
        export TEXT NOT NULL,
        event TEXT NOT NULL,            -- failed, safeguard, rejects, drop, stale
        opened_at TEXT NOT NULL,
        run_id INTEGER,                 -- the run that opened it, NULL when the scheduler did (stale)
        message TEXT NOT NULL,
        figures TEXT NOT NULL,          -- JSON
        PRIMARY KEY (export, event)
    ) WITHOUT ROWID;
    """,
    # 10: rejects keep who refused them and since when; dropped fields (see schema.py)
    REJECT_ORIGINS_AND_DROPPED_FIELDS.format(integer="INTEGER", table_options=" WITHOUT ROWID"),
    MEMBER_LOCATIONS_MIGRATION,  # where a warehouse planner keeps an export's members (sql/schema.py)
    # 12: the member-level sync log (sql/schema.py); its id is the rowid: the order of writing
    SYNC_LOG_MIGRATION.format(id="INTEGER PRIMARY KEY", integer="INTEGER",
                              at="strftime('%Y-%m-%dT%H:%M:%SZ', l.at, 'unixepoch')"),
    MEMBER_DIGEST_BUCKETS_MIGRATION.format(blob="BLOB"),  # 13: a members' digest by bucket (sql/schema.py)
]
SCHEMA_VERSION = len(MIGRATIONS)


BATCH_ROWS = 65_536
#: Journaled members folded while a run goes on: at least this many, or a quarter of the members.
FOLD_MIN_MEMBERS = 65_536
MEMBER_COLUMNS = ", ".join(TABLES["members"].names)
_SETTLE = (f"INSERT INTO members SELECT {MEMBER_COLUMNS} FROM member_journal WHERE export_id = ? "
           f"ORDER BY {{order}} ON CONFLICT (export_id, key) DO UPDATE SET {MEMBER_UPDATES}")
#: The journal's members into ``members``, in key order (a later commit of a key after an earlier one)
SETTLE_JOURNAL = _SETTLE.format(order="key, seq")
#: The same for a journal written in key order: read as written (``seq`` is the rowid), no sort
SETTLE_SORTED_JOURNAL = _SETTLE.format(order="seq")


class MemberJournal(StateCache):
    """What this store knows of ``member_journal``, by export id.

    ``journaled`` and ``sorted_until`` are this store's own journaling, dropped by the fold that
    settles it; ``settled_members`` is a count taken once, kept as a hint of when to fold;
    ``looked_up`` is forgotten when a run starts (another process may have journaled since).
    """

    def __init__(self) -> None:
        self.journaled: dict[int, int] = {}  # export id -> members this store journaled, not yet folded
        self.settled_members: dict[int, int] = {}  # export id -> members in `members`, once counted
        self.looked_up: set[int] = set()  # exports whose journal left by others was looked for
        self.sorted_until: dict[int, str] = {}  # export id -> last key journaled, while in key order

    def run_started(self, export: str) -> None:
        self.looked_up.clear()


#: The first 16 bytes of every SQLite database (https://sqlite.org/fileformat.html, 1.3.1)
SQLITE_HEADER = b"SQLite format 3\x00"
#: Tables every schema has had since the first: a SQLite database without them isn't segship's state
SEGSHIP_TABLES = {"exports", "members", "stale_identities", "runs", "rejects"}
#: State holds personal data (for Brevo, members' emails): the folder segship makes for it and every
#: file segship puts there are the owner's only, whatever the umask. SQLite gives the files it makes
#: beside the database (``-wal``, ``-shm``, ``-journal``) the database file's own mode.
PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def create_state_file(path: Path) -> None:
    """Make a new state file at ``path``, whole: filled in a file of its own beside it, then linked
    into place, so that no process ever opens an empty or half-made state (the first runs of two
    exports at once share one file; a first open killed midway leaves none) and an empty file at
    the path is always damage. Made private (``mkstemp`` makes it 0600), with its folder if missing."""
    try:
        # (missing folders above it are made as the umask says: they hold no state)
        path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
        os.close(handle)
        try:
            SqliteState(Path(name), new=True).close()  # closed, its write-ahead log is in the file
            with suppress(FileExistsError):  # another process made it meanwhile: theirs is as good
                os.link(name, path)
        finally:
            os.unlink(name)
    except OSError as exc:
        raise StateError(f"state {path}: can't create it: {exc.strerror or exc}") from None


def check_state_file(path: Path) -> None:
    """Refuse a state file that is empty or not a SQLite database (``SqliteState`` checks its tables);
    warn if anyone beyond its owner and group may read it (as segship made it before): left as it is."""
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
    except OSError as exc:
        raise StateError(f"state {path}: can't read it: {exc.strerror or exc}") from None
    if not header:
        raise damaged_state(path, "is empty (0 bytes): it was truncated, or not made by segship")
    if header != SQLITE_HEADER:
        raise damaged_state(path, "is not a database (not a SQLite file)")
    if mode & 0o007:  # a group's access is left to the owner's judgement
        log.warning("state.readable_by_others", path=str(path), mode=f"{mode:04o}",
                    fix=f"chmod 600 {path}: state holds members' identities (for Brevo, their emails)")


def damaged_state(path: Path, problem: str) -> StateError:
    """A state file that can't be used, and what to do: segship never makes a new state in its place."""
    return StateError(f"state {path} {problem}. Check that it is the state file you meant (state.path); if it "
                      f"is, restore it from a backup, or delete it deliberately to start over, knowing that a new "
                      f"state sends every member of every export again and can't remove those who left before")


class SqliteState(SqlState):
    backend = "sqlite"
    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: Path, *, new: bool = False) -> None:
        """The state file at ``path``, made if there is none (``create_state_file``), refused if it is
        not segship's state. ``new``: ``path`` is the empty file being made into a state file."""
        import adbc_driver_manager
        import adbc_driver_sqlite.dbapi

        self.path = path
        self.driver_error = adbc_driver_manager.Error
        if not new:
            if not path.exists():
                create_state_file(path)
            check_state_file(path)
        try:
            self.db = adbc_driver_sqlite.dbapi.connect(str(path), autocommit=True)
        except adbc_driver_manager.Error as exc:
            raise StateError(self.error_message(exc)) from None
        super().__init__()
        self.journal = self.cached(MemberJournal())
        try:
            # first: another process's run may hold the write lock while this one opens the file
            self.execute("PRAGMA busy_timeout=30000")
            if new:
                # pages the journal frees go back to the file system after each fold (PRAGMA
                # incremental_vacuum), not kept as free space (a file with tables keeps its setting)
                self.execute("PRAGMA auto_vacuum=INCREMENTAL")
            else:
                self._check_tables()
            self.execute("PRAGMA journal_mode=WAL")
            self.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            migrate(self.schema_version(), MIGRATIONS, str(path), self._migrate_to)
        except BaseException:
            self.close()  # an unreadable or newer file: nothing is left open
            raise

    def _check_tables(self) -> None:
        """Refuse a SQLite database that isn't segship's state: migrated, it would be a new, empty state."""
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            return  # a newer segship's: ``migrate`` refuses it, saying so
        tables = {name for (name,) in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 or not SEGSHIP_TABLES <= tables:
            raise damaged_state(self.path, "is a SQLite database without segship's tables (another program's, "
                                           "or one whose making was cut short)")

    def describe(self) -> str:
        return str(self.path)

    # -- the member journal --------------------------------------------------------------------------

    def _write_members(self, export_id: int, target: int, columns: list[pa.Array]) -> None:
        journal = self.journal
        self._note_key_order(export_id, columns[0])
        self.many_columns(f"INSERT INTO member_journal ({MEMBER_COLUMNS}) "
                          f"VALUES ({int(export_id)}, ?, ?, ?, ?, {int(target)})", columns)
        journaled = journal.journaled[export_id] = journal.journaled.get(export_id, 0) + len(columns[0])
        if export_id not in journal.settled_members:
            journal.settled_members[export_id] = int(self.one("SELECT count(*) FROM members WHERE export_id = ?",
                                                              (export_id,))[0])
        # folded while the run goes on, once the journal is a quarter of the members: each fold
        # writes each page of `members` at most once, and few folds are left for the end
        if journaled >= max(FOLD_MIN_MEMBERS, journal.settled_members[export_id] // 4):
            self._fold(export_id)
            journal.journaled[export_id] = 0  # still to settle on read: the commit may yet roll back

    def _note_key_order(self, export_id: int, keys: pa.Array) -> None:
        """Keep track of whether the export's journal is in key order, so that its fold needs no sort.

        Keys usually arrive in the source's order, and a source sorted by key is common (the
        benchmarks' Parquet), and sorting a journal already in order is work for nothing
        (``benchmarks/state_commit.py``). Only a hint, known for a journal this store
        began: a fold makes the same members in either order (a key's later commit wins both ways).
        """
        sorted_until = self.journal.sorted_until
        if export_id not in self.journal.journaled:  # the first rows this store journals for it, or since it settled
            if self._journal_holds(export_id):
                sorted_until.pop(export_id, None)  # another run's journal: its order is unknown
            else:
                sorted_until[export_id] = ""
        last = sorted_until.get(export_id)
        if last is None or not len(keys) or keys.null_count:  # a null key fails the insert itself
            return
        if keys[0].as_py() >= last and pc.all(pc.less_equal(keys[:-1], keys[1:]), min_count=0).as_py():
            sorted_until[export_id] = keys[-1].as_py()
        else:
            del sorted_until[export_id]

    def _journal_holds(self, export_id: int) -> bool:
        return self.one("SELECT 1 FROM member_journal WHERE export_id = ? LIMIT 1", (export_id,)) is not None

    def _fold(self, export_id: int) -> None:
        """Move an export's journal into ``members``, inside the transaction open."""
        journal = self.journal
        self.execute(SETTLE_SORTED_JOURNAL if export_id in journal.sorted_until else SETTLE_JOURNAL, (export_id,))
        if self.one("SELECT EXISTS (SELECT 1 FROM member_journal WHERE export_id <> ?)", (export_id,))[0]:
            self.execute("DELETE FROM member_journal WHERE export_id = ?", (export_id,))
        else:  # the usual case, one export journaled: its pages are freed whole, not row by row
            self.execute("DELETE FROM member_journal")
        if export_id in journal.settled_members:
            journal.settled_members[export_id] += journal.journaled.get(export_id, 0)  # at most: some were updates

    @on_state_thread
    def _settle(self, export_id: int | None) -> None:
        journal = self.journal
        if export_id is None:
            for (journaled,) in self.rows("SELECT DISTINCT export_id FROM member_journal"):
                journal.journaled.setdefault(journaled, 0)
            pending = set(journal.journaled)
        else:
            if export_id not in journal.looked_up:  # what an earlier run journaled and left
                journal.looked_up.add(export_id)
                if self._journal_holds(export_id):
                    journal.journaled.setdefault(export_id, 0)
            pending = {export_id} & journal.journaled.keys()
        for journaled in pending:
            with self.transaction():
                self._fold(journaled)
            del journal.journaled[journaled]
            journal.sorted_until.pop(journaled, None)
        if pending:
            self.rows("PRAGMA incremental_vacuum")  # each page is one step: all of them

    @on_state_thread
    def has_members(self, export: str) -> bool:
        """Members folded or journaled (asked before every plan: folding here would cost an
        unchanged one that never reads them)."""
        export_id = self.export_id(export)
        return export_id is not None and self.one(
            "SELECT EXISTS (SELECT 1 FROM members WHERE export_id = ?) "
            "OR EXISTS (SELECT 1 FROM member_journal WHERE export_id = ?)", (export_id, export_id))[0] == 1

    def schema_version(self) -> int:
        return int(self.one("PRAGMA user_version")[0])

    def _migrate_to(self, latest: int) -> None:
        with self.transaction():
            for script in MIGRATIONS[self.schema_version():]:
                for statement in statements(script):
                    self.execute(statement)
            self.execute(f"PRAGMA user_version={latest}")

    def new_cursor(self) -> Any:
        cursor = self.db.cursor()
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
        return cursor

    @contextmanager
    def export_lock(self, export: str) -> Iterator[None]:
        lock_dir = self.path.parent / "locks"
        lock_dir.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
        # (an export's name is all a lock file tells, but it is kept as private as the state)
        lock = os.open(lock_dir / f"{export}.lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        handle = os.fdopen(lock, "r+")  # held for the with-block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(f"export {export!r} is already running: another run holds its lock "
                                 f"({handle.name}); two runs of one export at once are refused") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.close()
