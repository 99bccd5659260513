"""The warehouse planner's hashes in PostgreSQL (engine/planners/postgres.py) are segship's own, bit for
bit: the pinned vectors, the same values streamed through the ``postgres`` source and hashed by the
local planner, and a sweep of doubles whose PostgreSQL text differs from the canonical one."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import adbc_driver_postgresql.dbapi as postgresql
import duckdb
import pyarrow as pa
import pytest

from segship.sql_text import quote
from segship.engine.planners.postgres import PostgresDialect
from segship.engine.snapshot import PlanError
from segship.source import SourceContext
from segship.sources.postgres import PostgresSource

from .test_hashing import VECTORS, hash_rows, md5_column_hashes, md5_row_hash

#: The pinned vectors' values as PostgreSQL literals of the types that reach segship as the vectors'
#: types (HUGEINT, STRUCT and MAP have no PostgreSQL counterpart that ADBC streams as them).
POSTGRES_LITERALS = {
    "5::INTEGER": "5::int4", "5::BIGINT": "5::int8", "5.00::DECIMAL(10,2)": "5.00::numeric(10,2)",
    "1.50::DECIMAL(10,2)": "1.50::numeric(10,2)", "1.5::DECIMAL(18,1)": "1.5::numeric(18,1)",
    "100::DECIMAL(10,0)": "100::numeric(10,0)", "0.00::DECIMAL(5,2)": "0.00::numeric(5,2)",
    "1.5::DOUBLE": "1.5::float8", "5::DOUBLE": "5::float8", "-0.0::DOUBLE": "'-0'::float8",
    "'nan'::DOUBLE": "'NaN'::float8", "'inf'::DOUBLE": "'Infinity'::float8", "'-inf'::DOUBLE": "'-Infinity'::float8",
    "1e20::DOUBLE": "1e20::float8", "0.1::REAL": "0.1::float4", "'Zoë 🚀'": "'Zoë 🚀'::text", "''": "''::text",
    "NULL::VARCHAR": "NULL::text", "NULL::INTEGER": "NULL::int4", "true": "true",
    "DATE '2024-02-03'": "DATE '2024-02-03'",
    "TIMESTAMPTZ '2024-01-01 10:00:00+02'": "TIMESTAMPTZ '2024-01-01 10:00:00+02'",
    "TIMESTAMPTZ '2024-01-01 08:00:00+00'": "TIMESTAMPTZ '2024-01-01 08:00:00+00'",
    "TIMESTAMP '2024-01-01 08:00:00.123456'": "TIMESTAMP '2024-01-01 08:00:00.123456'",
    "['a', NULL, 'bc']": "ARRAY['a', NULL, 'bc']", "[]::VARCHAR[]": "'{}'::text[]",
    "'4579b1c0-0faf-4acc-bc31-7cc48b34045f'::UUID": "'4579b1c0-0faf-4acc-bc31-7cc48b34045f'::uuid",
    "'\\xAA\\x01'::BLOB": "'\\xAA01'::bytea", "'{\"a\":1}'::JSON": "'{\"a\":1}'::json",
}
DIALECT = PostgresDialect()


@pytest.fixture
def warehouse(postgres_url):
    with postgresql.connect(postgres_url, autocommit=True) as connection, connection.cursor() as cursor:
        DIALECT.prepare_session(cursor)
        yield cursor


def hash_in_postgres(cursor, sql: str) -> list[tuple[list[str], int, bytes]]:
    """(encodings, row hash, column hashes) of each row of ``sql``, hashed by the dialect in PostgreSQL."""
    types = DIALECT.column_types(cursor, sql)
    encodings = [DIALECT.encoding(f"s.{quote(t.column)}", t) for t in types]
    hashes = DIALECT.column_hashes(encodings)
    cursor.execute(f"SELECT ARRAY[{', '.join(encodings)}], {DIALECT.row_hash(hashes)}, {hashes} "
                   f"FROM ({sql}) AS s")
    return [(list(encodings), row_hash, bytes(column_hashes)) for encodings, row_hash, column_hashes
            in cursor.fetchall()]


@pytest.mark.parametrize(("literal", "encoding", "row_hash"), [v for v in VECTORS if v[0] in POSTGRES_LITERALS],
                         ids=[v[0] for v in VECTORS if v[0] in POSTGRES_LITERALS])
def test_the_pinned_vectors_hash_the_same_in_postgresql(warehouse, literal, encoding, row_hash):
    [(encodings, computed, column_hashes)] = hash_in_postgres(warehouse, f"SELECT {POSTGRES_LITERALS[literal]} AS v")
    assert encodings == [encoding]
    assert computed == row_hash == md5_row_hash([encoding])
    assert column_hashes == md5_column_hashes([encoding])


def test_a_row_of_every_type_hashes_in_postgresql_as_the_local_planner_hashes_it_through_adbc(warehouse, postgres_url):
    columns = ("id int4, small int2, big int8, exact numeric(12,3), whole numeric(10,0), loose numeric, "
               "name text, empty text, missing text, short varchar(9), padded char(5), at timestamptz, "
               "local timestamp, day date, clock time, flag bool, score float8, ratio float4, huge float8, "
               "tags text[], numbers int4[], no_tags text[], blob bytea, doc jsonb, raw json, uid uuid")
    rows = ("(5, 2, 7, 12.500, 100, 3.25, 'Zoë', '', NULL, 'ab ', 'x', '2024-01-01 10:00:00+02', "
            "'2024-01-01 08:00:00.5', '2024-02-03', '12:34:56.5', true, 1.5, 0.1, 2e15, ARRAY['a', NULL], "
            "ARRAY[1, 2], '{}', '\\x00ff', '{\"b\": [1, 2], \"a\": null}', '{\"a\":1}', "
            "'4579b1c0-0faf-4acc-bc31-7cc48b34045f'), "
            "(-5, NULL, NULL, -0.001, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, "
            "-0.0, NULL, 7.32765808921866e16, NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
    warehouse.execute(f"CREATE TABLE profiles ({columns})")
    warehouse.execute(f"INSERT INTO profiles VALUES {rows}")
    in_postgres = hash_in_postgres(warehouse, "SELECT * FROM profiles")
    source = PostgresSource(SourceContext("warehouse", {"url": postgres_url}, Path()))
    try:
        table = source.read("SELECT * FROM profiles").read_all()
    finally:
        source.close()
    db = duckdb.connect()
    db.register("streamed", table)
    locally = hash_rows(db, "streamed")
    assert [row[0] for row in in_postgres] == [row[0] for row in locally]
    assert in_postgres == locally


def test_doubles_whose_postgresql_text_is_not_the_canonical_one_hash_the_same(warehouse):
    randomly = random.Random(7)
    values = [float(f"{randomly.random() * 10:.{randomly.randint(1, 17)}f}e{exponent}") * randomly.choice((1, -1))
              for exponent in (*range(-30, 31), 15, 15, 16, 16, 17, 20, 21) for _ in range(40)]
    values += [struct.unpack("<d", randomly.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(3000)]
    values = [value for value in values if value == value] + [0.0, -0.0, 5.0, 1e15, 2.0 ** 60, 1e16, 9.5e15]
    warehouse.adbc_ingest("doubles", pa.table({"i": pa.array(range(len(values)), pa.int64()),
                                                "v": pa.array(values, pa.float64())}), mode="create")
    in_postgres = [row[0] for row in hash_in_postgres(warehouse, "SELECT v FROM doubles ORDER BY i")]
    db = duckdb.connect()
    db.register("doubles", pa.table({"v": pa.array(values, pa.float64())}))
    assert in_postgres == [row[0] for row in hash_rows(db, "doubles")]


def test_a_type_it_cant_hash_as_segship_does_is_refused_with_the_cast_to_make(warehouse):
    with pytest.raises(PlanError, match="'span' is of PostgreSQL type interval.*cast it"):
        hash_in_postgres(warehouse, "SELECT interval '1 day' AS span")


def digest_and_hashes(cursor, sql: str) -> list[tuple[int, bytes]]:
    """(row digest, column hashes) of each row of ``sql``, by the dialect in PostgreSQL."""
    types = DIALECT.column_types(cursor, sql)
    values = [(f"s.{quote(t.column)}", t) for t in types]
    digest = DIALECT.row_digest(values)
    hashes = DIALECT.column_hashes([DIALECT.encoding(value, type_) for value, type_ in values])
    cursor.execute(f"SELECT {digest}, {hashes} FROM ({sql}) AS s")
    return [(digest, bytes(hashes)) for digest, hashes in cursor.fetchall()]


@pytest.mark.parametrize(("first", "second"), [
    ("0.5::float8", "'0.5000000000000001'::float8"), ("'{\"a\": 1.0}'::jsonb", "'{\"a\": 1.00}'::jsonb"),
    ("'{\"a\": 1}'::json", "'{\"a\":1}'::json"), ("'a'::text COLLATE \"C\"", "'b'::text COLLATE \"C\""),
    ("ARRAY[1.5::float4]", "ARRAY[1.25::float4]"), ("1.5::numeric(10,2)", "1.25::numeric(10,2)"),
    ("NULL::int4", "0::int4"), ("''::text", "NULL::text"), ("DATE '2024-01-01'", "DATE '2024-01-02'"),
])
def test_values_segship_encodes_differently_have_different_digests(warehouse, first, second):
    """The digest is the warehouse's own hashing, so a value it takes as equal to another of another
    encoding (PostgreSQL's hash of a jsonb) is digested as its text: a row whose hashes change always
    changes digest."""
    [(digest_1, hashes_1)] = digest_and_hashes(warehouse, f"SELECT {first} AS v, 1 AS n")
    [(digest_2, hashes_2)] = digest_and_hashes(warehouse, f"SELECT {second} AS v, 1 AS n")
    assert hashes_1 != hashes_2
    assert digest_1 != digest_2


def test_equal_values_have_equal_digests_whatever_their_type_modifier(warehouse):
    [(of_zero, zero_hashes)] = digest_and_hashes(warehouse, "SELECT '0'::float8 AS v")
    [(of_minus_zero, minus_zero_hashes)] = digest_and_hashes(warehouse, "SELECT '-0'::float8 AS v")
    assert (of_zero, zero_hashes) == (of_minus_zero, minus_zero_hashes)  # one value to segship too
    rows = digest_and_hashes(warehouse, "SELECT 1.50::numeric(10,2) AS v UNION ALL SELECT 1.50::numeric(10,2)")
    assert rows[0] == rows[1]
    [(of_numeric, _)] = digest_and_hashes(warehouse, "SELECT 1.5::numeric(12,2) AS v")
    [(of_wider, _)] = digest_and_hashes(warehouse, "SELECT 1.5::numeric(14,3) AS v")
    assert of_numeric == of_wider  # a changed modifier alone costs no hashing
