"""The members' digest by bucket: which of a streamed segment's members can be known unchanged
without hashing them canonically or reading them against state.

The local planner stages a warehouse segment's rows (``engine/snapshot.py``) and would otherwise
compute four MD5s a row (:mod:`segship.engine.hashing`) and join every member with state to find
the few that changed. Instead, the export's members fall into ``2 ** BUCKET_BITS`` buckets by
their key's hash, and per bucket state keeps (beside the members' digest, and dropped with it by
any write to the members: :class:`~segship.engine.state.MembersDigest`) how many members the
bucket has and the exact sum, modulo 2**64, of a cheap mix of each one's key, mapped values as
the source typed them, and target (DuckDB's ``hash``, no MD5). A plan computes
the same of the segment; a bucket whose count and sum are the ones recorded is unchanged, member
for member, but by a 64-bit coincidence, and only the members and the acknowledged rows of the
buckets that differ are hashed and diffed. A bucket recorded as ``DIRTY`` always differs.

Two values the canonical encoding tells apart must mix apart (but by a 64-bit coincidence).
DuckDB's ``hash`` of a string, or of a number of up to 64 bits, does; of some other types it
does not, systematically: a HUGEINT (a DECIMAL wider than 18 digits, a UUID) hashes its two
halves xor-ed, so 0 and -1 collide; a NULL list, ``[]`` and ``[NULL]`` collide, as do intervals
of one day and one month. Those columns are mixed by their canonical encoding instead (:func:`mixed`).

What a recorded bucket claims is that a full diff would find each of its members unchanged and
no one to remove from it. A plan records the segment's buckets (:func:`record_sql`); they are
kept only when the run that follows completes with every row acknowledged as planned (the
members' digest's own rule, ``engine/digest.py``). Its rows are those the plan read: the staged
copy the send reads too (a source that attaches, and is read again to send, is not bucketed).
A bucket holding a member state keeps otherwise than the segment has it (its new row refused,
``refused``) is recorded ``DIRTY``.

DuckDB's ``hash`` of a value depends on its type (a DATE hashes as the integer of its days) and
on DuckDB's release: the kind of a bucketed digest names both (:func:`buckets_kind`), and one of
another kind is not used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from segship.engine import hashing
from segship.engine.digest import key_hash_sql

if TYPE_CHECKING:
    from duckdb import DuckDBPyType

#: How many bits of a key's hash pick its bucket: 262,144 buckets (a digest of 5 MB at most), so
#: 10,000 changes among 10M members leave ~96 % of them unhashed.
BUCKET_BITS = 18
#: The recorded count of a bucket whose members must be diffed whatever the segment holds.
DIRTY = -1
#: The tables a bucketed snapshot keeps in its DuckDB: the segment's buckets, state's, those that differ.
SEGMENT_BUCKETS, RECORDED_BUCKETS, DIFFERING = "segment_buckets", "recorded_buckets", "differing_buckets"
#: The columns a bucketed segment's staged rows carry (computed as they stream in, so counting the
#: members reads two numbers a row): each row's bucket, and the mix of its key and values.
BUCKET, ROW_MIX = "__segship_bucket", "__segship_row_mix"
SCHEMA = pa.schema([("bucket", pa.uint32()), ("members", pa.int64()), ("mix", pa.uint64())])
#: The types whose values DuckDB's ``hash`` mixes as they are: strings, and numbers, dates and times
#: stored in up to 64 bits (one value, one hash: no two collide but by chance). A DECIMAL is one of
#: them up to 18 digits.
HASHED_AS_THEY_ARE = frozenset({"varchar", "blob", "boolean", "tinyint", "smallint", "integer", "bigint",
                                "utinyint", "usmallint", "uinteger", "ubigint", "float", "double", "date", "time",
                                "timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns",
                                "timestamp with time zone"})
WIDEST_DECIMAL_HASHED = 18


def bucket_sql(key: str) -> str:
    """SQL for the bucket (UBIGINT) of a member's ``key`` (VARCHAR): the top bits of its key's hash."""
    return f"({key_hash_sql(key)} >> {64 - BUCKET_BITS})"


def mixed(value: str, dtype: DuckDBPyType) -> str:
    """SQL of what a row's mix hashes of the SQL ``value`` of DuckDB type ``dtype``: the value, or its
    canonical encoding where DuckDB's hash of the type collides (a HUGEINT, a list, an interval...)."""
    if dtype.id in HASHED_AS_THEY_ARE or \
            (dtype.id == "decimal" and dict(dtype.children)["precision"] <= WIDEST_DECIMAL_HASHED):
        return value
    return hashing.encoding(value, dtype)


