"""The generic ``adbc`` source with two real drivers: SQLite (a file) and PostgreSQL (the fixture server)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import adbc_driver_sqlite
import pytest

from segship.source import SourceContext, SourceError
from segship.sources.adbc import AdbcSource


def _source(**options: object) -> AdbcSource:
    return AdbcSource(SourceContext("lake", options, Path(".")))


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "crm.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT, ltv REAL)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                       [(i, f"user{i}@example.com", i * 1.5) for i in range(1, 1001)])
    return path


def _rows(source: AdbcSource, sql: str) -> list[dict]:
    try:
        return source.read(sql).read_all().to_pylist()
    finally:
        source.close()


def test_the_sqlite_driver_by_package_name(sqlite_file):
    rows = _rows(_source(driver="adbc_driver_sqlite", uri=str(sqlite_file)),
                 "SELECT customer_id, email FROM customers WHERE ltv > 1497 ORDER BY customer_id")
    assert rows == [{"customer_id": 999, "email": "user999@example.com"},
                    {"customer_id": 1000, "email": "user1000@example.com"}]


def test_the_sqlite_driver_by_shared_library_path_with_options(sqlite_file):
    source = _source(driver=adbc_driver_sqlite._driver_path(), uri=str(sqlite_file),
                     options={"adbc.sqlite.query.batch_rows": "100"})  # a database option the driver knows
    batches = list(source.read("SELECT * FROM customers").__iter__())
    source.close()
    assert sum(batch.num_rows for batch in batches) == 1000 and len(batches) == 10


def test_the_postgresql_driver_runs_postgres_sql(postgres_server, postgres_url):
    postgres_server.execute("CREATE TABLE t AS SELECT g AS id, (g * 1.5)::numeric(8,2) AS amount "
                            "FROM generate_series(1, 5) g", postgres_url.rsplit("/", 1)[1])
    rows = _rows(_source(driver="adbc_driver_postgresql", uri=postgres_url),
                 "SELECT id, amount FROM t WHERE id::text ILIKE '4%'")
    assert [(row["id"], str(row["amount"])) for row in rows] == [(4, "6.00")]  # NUMERIC as for `postgres`


def test_check_connection_names_driver_and_version(sqlite_file):
    source = _source(driver="adbc_driver_sqlite", uri=str(sqlite_file))
    try:
        description = source.check_connection()
    finally:
        source.close()
    assert description.startswith("SQLite 3.") and "driver: ADBC SQLite Driver" in description


def test_a_driver_that_is_not_installed_says_what_to_install():
    with pytest.raises(SourceError) as raised:
        _source(driver="adbc_driver_snowflake", uri="user:pass@account/db").check_connection()
    assert str(raised.value) == ("source 'lake': the ADBC driver package 'adbc_driver_snowflake' is not installed "
                                 "(pip install adbc-driver-snowflake)")


def test_a_failing_query_is_the_databases_message(sqlite_file):
    source = _source(driver="adbc_driver_sqlite", uri=str(sqlite_file))
    try:
        with pytest.raises(SourceError, match="source 'lake': .*no such table: missing"):
            source.read("SELECT * FROM missing")
    finally:
        source.close()


def test_a_driver_of_unknown_dialect_streams_every_column_it_is_asked_for(sqlite_file):
    """Double quotes name a column in SQLite but make a string in other databases: the generic
    source doesn't select columns it can't quote for sure, and the engine keeps those it uses."""
    source = _source(driver="adbc_driver_sqlite", uri=str(sqlite_file))
    try:
        table = source.read_columns("SELECT * FROM customers WHERE customer_id = 1", ["email"]).read_all()
    finally:
        source.close()
    assert table.schema.names == ["customer_id", "email", "ltv"]
