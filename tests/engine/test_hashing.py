"""segship's own hashes (engine/hashing.py): fixed inputs give fixed outputs, equal values hash equal
whichever source or type produced them, and the definition is MD5 as Python's hashlib computes it."""

from __future__ import annotations

import hashlib

import adbc_driver_postgresql.dbapi as postgresql
import duckdb
import pyarrow as pa
import pytest

from segship.engine import hashing
from segship.engine.snapshot import changed_columns

# (DuckDB literal, canonical encoding, row hash of a one-column row): pinned; a change here changes
# every member's hash in every user's state, so it needs a new hash version and a conversion
VECTORS = [
    ("5::INTEGER", "i5", 555185579519617932),
    ("5::BIGINT", "i5", 555185579519617932),
    ("5.00::DECIMAL(10,2)", "i5", 555185579519617932),
    ("1.50::DECIMAL(10,2)", "i1.5", 6227893629495395265),
    ("1.5::DECIMAL(18,1)", "i1.5", 6227893629495395265),
    ("100::DECIMAL(10,0)", "i100", 7934099385051152983),
    ("0.00::DECIMAL(5,2)", "i0", 6649091949559210665),
    ("-170141183460469231731687303715884105727::HUGEINT", "i-170141183460469231731687303715884105727",
     1642487079588427915),
    ("1.5::DOUBLE", "f1.5", 8328380621171312039),
    ("5::DOUBLE", "f5.0", 2362144784093130451),
    ("-0.0::DOUBLE", "f0.0", 4100616540034473623),
    ("'nan'::DOUBLE", "fnan", 783919574550772590),
    ("'inf'::DOUBLE", "finf", 3823007128924301508),
    ("'-inf'::DOUBLE", "f-inf", 1703818027013817537),
    ("1e20::DOUBLE", "f1e+20", 2457189685506845083),
    ("0.1::REAL", "f0.10000000149011612", 2335239925816082026),
    ("'Zoë 🚀'", "sZoë 🚀", 2250757518349451088),
    ("''", "s", 133020994095859459),
    ("NULL::VARCHAR", "n", 7251003020305402747),
    ("NULL::INTEGER", "n", 7251003020305402747),
    ("true", "btrue", 750482260265858877),
    ("DATE '2024-02-03'", "d2024-02-03", 219375571434998762),
    ("TIMESTAMPTZ '2024-01-01 10:00:00+02'", "z1704096000000000", 6803278201080362837),
    ("TIMESTAMPTZ '2024-01-01 08:00:00+00'", "z1704096000000000", 6803278201080362837),
    ("TIMESTAMP '2024-01-01 08:00:00.123456'", "t1704096000123456", 5726803522655175475),
    ("['a', NULL, 'bc']", "l2:sa1:n3:sbc", 3419948354937030536),
    ("[]::VARCHAR[]", "l", 3992320237442611501),
    ("{'b': 1, 'a': 'x'}", "r1:a2:sx1:b2:i1", 3371825263188316300),
    ("{'a': 'x', 'b': 1}", "r1:a2:sx1:b2:i1", 3371825263188316300),
    ("MAP {'k': 1.5::DOUBLE}", "m2:sk4:f1.5", 6219793697440262713),
    ("'4579b1c0-0faf-4acc-bc31-7cc48b34045f'::UUID", "s4579b1c0-0faf-4acc-bc31-7cc48b34045f", 8702484668937929259),
    ("'\\xAA\\x01'::BLOB", "xAA01", 3218748024001151220),
    ("'{\"a\":1}'::JSON", 's{"a":1}', 933340343231769265),
]


def md5_row_hash(encodings: list[str]) -> int:
    """The row hash as the docs define it, computed with hashlib (independent of DuckDB)."""
    combined = 0
    for index, encoding in enumerate(encodings):
        column_hash = int.from_bytes(hashlib.md5(encoding.encode()).digest()[:8], "little")
        bits = index % 64
        combined ^= ((column_hash << bits) | (column_hash >> (64 - bits))) & ((1 << 64) - 1)
    return combined & ((1 << 63) - 1)


def md5_column_hashes(encodings: list[str]) -> bytes:
    return b"".join(hashlib.md5(e.encode()).digest()[:8] for e in encodings)


