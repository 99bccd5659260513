"""segship's own row and column hashes: MD5 over a canonical encoding of each mapped value.

State keeps, per member, a hash of the row the destination acknowledged and one per
mapped column; a DuckDB or source upgrade must not change them (Braze bills every
attribute written), and a value must hash the same whichever source produced it. So
the hashes are defined here, not by an engine's internal ``hash()``, and computed
vectorized in DuckDB SQL from MD5 (RFC 1321), whose output can't drift.

**Canonical encoding** of a value (text; the column's type picks the rule):

===========================================  ====  ====================================================
value                                        tag   text after the tag
===========================================  ====  ====================================================
NULL (of any type)                           n     (nothing): NULL differs from '' and from 0
integers of any width, DECIMAL/NUMERIC       i     the exact value in decimal, without trailing zeros
                                                   after the point: int4 5, BIGINT 5 and DECIMAL 5.00
                                                   are ``i5``; DECIMAL 1.50 and 1.5 are ``i1.5``
REAL, DOUBLE                                 f     the value as DOUBLE in DuckDB's shortest round-trip
                                                   text (``f1.5``, ``f5.0``, ``f1e+20``); -0.0 is 0.0;
                                                   ``fnan``, ``finf``, ``f-inf``. A float 5.0 is not
                                                   the integer 5: destinations send them differently
text, UUID, ENUM, JSON                       s     the UTF-8 text as it is (JSON too: destinations
                                                   send it as that text)
BOOLEAN                                      b     ``true`` / ``false``
DATE                                         d     ISO 8601 ``YYYY-MM-DD``
TIMESTAMP WITH TIME ZONE                     z     microseconds since 1970-01-01 UTC (so any zone
                                                   normalizes to UTC)
TIMESTAMP (no zone, any precision)           t     microseconds since 1970-01-01 (finer: rounded)
TIME                                         h     ``HH:MM:SS[.ffffff]``
BLOB                                         x     upper-case hex
list or array                                l     each item framed, in order
struct                                       r     each field, by name order: framed name, framed value
map                                          m     each entry, in order: framed key, framed value
anything else                                o     DuckDB's text of it
===========================================  ====  ====================================================

where *framed* ``e`` is ``<character length of e>:e`` (so a concatenation is unambiguous).

**Hashes** (hash version 2):

- a column's hash is the first 8 bytes of MD5(encoding); a member's column hashes are
  these 8 bytes per mapped column, in the export's column order (a BLOB in state);
- the row hash combines the column hashes, each read as a little-endian unsigned 64-bit
  integer ``c_i`` (``i`` from 0, in column order): XOR over the columns of ``c_i`` rotated
  left by ``i mod 64`` bits, top bit cleared (a positive signed 64-bit integer; 0 means
  "unknown" in state). The rotation keeps two columns that swap values from hashing
  alike; computed from the column hashes, it costs no second MD5 of the row.

``tests/engine/test_hashing.py`` pins fixed inputs to fixed outputs and checks them
against Python's ``hashlib``. The rules for floats, times and "anything else" use DuckDB's
text of the value; the pinned vectors are what catches a DuckDB release that changed it
(then the hash version goes up and state is converted). Values are the same "whichever
source" as far as the source gives them the same type: PostgreSQL ``NUMERIC`` arrives
through ADBC as text, so it hashes as text until the source casts it to a decimal.

Version 1 was DuckDB's ``hash()``; state written with it is converted on the first plan
(:mod:`segship.engine.hash_conversion`, called by :mod:`segship.engine.planning`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from segship.sql_text import literal, quote

if TYPE_CHECKING:
    from duckdb import DuckDBPyType

#: The hashes this module defines; state records which version each export's hashes are.
HASH_VERSION = 2
#: The hashes of segship before version 2: DuckDB's ``hash()``.
LEGACY_HASH_VERSION = 1
#: Bytes of one column's hash.
COLUMN_HASH_BYTES = 8
_LOW_63_BITS = (1 << 63) - 1
_LOW_64_BITS = (1 << 64) - 1

_EXACT_NUMBERS = frozenset({"tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint",
                            "uinteger", "ubigint", "uhugeint", "varint", "bignum"})
_TEXT = frozenset({"varchar", "uuid", "enum"})
_NAIVE_TIMESTAMPS = frozenset({"timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns"})


def _framed(encoding: str) -> str:
    return f"(length({encoding})::VARCHAR || ':' || {encoding})"


def _tagged(tag: str, text: str) -> str:
    """``tag || text``, or 'n' when the value is NULL (``||`` propagates NULL; coalesce catches it)."""
    return f"coalesce('{tag}' || {text}, 'n')"


def _composite(value: str, tag: str, body: str) -> str:
    # the body of a NULL composite would not be NULL (its framed parts are never NULL)
    return f"CASE WHEN {value} IS NULL THEN 'n' ELSE '{tag}' || {body} END"


def encoding(value: str, dtype: DuckDBPyType, depth: int = 0) -> str:
    """SQL for the canonical encoding of the SQL expression ``value`` of DuckDB type ``dtype``; never NULL."""
    kind = dtype.id
    if kind in _EXACT_NUMBERS:
        return _tagged("i", f"{value}::VARCHAR")
    if kind == "decimal":
        scale = dict(dtype.children)["scale"]
        text = f"{value}::VARCHAR" if scale == 0 else f"rtrim(rtrim({value}::VARCHAR, '0'), '.')"
        return _tagged("i", text)
    if kind in ("float", "double"):
        return _tagged("f", f"({value}::DOUBLE + 0.0)::VARCHAR")  # + 0.0 turns -0.0 into 0.0
    if kind in _TEXT:
        return _tagged("s", f"{value}::VARCHAR")
    if kind == "boolean":
        return _tagged("b", f"{value}::VARCHAR")
    if kind == "date":
        return _tagged("d", f"{value}::VARCHAR")
    if kind == "timestamp with time zone":
        return _tagged("z", f"epoch_us({value})::VARCHAR")
    if kind in _NAIVE_TIMESTAMPS:
        return _tagged("t", f"epoch_us({value}::TIMESTAMP)::VARCHAR")
    if kind == "time":
        return _tagged("h", f"{value}::VARCHAR")
    if kind == "blob":
        return _tagged("x", f"hex({value})")
    item = f"x{depth}"
    if kind in ("list", "array"):
        child = dict(dtype.children)["child"]
        items = f"list_transform({value}, lambda {item}: {_framed(encoding(item, child, depth + 1))})"
        return _composite(value, "l", f"array_to_string({items}, '')")
    if kind == "struct":
        fields = sorted(dtype.children, key=lambda field: field[0])
        parts = [f"{_framed(literal(name))} || "
                 f"{_framed(encoding(f'struct_extract({value}, {literal(name)})', child, depth + 1))}"
                 for name, child in fields]
        return _composite(value, "r", " || ".join(parts) if parts else "''")
    if kind == "map":
        types = dict(dtype.children)
        entry = (f"{_framed(encoding(f'{item}.key', types['key'], depth + 1))} || "
                 f"{_framed(encoding(f'{item}.value', types['value'], depth + 1))}")
        entries = f"list_transform(map_entries({value}), lambda {item}: {entry})"
        return _composite(value, "m", f"array_to_string({entries}, '')")
    return _tagged("o", f"{value}::VARCHAR")


def column_hash_sql(encoding: str) -> str:
    """SQL for one column's hash (UBIGINT) of its encoding: the first 8 bytes of its MD5, little-endian."""
    return f"(md5_number({encoding}) & {_LOW_64_BITS})::UBIGINT"


