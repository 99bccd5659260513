"""The ``postgres`` source against the real PostgreSQL fixture server: types, streaming, errors, secrets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from segship.secrets import redactor
from segship.source import SourceContext, SourceError
from segship.sources.postgres import CONNECT_TIMEOUT_SECONDS, PostgresSource, with_connect_timeout


def _source(url: str, name: str = "warehouse") -> PostgresSource:
    return PostgresSource(SourceContext(name, {"url": url}, Path(".")))


@pytest.fixture
def database(postgres_server, postgres_url) -> Iterator[tuple[object, str]]:
    yield postgres_server, postgres_url.rsplit("/", 1)[1]


def test_numeric_columns_become_numbers_and_other_types_keep_theirs(database, postgres_url):
    server, name = database
    server.execute("CREATE TABLE t (exact numeric(12,2), wide numeric(40,2), free numeric, i int, b boolean, "
                   "d date, ts timestamp, tz timestamptz, tags text[], doc jsonb)", name)
    server.execute("INSERT INTO t VALUES (1234.50, 1.5, 98.6, 1, true, '2024-02-29', '2024-01-02 03:04:05', "
                   "'2024-01-02 03:04:05+02', '{a,b}', '{\"k\": 1}'), (NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, "
                   "NULL, NULL, NULL)", name)
    source = _source(postgres_url)
    try:
        table = source.read("SELECT * FROM t").read_all()
    finally:
        source.close()
    types = {field.name: field.type for field in table.schema}
    assert types["exact"] == pa.decimal128(12, 2)
    assert types["wide"] == types["free"] == pa.float64()  # beyond decimal128, or unconstrained: a float
    assert (types["i"], types["b"], types["d"]) == (pa.int32(), pa.bool_(), pa.date32())
    assert types["ts"] == pa.timestamp("us") and types["tz"] == pa.timestamp("us", tz="UTC")
    assert types["tags"] == pa.list_(pa.string())
    rows = table.to_pylist()
    assert rows[0]["exact"] == Decimal("1234.50") and rows[0]["free"] == 98.6
    assert rows[1]["exact"] is None and rows[1]["free"] != rows[1]["free"]  # NULL stays NULL, NaN is NaN


def test_rows_stream_in_batches_on_one_connection_kept_until_close(database, postgres_url):
    server, name = database
    server.execute("CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 200000) g",
                   name)
    source = _source(postgres_url)
    try:
        reader = source.read("SELECT * FROM big")
        sizes = [batch.num_rows for batch in reader]
        assert sum(sizes) == 200_000 and len(sizes) > 1  # never one table of every row
        again = source.read("SELECT count(*) AS n FROM big").read_all()  # the same connection, a second query
        assert again.column("n").to_pylist() == [200_000]
    finally:
        source.close()


def test_check_connection_names_the_server_and_driver(postgres_url):
    source = _source(postgres_url)
    try:
        description = source.check_connection()
    finally:
        source.close()
    assert description.startswith("PostgreSQL 16.")
    assert "driver: ADBC PostgreSQL Driver 1." in description


def test_an_unknown_table_is_the_databases_own_message(postgres_url):
    source = _source(postgres_url)
    try:
        with pytest.raises(SourceError, match=r"source 'warehouse': .*relation \"missing\" does not exist"):
            source.read("SELECT * FROM missing")
    finally:
        source.close()


def test_a_wrong_password_is_one_line_without_the_password(postgres_server):
    wrong = "wrong-" + "password-42"
    redactor.add(wrong)  # as resolving ${env:…} would have
    with pytest.raises(SourceError) as raised:
        _source(postgres_server.url(password=wrong)).check_connection()
    message = str(raised.value)
    assert "password authentication failed" in message
    assert wrong not in message and "\n" not in message


def test_an_error_quoting_the_url_is_redacted(postgres_server):
    """libpq and the driver may quote the URI; its password is registered on its own too."""
    password = "pw-" + "in-a-url-77"
    url = f"postgresql://postgres:{password}@127.0.0.1:{postgres_server.port}/postgres?sslmode=bogus"
    with pytest.raises(SourceError) as raised:
        _source(url).check_connection()
    assert "sslmode" in str(raised.value)
    assert password not in str(raised.value)


def test_a_server_that_never_answers_times_out():
    with closing(socket.socket()) as silent:  # accepts connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(SourceError, match="timeout"):
            _source(f"postgresql://u:p@127.0.0.1:{port}/db?connect_timeout=1").check_connection()


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u:p@h:5432/db", f"postgresql://u:p@h:5432/db?connect_timeout={CONNECT_TIMEOUT_SECONDS}"),
    ("postgresql://u:p@h/db?sslmode=require", f"postgresql://u:p@h/db?sslmode=require&connect_timeout="
                                              f"{CONNECT_TIMEOUT_SECONDS}"),
    ("postgresql://h/db?connect_timeout=3", "postgresql://h/db?connect_timeout=3"),
    ("host=h dbname=db", f"host=h dbname=db connect_timeout={CONNECT_TIMEOUT_SECONDS}"),
])
def test_a_connect_timeout_is_added_unless_given(url, expected):
    assert with_connect_timeout(url) == expected


def test_only_the_columns_asked_for_leave_the_database_and_the_others_are_not_computed(database, postgres_url):
    server, name = database
    server.execute("CREATE TABLE people AS SELECT g AS id, 'p' || g AS email FROM generate_series(1, 3) g", name)
    # the unread column divides by zero on every row: computing it would fail the query
    sql = "SELECT id, email, 1 / (length(email) - length(email)) AS never_read FROM people ORDER BY id -- all;\n ;"
    source = _source(postgres_url)
    try:
        table = source.read_columns(sql, ["email", "id"]).read_all()
    finally:
        source.close()
    assert table.schema.names == ["email", "id"]
    assert table.column("id").to_pylist() == [1, 2, 3]


def test_columns_the_query_lacks_come_back_as_the_query_s_own_for_the_engine_to_name(database, postgres_url):
    server, name = database
    server.execute("CREATE TABLE few AS SELECT 1 AS id, 'a' AS email", name)
    source = _source(postgres_url)
    try:
        table = source.read_columns("SELECT * FROM few", ["id", "phone"]).read_all()
        with pytest.raises(SourceError, match=r'relation "missing" does not exist'):  # its own error, once
            source.read_columns("SELECT * FROM missing", ["id"])
    finally:
        source.close()
    assert table.schema.names == ["id", "email"]


def test_a_query_failing_while_it_runs_runs_once(database, postgres_url):
    """Only a statement PostgreSQL refuses as written (SQLSTATE class 42) is run again as written; an
    error while rows are computed reaches the engine from the stream (the driver's message), once."""
    server, name = database
    server.execute("CREATE TABLE once AS SELECT 1 AS id", name)
    server.execute("CREATE SEQUENCE calls", name)
    source = _source(postgres_url)
    try:
        with pytest.raises(OSError, match="division by zero"):
            source.read_columns("SELECT id, 1 / (nextval('calls') * 0) AS email FROM once", ["id", "email"]).read_all()
    finally:
        source.close()
    assert server.execute("SELECT last_value FROM calls", name) == [(1,)]  # its one row, evaluated once


def test_a_server_that_never_answers_is_tried_once_when_columns_are_selected():
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(0)
        port = silent.getsockname()[1]
        with pytest.raises(SourceError, match="timeout"):
            _source(f"postgresql://u:p@127.0.0.1:{port}/db?connect_timeout=1").read_columns("SELECT 1 AS id", ["id"])
        accepted = 0
        while True:
            try:
                silent.accept()[0].close()
            except BlockingIOError:
                break
            accepted += 1
    assert accepted == 1
