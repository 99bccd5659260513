"""The built-in ``postgres`` source: a segment's SQL runs in PostgreSQL, its rows stream back as Arrow.

It is the ADBC PostgreSQL driver (``adbc-driver-postgresql``, a core dependency, libpq
bundled) with one setting, ``url``, a secret given by reference. A URL without
``connect_timeout`` gets one, so an unreachable server fails in seconds instead of hanging.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from segship import hookimpl
from segship.sql_text import quote, segment_subquery
from segship.sources.adbc_database import AdbcDatabaseSource, register_url_password

if TYPE_CHECKING:
    from adbc_driver_manager.dbapi import Connection, Cursor

#: Seconds libpq waits for the server to answer a connection, unless the URL says otherwise.
CONNECT_TIMEOUT_SECONDS = 10


def with_connect_timeout(url: str, seconds: int = CONNECT_TIMEOUT_SECONDS) -> str:
    """``url`` with libpq's ``connect_timeout`` set, unless it sets one (URL or ``key=value`` form)."""
    if "connect_timeout" in url:
        return url
    if not url.startswith(("postgresql://", "postgres://")):
        return f"{url} connect_timeout={seconds}"  # libpq's key=value connection string
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("connect_timeout", str(seconds))])
    return urlunsplit(parts._replace(query=query))


class PostgresSource(AdbcDatabaseSource):
    name = "postgres"
    options_schema: dict[str, Any] = {
        "type": "object",
        "description": "A PostgreSQL database (or one that speaks its protocol): the segment's SQL runs there, "
                       "in PostgreSQL's dialect, and its rows stream back.",
        "properties": {
            "url": {"type": "string", "minLength": 1, "x-secret": True,
                    "description": "postgresql://user:password@host:5432/database (libpq URL, sslmode and other "
                                   "parameters allowed); a secret: ${env:VAR} or ${file:PATH} only."},
            "planner": {
                "type": "object",
                "description": "Opt-in warehouse planner: the member state of exports of this source's segments "
                               "and their diff live in this schema of the database; only rows to send and "
                               "leavers' identities leave it (docs/sources.md).",
                "properties": {
                    "schema": {"type": "string", "minLength": 1, "maxLength": 63,
                               "description": "The schema that keeps the member state (made if missing: needs "
                                              "CREATE on the database, or USAGE and CREATE on the schema)."},
                },
                "required": ["schema"],
                "additionalProperties": False,
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    }

    def _connect(self) -> Connection:
        import adbc_driver_postgresql.dbapi

        url = str(self.context.options["url"])
        register_url_password(url)
        return adbc_driver_postgresql.dbapi.connect(with_connect_timeout(url), autocommit=True)

    def _projection_sql(self, sql: str, columns: Sequence[str]) -> str | None:
        # PostgreSQL drops a subquery's unselected columns from its plan: they are not computed either.
        # Qualified: a bare name the query lacks could be read as the alias's whole row.
        selected = ", ".join(f"segship_segment.{quote(column)}" for column in columns)
        return f"SELECT {selected} FROM {segment_subquery(sql)} AS segship_segment"

    def _driver_package(self) -> str | None:
        return "adbc_driver_postgresql"

    def _server_version(self, cursor: Cursor) -> str | None:
        cursor.execute("SELECT version()")
        return str(cursor.fetchone()[0])


@hookimpl
def segship_register_sources(register) -> None:
    register(PostgresSource)
