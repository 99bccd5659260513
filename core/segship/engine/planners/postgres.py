"""The warehouse planner's PostgreSQL dialect: segship's canonical hashes in PostgreSQL's SQL, bulk
loads by COPY (ADBC ingest), upserts by ``INSERT … ON CONFLICT DO UPDATE``.

The encodings follow ``segship.engine.hashing`` for the type each PostgreSQL type reaches segship as
through the ``postgres`` source (ADBC): ``int2``/``int4``/``int8``/``oid`` are integers;
``numeric(p, s)`` with p <= 38 a decimal, trailing zeros after the point trimmed; an unconstrained
or wider ``numeric``, ``real`` and ``double precision`` floats; ``text``, ``varchar``, ``char(n)``
(padded, as ADBC sends it), ``name``, ``uuid``, ``json`` and ``jsonb`` text; ``boolean``, ``date``,
``timestamp``, ``timestamptz``, ``time`` and ``bytea`` as their rows say; arrays of those as lists.
Any other type is refused with the cast that makes it plannable.

Floats are the one rule that is not a plain cast: the canonical text is DuckDB's shortest
round-trip text of the double, and PostgreSQL's ``float8`` output differs from it in three ways,
which ``segship_float_text_v2`` (a function of the session) undoes: an integral value has no ``.0``, a value of exponent 15
is written in exponent form, and an integral value past 2^53 may come with more digits than the
shortest (so a 15- or 16-digit form that reads back as the same double is taken instead). The
pinned vectors and a sweep of random doubles (tests/engine/test_warehouse_hashing.py) check it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from segship.engine.planners import MEMBER_DIGESTS, MEMBERS, ROW_DIGEST, ColumnType, WarehouseDialect
from segship.engine.snapshot import WHITESPACE, PlanError
from segship.sql_text import literal, quote

if TYPE_CHECKING:
    import pyarrow as pa
    from adbc_driver_manager.dbapi import Connection, Cursor

    from segship.destination import IdentityRule

#: Functions the planner makes in each session (``pg_temp``: a plan that writes nothing needs them too, and
#: they need no grant); the suffix is ``hashing.HASH_VERSION``.
FLOAT_TEXT, ROW_HASH = "pg_temp.segship_float_text_v2", "pg_temp.segship_row_hash_v2"
#: PostgreSQL's message for a relation or schema the role may not read.
DENIED = re.compile(r"permission denied for (table|view|materialized view|sequence|schema) (\S+)")
_INTEGERS = frozenset({"int2", "int4", "int8", "oid"})
_TEXT = frozenset({"text", "varchar", "name", "uuid", "json", "jsonb", "citext"})
_FLOATS = frozenset({"float4", "float8"})
#: Types whose own hash tells apart every two values segship encodes differently, so
#: ``hash_record_extended`` digests them as they are. Any other is digested as its text in the C
#: collation: a jsonb's hash takes 1.0 for 1.00, a citext's 'A' for 'a', json has none, and a
#: nondeterministic collation's text hashes some different texts alike.
_HASHED_AS_THEY_ARE = _INTEGERS | _FLOATS | frozenset({"numeric", "bool", "date", "timestamp", "timestamptz",
                                                       "time", "uuid", "bytea"})
#: ADBC streams ``numeric(p, s)`` with p up to this as a decimal, a wider or unconstrained one as a float.
MAX_DECIMAL_PRECISION = 38

FUNCTIONS = {
    FLOAT_TEXT: """
CREATE FUNCTION {name}(v double precision) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE WHEN s = 'NaN' THEN 'nan' WHEN s = 'Infinity' THEN 'inf' WHEN s = '-Infinity' THEN '-inf'
            WHEN s ~ 'e\\+15$' THEN (CASE WHEN s LIKE '-%' THEN '-' ELSE '' END)
                 || (CASE WHEN length(d) <= 16 THEN rpad(d, 16, '0') || '.0' ELSE left(d, 16) || '.' || substr(d, 17) END)
            WHEN s !~ '[.e]' THEN s || '.0'
            ELSE s END
