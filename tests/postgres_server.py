"""A real PostgreSQL 16 server for tests, from the ``pgserver`` wheel (binaries from PyPI, no root needed).

``pgserver`` creates the data folder (as an unprivileged system user when the tests run as
root, since postgres refuses root) and is then stopped; this module starts the server
itself, listening only on 127.0.0.1 at a free port with password (SCRAM) authentication,
so tests connect exactly as segship does in production (``postgresql://user:pass@host:port/db``)
and can stop and start it to test a server going away.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from contextlib import closing
from pathlib import Path

import pgserver
from pgserver import _commands as pg_commands

SUPERUSER = "postgres"


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server in ``root``: ``url(db)`` to connect, ``create_database``, ``stop``/``start``."""

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "pgdata"
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.password = secrets.token_hex(12)  # made at run time: no credential sits in the repository
        bootstrap = pgserver.get_server(self.pgdata, cleanup_mode=None)
        self.system_user = bootstrap.system_user
        bootstrap.psql(f"ALTER USER {SUPERUSER} PASSWORD '{self.password}';")
        self._pg_ctl(["-m", "fast", "stop"])
        (self.pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
        self.port = _free_port()
        self._databases = 0
        self.start()

    def _pg_ctl(self, args: list[str]) -> None:
        pg_commands.pg_ctl(args, pgdata=self.pgdata, user=self.system_user, timeout=60)

    def start(self) -> None:
        """Start (again) on the same port; TCP on 127.0.0.1 only, no Unix socket."""
        self._pg_ctl(["-w", "-o", f"-h 127.0.0.1 -p {self.port} -k ''", "-l", str(self.pgdata / "log"), "start"])

    def stop(self) -> None:
        """Stop at once: open sessions are cut, as when a database server goes away."""
        self._pg_ctl(["-w", "-m", "immediate", "stop"])

    def running(self) -> bool:
        status = subprocess.run([str(pg_commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "status"],
                                capture_output=True, user=self.system_user, timeout=60)
        return status.returncode == 0

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        return (f"postgresql://{SUPERUSER}:{self.password if password is None else password}"
                f"@127.0.0.1:{self.port}/{database}")

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run SQL as the superuser (autocommit); rows of the last statement, if any."""
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.url(database), autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        if self.running():
            self.stop()