def row_mix_sql(key: str, values: Sequence[str], types: Mapping[str, DuckDBPyType]) -> str:
    """SQL for a row's cheap mix (UBIGINT): DuckDB's hash of its key and its values (``values``: column
    name -> SQL), in column order, as one value (order matters: two columns swapping values change it)."""
    return f"hash({', '.join([key, *(mixed(sql, types[column]) for column, sql in values)])})"


def member_mix_sql(row_mix: str, target: str) -> str:
    """SQL for a member's mix: its row's with its target (a move changes it)."""
    return f"hash({row_mix}, ({target})::INTEGER)"


def kind_prefix() -> str:
    """What every bucketed digest this segship makes has its kind start with."""
    return f"duckdb {duckdb.__version__} hash, {BUCKET_BITS}-bit buckets, types "


def buckets_kind(types: Sequence[object]) -> str:
    """The kind of a bucketed digest of rows whose key and mapped columns have the DuckDB ``types``."""
    return kind_prefix() + hashlib.sha256(repr([str(each) for each in types]).encode()).hexdigest()[:16]


def segment_buckets_sql(rows: str, target: str) -> str:
    """SQL for the buckets (bucket, members, mix) of the staged rows of the relation ``rows`` (with their
    ``BUCKET`` and ``ROW_MIX``), as members of ``target``."""
    return (f"SELECT {BUCKET} AS bucket, count(*) AS members, "
            f"(sum({member_mix_sql(ROW_MIX, target)}::HUGEINT) % {1 << 64})::UBIGINT AS mix FROM {rows} GROUP BY ALL")


#: The buckets whose members are diffed: those where the segment and state's record disagree (a
#: bucket missing from one has no members there).
DIFFERING_SQL = (f"SELECT coalesce(s.bucket, r.bucket) AS bucket FROM {SEGMENT_BUCKETS} s "
                 f"FULL OUTER JOIN {RECORDED_BUCKETS} r ON r.bucket = s.bucket "
                 "WHERE s.members IS DISTINCT FROM r.members OR s.mix IS DISTINCT FROM r.mix")


def record_sql(actions: str) -> str:
    """SQL for the buckets a completed run leaves: the segment's, ``DIRTY`` where a member of the diff's
    ``actions`` keeps an acknowledged row the segment doesn't have (``refused``)."""
    return (f"SELECT s.bucket::UINTEGER AS bucket, CASE WHEN d.bucket IS NULL THEN s.members ELSE {DIRTY} END "
            f"AS members, s.mix FROM {SEGMENT_BUCKETS} s LEFT JOIN (SELECT DISTINCT {bucket_sql('key')} AS bucket "
            f"FROM {actions} WHERE action = 'refused') d ON d.bucket = s.bucket ORDER BY s.bucket")


def encode(buckets: pa.Table) -> bytes:
    """The buckets as state keeps them: an Arrow IPC stream of ``SCHEMA``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(buckets.cast(SCHEMA))
    return sink.getvalue().to_pybytes()


def decode(recorded: bytes) -> pa.Table:
    """The buckets state keeps (:func:`encode`), as a table."""
    return pa.ipc.open_stream(recorded).read_all()