FROM (SELECT s, translate(split_part(s, 'e', 1), '-.', '') AS d
      FROM (SELECT CASE WHEN t ~ 'e' AND length(translate(split_part(t, 'e', 1), '-.', '')) > 15
                         AND to_char(w, '9.99999999999999EEEE')::float8 = w
                        THEN regexp_replace(btrim(to_char(w, '9.99999999999999EEEE')), '\\.?0*e', 'e')
                        WHEN t ~ 'e' AND length(translate(split_part(t, 'e', 1), '-.', '')) > 16
                         AND to_char(w, '9.999999999999999EEEE')::float8 = w
                        THEN regexp_replace(btrim(to_char(w, '9.999999999999999EEEE')), '\\.?0*e', 'e')
                        ELSE t END AS s
            FROM (SELECT w, w::text AS t FROM (SELECT v + 0.0 AS w) a) b) c) e
$$""",
    # the column hashes read as little-endian unsigned 64-bit integers, rotated left by their index,
    # xor-ed, top bit cleared (segship.engine.hashing); PostgreSQL's operators share one precedence:
    # every shift and or is parenthesized
    ROW_HASH: """
CREATE FUNCTION {name}(h bytea) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT bit_xor(CASE WHEN r = 0 THEN c ELSE ((c << r) | ((c >> (64 - r)) & ((1::int8 << r) - 1))) END)
       & 9223372036854775807
FROM (SELECT i % 64 AS r, """ + " | ".join(f"(get_byte(h, 8 * i + {byte})::int8 << {8 * byte})"
                                         for byte in range(8)) + """ AS c
      FROM generate_series(0, length(h) / 8 - 1) AS i) AS columns
