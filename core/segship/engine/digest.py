"""The members' digest: their number and the exact sum of a 64-bit mix of each one's (key, row hash, target).

Two sets of members are the same, key for key with the same row hash in the same target,
when their counts and sums are equal (anything else by a 64-bit coincidence only). A plan
compares the members with state so, and state keeps the digest of what it holds
(:class:`~segship.engine.state.MembersDigest`) so that an unchanged plan need not read it.
Unlike :mod:`segship.engine.hashing`, the mix is DuckDB's ``hash``: fast, and never
stored beyond a digest that names the DuckDB that made it (``DIGEST_KIND``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from segship.engine.state import MembersDigest

#: Columns the send query adds to each row: its mix (summed into the digest of the members a
#: run leaves) and its key's hash (summed to tell that the keys acknowledged are the keys planned).
MIX, KEY_HASH = "__segship_mix", "__segship_key_hash"
#: The hash function of members' digests: DuckDB's ``hash``, which may change between its releases.
DIGEST_KIND = f"duckdb {duckdb.__version__} hash"


def mix_sql(key: str, row_hash: str, target: str) -> str:
    """SQL for a member's 64-bit mix (UBIGINT): DuckDB's hash of (key, row hash, target) as one
    value, so that two members swapping row hashes or targets change a sum. (Not the hashes of
    the three xor-ed: DuckDB hashes an integer the same whatever its width, so a row hash equal
    to the target would cancel out.)"""
    return f"hash({key}, {row_hash}, ({target})::INTEGER)"


def mix_sum_sql(key: str, row_hash: str, target: str) -> str:
    """SQL for the exact sum of the mixes (HUGEINT: no overflow), 0 over no rows."""
    return f"coalesce(sum({mix_sql(key, row_hash, target)}::HUGEINT), 0)"


def key_hash_sql(key: str) -> str:
    """SQL for a key's hash (UBIGINT), summed over the keys planned and over the keys acknowledged."""
    return f"hash({key})"


def signed_64(total: int) -> int:
    """A sum of mixes modulo 2**64, as the signed 64-bit integer state keeps."""
    total %= 1 << 64
    return total - (1 << 64) if total >= 1 << 63 else total


@dataclass
class DigestTally:
    """The digest of the members a run leaves when it completes: its unchanged members', plus
    each row the destination acknowledges (the sent row's ``MIX``).

    It is theirs only if the rows acknowledged are the rows planned, key for key: a source that
    changes while rows are sent may drop a planned key and bring a new one, or a key twice,
    and a planned member left out would stay in state unsummed. So the acknowledged keys'
    hashes are summed too, against the planned ones'.
    """

    unchanged: int                            # members the plan leaves as they are
    total: int                                # the sum of their mixes, then of each acknowledged row's
    planned: tuple[int, int] = (0, 0)         # rows to send: how many, the sum of their keys' hashes
    acknowledged: tuple[int, int] = (0, 0)    # rows acknowledged: the same
    #: a bucketed digest's kind, and how to make its buckets as the plan found the members
    #: (``engine/buckets.py``): the digest instead of the sum of mixes, whose unchanged part such a plan
    #: doesn't compute
    buckets: tuple[str, Callable[[], bytes]] | None = None

    def add(self, acknowledged: pa.RecordBatch) -> None:
        self.total += pa.compute.sum(acknowledged.column(MIX)).as_py() or 0
        count, keys = self.acknowledged
        self.acknowledged = (count + len(acknowledged),
                             keys + (pa.compute.sum(acknowledged.column(KEY_HASH)).as_py() or 0))

    def digest(self) -> MembersDigest | None:
        """The digest, when the keys acknowledged are the keys planned; else None."""
        (planned, planned_keys), (acknowledged, keys) = self.planned, self.acknowledged
        if acknowledged != planned or signed_64(keys) != signed_64(planned_keys):
            return None
        if self.buckets is not None:
            kind, record = self.buckets
            return MembersDigest(kind, self.unchanged + acknowledged, 0, record())
        return MembersDigest(DIGEST_KIND, self.unchanged + acknowledged, signed_64(self.total))