def hash_rows(db: duckdb.DuckDBPyConnection, view: str) -> list[tuple[list[str], int, bytes]]:
    """(encodings, row hash, column hashes) of each row of ``view``, through the engine's SQL."""
    relation = db.sql(f"SELECT * FROM {view}")
    columns = relation.columns
    encodings = hashing.encodings("s", columns, dict(zip(columns, relation.types, strict=True)))
    row_hash = hashing.row_hash_sql([f"column_hashes[{index + 1}]" for index in range(len(columns))])
    table = db.sql(f"SELECT encodings, {row_hash} AS row_hash, column_hashes FROM (SELECT [{', '.join(encodings)}] "
                   f"AS encodings, {hashing.column_hashes_sql(encodings)} AS column_hashes FROM {view} AS s)"
                   ).to_arrow_table()
    as_bytes = hashing.column_hash_bytes(table.column("column_hashes").combine_chunks(), len(columns))
    return list(zip(table.column("encodings").to_pylist(), table.column("row_hash").to_pylist(),
                    as_bytes.to_pylist(), strict=True))


@pytest.mark.parametrize(("literal", "encoding", "row_hash"), VECTORS, ids=[v[0] for v in VECTORS])
def test_fixed_inputs_give_fixed_outputs_defined_by_md5(literal, encoding, row_hash):
    db = duckdb.connect()
    db.execute(f"CREATE VIEW one AS SELECT {literal} AS v")
    [(encodings, computed, column_hashes)] = hash_rows(db, "one")
    assert encodings == [encoding]
    assert computed == row_hash == md5_row_hash([encoding])
    assert column_hashes == md5_column_hashes([encoding])


def test_a_row_hash_combines_its_column_hashes_so_values_that_swap_or_shift_columns_change_it():
    db = duckdb.connect()
    db.execute("CREATE VIEW r AS SELECT * FROM (VALUES ('a', 'sb'), ('as', 'b'), ('sb', 'a'), (NULL, ''), ('', NULL)) "
               "t(x, y)")
    rows = hash_rows(db, "r")
    assert [encodings for encodings, _, _ in rows] == [["sa", "ssb"], ["sas", "sb"], ["ssb", "sa"], ["n", "s"],
                                                       ["s", "n"]]
    for encodings, row_hash, column_hashes in rows:
        assert row_hash == md5_row_hash(encodings)
        assert column_hashes == md5_column_hashes(encodings)
    assert len({row_hash for _, row_hash, _ in rows}) == 5
    assert rows[0][1] == 8765332423130357298  # pinned: two columns, rotated


def test_the_same_values_from_postgresql_through_adbc_hash_as_from_duckdb(postgres_url):
    columns = ("id int4, big int8, name text, empty text, missing text, at timestamptz, local timestamp, day date, "
               "flag bool, score float8, ratio float4, tags text[]")
    row = ("5, 7, 'Zoë', '', NULL, '2024-01-01 10:00:00+02', '2024-01-01 08:00:00.5', '2024-02-03', true, 1.5, "
           "0.1, ARRAY['a', NULL]")
    with postgresql.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE profiles ({columns})")
        cursor.execute(f"INSERT INTO profiles VALUES ({row})")
        cursor.execute("SELECT * FROM profiles")
        from_postgresql = cursor.fetch_arrow_table()
    db = duckdb.connect()
    db.register("from_postgresql", from_postgresql)
    # the same values as DuckDB types of other widths and zones: BIGINT for int4, another zone, DOUBLE[]...
    db.execute("CREATE VIEW from_duckdb AS SELECT 5::BIGINT AS id, 7::HUGEINT AS big, 'Zoë' AS name, '' AS empty, "
               "NULL::VARCHAR AS missing, TIMESTAMPTZ '2024-01-01 08:00:00+00' AS at, "
               "TIMESTAMP_MS '2024-01-01 08:00:00.5' AS local, DATE '2024-02-03' AS day, true AS flag, "
               "1.5::REAL AS score, 0.1::REAL AS ratio, ['a', NULL] AS tags")
    assert hash_rows(db, "from_postgresql") == hash_rows(db, "from_duckdb")


def test_column_hash_bytes_of_a_sliced_batch_are_the_rows_own():
    hashes = pa.array([[1, 2], [3, 4], [5, 6]], pa.list_(pa.uint64()))
    as_bytes = hashing.column_hash_bytes(hashes.slice(1, 2), 2)
    assert as_bytes.to_pylist() == [(3).to_bytes(8, "little") + (4).to_bytes(8, "little"),
                                    (5).to_bytes(8, "little") + (6).to_bytes(8, "little")]


def test_changed_columns_compares_eight_bytes_a_column_and_knows_nothing_of_older_hashes():
    old = md5_column_hashes(["i1", "sAnn", "n"])
    new = md5_column_hashes(["i1", "sAnna", "n"])
    assert changed_columns(["id", "name", "phone"], old, new) == frozenset({"name"})
    assert changed_columns(["id", "name", "phone"], new, new) == frozenset()
    assert changed_columns(["id", "name", "phone"], None, new) is None
    assert changed_columns(["id", "name", "phone"], "123,456,789", new) is None  # hash version 1: send all