def column_hashes_sql(encodings: Sequence[str]) -> str:
    """SQL for the column hashes as a list of UBIGINT (:func:`column_hash_bytes` makes them bytes)."""
    return "[" + ", ".join(column_hash_sql(e) for e in encodings) + "]"


def row_hash_sql(column_hashes: Sequence[str]) -> str:
    """SQL for the row hash (BIGINT) from the SQL of the column hashes (UBIGINT), in column order.

    Each column hash's SQL appears twice: pass column references, not MD5 expressions.
    """
    rotated = []
    for index, column_hash in enumerate(column_hashes):
        bits = index % 64
        # a left rotation; DuckDB refuses a shift that overflows, so the high bits are masked off first
        rotated.append(column_hash if bits == 0 else
                       f"(((({column_hash}) & {(1 << (64 - bits)) - 1}) << {bits}) | (({column_hash}) >> {64 - bits}))")
    combined = rotated[0]
    for item in rotated[1:]:
        combined = f"xor({combined}, {item})"
    return f"({combined} & {_LOW_63_BITS})::BIGINT"


def encodings(alias: str, columns: Sequence[str], types: Mapping[str, DuckDBPyType]) -> list[str]:
    """SQL for the encodings of ``columns`` of the relation ``alias``, whose DuckDB types are ``types``."""
    return [encoding(f"{alias}.{quote(column)}", types[column]) for column in columns]


def column_hash_bytes(hashes: pa.Array, count: int) -> pa.Array:
    """A list<uint64> column of ``count`` hashes a row as fixed-size binary (8 bytes each, zero copy).

    The bytes are the integers' little-endian form, i.e. the first 8 bytes of each MD5 digest
    (Arrow buffers are in the machine's order: little-endian on every platform DuckDB ships for).
    """
    values = hashes.flatten()
    if len(values) != len(hashes) * count or values.null_count:
        raise ValueError(f"expected {count} column hashes per row")
    data = values.buffers()[1].slice(values.offset * COLUMN_HASH_BYTES, len(values) * COLUMN_HASH_BYTES)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(COLUMN_HASH_BYTES * count), len(hashes), [None, data])


# -- version 1, read only to convert state written with it ----------------------------------------

def legacy_row_hash_sql(values: Sequence[str]) -> str:
    """Hash version 1's row hash: DuckDB's ``hash()`` of the mapped values."""
    return f"(hash({', '.join(values)}) & {_LOW_63_BITS})::BIGINT"


def legacy_column_hashes_sql(values: Sequence[str]) -> str:
    """Hash version 1's column hashes, as a list of the decimal texts state joined with commas."""
    return "[" + ", ".join(f"((hash({v}) & {_LOW_63_BITS})::BIGINT)::VARCHAR" for v in values) + "]"