$$""",
}


def _tagged(tag: str, text: str) -> str:
    return f"coalesce('{tag}' || {text}, 'n')"


def _framed(encoding: str) -> str:
    return f"(length({encoding})::text || ':' || {encoding})"


class PostgresDialect(WarehouseDialect):
    source_type = "postgres"
    digest_kind = "postgres hash_record_extended"

    def connect(self, options: dict[str, Any], *, autocommit: bool) -> Connection:
        import adbc_driver_postgresql.dbapi

        from segship.sources.adbc_database import register_url_password
        from segship.sources.postgres import with_connect_timeout

        url = str(options["url"])
        register_url_password(url)
        return adbc_driver_postgresql.dbapi.connect(with_connect_timeout(url), autocommit=autocommit)

    def check_grants(self, cursor: Cursor, schema: str) -> None:
        cursor.execute(
            f"SELECT current_user, current_database(), n.oid IS NOT NULL, "
            f"coalesce(has_schema_privilege(n.oid, 'USAGE'), false), coalesce(has_schema_privilege(n.oid, 'CREATE'), "
            f"false), has_database_privilege(current_database(), 'CREATE') "
            f"FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = {literal(schema)}")
        role, database, exists, usage, create, create_schema = cursor.fetchone()
        if not exists and not create_schema:
            raise PlanError(f"the planner schema {schema!r} does not exist and role {role!r} can't create it: "
                            f"GRANT CREATE ON DATABASE {quote(database)} TO {quote(role)}, or create the schema "
                            f"and GRANT USAGE, CREATE ON SCHEMA {quote(schema)} TO {quote(role)}")
        missing = [grant for grant, held in (("USAGE", usage), ("CREATE", create)) if exists and not held]
        if missing:
            raise PlanError(f"role {role!r} lacks {' and '.join(missing)} on the planner schema {schema!r}: "
                            f"GRANT USAGE, CREATE ON SCHEMA {quote(schema)} TO {quote(role)}")

    @contextmanager
    def classifying(self, cursor: Cursor) -> Iterator[None]:
        # PostgreSQL estimates the classification's output at every member (it can't know that most
        # are unchanged and filtered out), so the cost of gathering them from parallel workers makes
        # it hash and join on one core; the rows really gathered are the changes. Only for it: the
        # same cost makes a lookup of a few keys gather every member to the session instead
        cursor.execute("SET parallel_tuple_cost = 0.001")
        try:
            yield
        finally:
            cursor.execute("RESET parallel_tuple_cost")

    def prepare_session(self, cursor: Cursor) -> None:
        cursor.execute("SELECT p.proname FROM pg_proc p WHERE p.pronamespace = pg_my_temp_schema()")
        present = {f"pg_temp.{row[0]}" for row in cursor.fetchall()}
        for function, ddl in FUNCTIONS.items():
            if function not in present:
                cursor.execute(ddl.format(name=function))

    def missing_grant(self, message: str) -> str | None:
        denied = DENIED.search(message)
        if denied is None:
            return None
        kind, name = denied.groups()
        kind = "TABLE" if kind in ("table", "view", "materialized view") else kind.upper()
        return f"GRANT {'USAGE' if kind == 'SCHEMA' else 'SELECT'} ON {kind} {name} TO the source's role"

    def prepare(self, cursor: Cursor, schema: str) -> None:
        name = quote(schema)
        cursor.execute(f"SELECT 1 FROM pg_namespace WHERE nspname = {literal(schema)}")
        if not cursor.fetchall():  # (IF NOT EXISTS asks for CREATE on the database even when it exists)
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
        cursor.execute(f"""CREATE TABLE IF NOT EXISTS {name}.{MEMBERS} (
            export text NOT NULL,
            key text NOT NULL,
            row_hash bigint NOT NULL,       -- 0: unknown, send the whole row again
            column_hashes bytea,            -- 8 bytes a mapped column, in the export's column order
            identity text,                  -- NULL: the same as the key
            target integer NOT NULL,        -- the target (in segship's state) the member is in
            {ROW_DIGEST} bigint,            -- the digest of the row acknowledged; NULL: not known
            PRIMARY KEY (export, key))""")
        cursor.execute(f"""CREATE TABLE IF NOT EXISTS {name}.{MEMBER_DIGESTS} (
            export text PRIMARY KEY,
            kind text NOT NULL,             -- the hash function of the mixes summed
            members bigint NOT NULL,
            digest bigint NOT NULL)         -- the sum of the members' mixes, modulo 2^64""")
        # a table made by a segship before digests has no digest column; asked first, as ALTER TABLE
        # locks the table (which other exports' runs read) even with IF NOT EXISTS
        if not self.column_exists(cursor, schema, MEMBERS, ROW_DIGEST):
            cursor.execute(f"ALTER TABLE {name}.{MEMBERS} ADD COLUMN IF NOT EXISTS {ROW_DIGEST} bigint")
            cursor.execute(f"DELETE FROM {name}.{MEMBER_DIGESTS}")  # (sums of the digests just made unknown)

    def table_exists(self, cursor: Cursor, schema: str, table: str) -> bool:
        cursor.execute(f"SELECT to_regclass({literal(quote(schema) + '.' + quote(table))}) IS NOT NULL")
        return bool(cursor.fetchone()[0])

    def column_exists(self, cursor: Cursor, schema: str, table: str, column: str) -> bool:
        cursor.execute(f"SELECT count(*) FROM pg_attribute WHERE attrelid = "
                       f"to_regclass({literal(quote(schema) + '.' + quote(table))}) AND attname = {literal(column)} "
                       "AND NOT attisdropped")
        return bool(cursor.fetchone()[0])

    def temporary(self, name: str) -> str:
        return f"pg_temp.{quote(name)}"

    def column_types(self, cursor: Cursor, sql: str) -> list[ColumnType]:
        # a temporary view describes the query without running it
        cursor.execute("DROP VIEW IF EXISTS pg_temp.segship_described")
        cursor.execute(f"CREATE TEMPORARY VIEW segship_described AS {sql}")
        cursor.execute("""
            SELECT a.attname, bt.typname, a.atttypmod, et.typname, bt.typcategory
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
            LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
            WHERE a.attrelid = 'pg_temp.segship_described'::regclass AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""")
        columns = [ColumnType(name, type_, int(modifier), ColumnType(name, element) if element else None)
                   for name, type_, modifier, element, _ in cursor.fetchall()]
        cursor.execute("DROP VIEW pg_temp.segship_described")
        return columns

    def encoding(self, value: str, type_: ColumnType, depth: int = 0) -> str:
        kind = type_.name
        if kind in _INTEGERS:
            return _tagged("i", f"{value}::text")
        if kind == "numeric":
            precision, scale = (type_.modifier - 4) >> 16, (type_.modifier - 4) & 0xFFFF
            if type_.modifier < 0 or not 0 < precision <= MAX_DECIMAL_PRECISION:
                return _tagged("f", f"{FLOAT_TEXT}({value}::float8)")
            text = f"{value}::text" if scale == 0 else f"rtrim(rtrim({value}::text, '0'), '.')"
            return _tagged("i", text)
        if kind in _FLOATS:
            return _tagged("f", f"{FLOAT_TEXT}({value}::float8)")
        if kind in _TEXT:
            return _tagged("s", f"{value}::text")
        if kind in ("bpchar", "char"):
            # its output keeps the padding ADBC sends (a cast to text drops it); concat makes '' of NULL
            return _tagged("s", f"CASE WHEN {value} IS NOT NULL THEN concat({value}) END")
        if kind == "bool":
            return _tagged("b", f"{value}::text")
        if kind == "date":
            return _tagged("d", f"to_char({value}, 'YYYY-MM-DD')")
        if kind in ("timestamptz", "timestamp"):
            tag = "z" if kind == "timestamptz" else "t"
            return _tagged(tag, f"(extract(epoch FROM {value}) * 1000000)::bigint::text")
        if kind == "time":
            return _tagged("h", f"{value}::text")
        if kind == "bytea":
            return _tagged("x", f"upper(encode({value}, 'hex'))")
        if type_.element is not None:
            item, position = f"x{depth}", f"o{depth}"
            items = (f"(SELECT string_agg({_framed(self.encoding(item, type_.element, depth + 1))}, '' "
                     f"ORDER BY {position}) FROM unnest({value}) WITH ORDINALITY AS u{depth}({item}, {position}))")
            return f"CASE WHEN {value} IS NULL THEN 'n' ELSE 'l' || coalesce({items}, '') END"
        raise PlanError(f"column {type_.column!r} is of PostgreSQL type {kind}, which the warehouse planner can't "
                        "hash as segship does; cast it in the segment's SQL (to text, numeric(p, s), "
                        "double precision, timestamptz…)")

    def identity(self, value: str, rule: IdentityRule) -> str:
        text = f"CAST({value} AS text)"
        if rule.normalisation in ("trim", "lower"):
            text = f"btrim({text}, {literal(WHITESPACE)})"
        if rule.normalisation == "lower":
            text = f"lower({text})"
        accepted = f"{text} <> ''"
        if rule.max_length is not None:
            accepted += f" AND length({text}) <= {int(rule.max_length)}"
        if rule.pattern is not None:  # RE2's syntax, as far as the destinations' patterns go, is POSIX's
            accepted += f" AND {text} ~ {literal('^(?:' + rule.pattern + ')$')}"
        return f"CASE WHEN {accepted} THEN {text} END"

    def column_hashes(self, encodings: Sequence[str]) -> str:
        return " || ".join(f"decode(left(md5({encoding}), 16), 'hex')" for encoding in encodings)

    def row_digest(self, values: Sequence[tuple[str, ColumnType]]) -> str:
        fields = [value if self._hashed_as_it_is(type_) else f'CAST({value} AS text) COLLATE "C"'
                  for value, type_ in values]
        return f"hash_record_extended(ROW({', '.join(fields)}), 0)"

    @staticmethod
    def _hashed_as_it_is(type_: ColumnType) -> bool:
        return type_.name in _HASHED_AS_THEY_ARE or (type_.element is not None
                                                     and type_.element.name in _HASHED_AS_THEY_ARE)

    def member_mix(self, key: str, digest: str, target: str) -> str:
        return f"hash_record_extended(ROW(CAST({key} AS text), CAST({digest} AS bigint), CAST({target} AS integer)), 0)"

    def row_hash(self, column_hashes: str) -> str:
        return f"{ROW_HASH}({column_hashes})"

    def load(self, cursor: Cursor, table: str, rows: pa.Table | pa.RecordBatchReader) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {self.temporary(table)}")
        cursor.adbc_ingest(table, rows, mode="create", temporary=True)

    def upsert(self, table: str, staged: str, columns: Sequence[str], key: Sequence[str], select: str) -> str:
        updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
        return (f"INSERT INTO {table} ({', '.join(columns)}) {select} "
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")

    def temporary_table(self, name: str, select: str) -> str:
        return f"CREATE TEMPORARY TABLE {quote(name)} AS {select}"

    def gather_statistics(self, cursor: Cursor, name: str) -> None:
        cursor.execute(f"ANALYZE {self.temporary(name)}")
