"""The members' digest: a mix per (key, row hash, target), their exact sum, and the tally a run keeps."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from segship.engine.digest import (
    DIGEST_KIND,
    KEY_HASH,
    MIX,
    DigestTally,
    key_hash_sql,
    mix_sql,
    mix_sum_sql,
    signed_64,
)
from segship.engine.state import MembersDigest


def mix_sum(members: list[tuple[str, int, int]]) -> int:
    """The exact sum of the mixes of (key, row hash, target) rows, as a plan computes it."""
    with duckdb.connect() as db:
        db.execute("CREATE TABLE m (key VARCHAR, row_hash BIGINT, target INTEGER)")
        if members:
            db.executemany("INSERT INTO m VALUES (?, ?, ?)", members)
        return int(db.execute(f"SELECT {mix_sum_sql('key', 'row_hash', 'target')} FROM m").fetchone()[0])


def test_the_sum_of_no_members_is_zero():
    assert mix_sum([]) == 0


def test_two_members_swapping_row_hashes_or_targets_change_the_sum():
    members = [("a", 10, 1), ("b", 20, 2)]
    assert mix_sum([("a", 20, 1), ("b", 10, 2)]) != mix_sum(members)
    assert mix_sum([("a", 10, 2), ("b", 20, 1)]) != mix_sum(members)


def test_a_row_hash_equal_to_the_target_does_not_cancel_out():
    # the hashes of the three xor-ed (as the mix was first made) made these two sums equal
    assert mix_sum([("C3", 1, 1), ("C3", 1, 1)]) != mix_sum([("C3", 1, 1), ("C3", 2, 2)])


def test_the_sum_is_exact_past_64_bits():
    members = [(f"k{i}", i, 1) for i in range(200)]
    with duckdb.connect() as db:
        mixes = [db.execute(f"SELECT {mix_sql('?', '?::BIGINT', '?')}", row).fetchone()[0] for row in members]
    assert sum(mixes) > 2**64 and mix_sum(members) == sum(mixes)


@pytest.mark.parametrize(("total", "signed"), [(0, 0), (5, 5), (2**63 - 1, 2**63 - 1), (2**63, -(2**63)),
                                               (2**64 - 1, -1), (2**64 + 5, 5), (-1, -1), (3 * 2**64 + 7, 7)])
def test_signed_64_is_the_sum_modulo_2_64_as_a_signed_integer(total, signed):
    assert signed_64(total) == signed


def acknowledged_rows(keys: list[str], mixes: list[int]) -> pa.RecordBatch:
    with duckdb.connect() as db:
        hashes = [db.execute(f"SELECT {key_hash_sql('?')}", (key,)).fetchone()[0] for key in keys]
    return pa.RecordBatch.from_arrays([pa.array(mixes, pa.uint64()), pa.array(hashes, pa.uint64())],
                                      names=[MIX, KEY_HASH])


def planned(keys: list[str]) -> tuple[int, int]:
    """What a plan sums of the keys it sends: their number, the sum of their hashes."""
    with duckdb.connect() as db:
        db.execute("CREATE TABLE actions (key VARCHAR)")
        db.executemany("INSERT INTO actions VALUES (?)", [(key,) for key in keys])
        count, total = db.execute(f"SELECT count(*), coalesce(sum({key_hash_sql('key')})::HUGEINT, 0) "
                                  "FROM actions").fetchone()
    return count, int(total)


def test_the_tally_is_the_digest_of_the_unchanged_members_and_every_acknowledged_row():
    tally = DigestTally(unchanged=3, total=2**64 - 10, planned=planned(["a", "b", "c"]))
    tally.add(acknowledged_rows(["a", "c"], [4, 2**63]))
    assert tally.digest() is None  # "b" not acknowledged yet
    tally.add(acknowledged_rows(["b"], [9]))
    assert tally.digest() == MembersDigest(DIGEST_KIND, 6, signed_64(2**64 - 10 + 4 + 2**63 + 9))


def test_no_digest_when_the_keys_acknowledged_are_not_the_keys_planned():
    tally = DigestTally(unchanged=0, total=0, planned=planned(["a", "b"]))
    tally.add(acknowledged_rows(["a", "z"], [1, 2]))  # as many rows, another key
    assert tally.digest() is None


def test_an_empty_batch_adds_nothing_and_nothing_planned_is_the_unchanged_members_digest():
    tally = DigestTally(unchanged=2, total=7)
    tally.add(acknowledged_rows([], []))
    assert tally.digest() == MembersDigest(DIGEST_KIND, 2, 7)


def test_the_digest_names_the_duckdb_that_hashed_it():
    assert DIGEST_KIND == f"duckdb {duckdb.__version__} hash"
